"""`gptkit generate`: continue prompts (options named as in transformers' generate)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import GptkitError
from .args import finite_float


def _generate_dtype(name: str | None, device: str) -> str:
    """--dtype default: bfloat16 where the hardware computes in it natively, float32 elsewhere."""
    if name is not None:
        return name
    import torch

    from ..device import cpu_has_fast_bf16
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if cpu_has_fast_bf16() else "float32"


def cmd_generate(args: argparse.Namespace) -> int:
    import warnings

    from .. import load_model
    from ..device import resolve_device
    from ..generate import generate_text, stream
    device = str(resolve_device(args.device))
    quantize = None if args.quantize == "none" else args.quantize
    model = load_model(args.model, dtype=_generate_dtype(args.dtype, device), device=device, quantize=quantize)
    tok = model.tokenizer
    if tok is None:
        raise GptkitError(getattr(model, "tokenizer_error", None)
                          or f"{args.model}: no tokenizer files (vocab.json + merges.txt) beside the model")
    prompts = args.prompt or [""]  # no prompt: start from end-of-text
    do_sample = args.do_sample if args.do_sample is not None else args.num_beams == 1
    early = {"true": True, "false": False, "never": "never"}[args.early_stopping]
    kw = dict(max_new_tokens=args.max_new_tokens, do_sample=do_sample, temperature=args.temperature,
              top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
              repetition_penalty=args.repetition_penalty, no_repeat_ngram_size=args.no_repeat_ngram_size,
              num_beams=args.num_beams, length_penalty=args.length_penalty, early_stopping=early,
              num_return_sequences=args.num_return_sequences, eos_token_id=args.eos_token_id,
              stop=args.stop, seed=args.seed, context=args.context)
    single = len(prompts) == 1 and args.num_return_sequences == 1 and args.num_beams == 1
    use_stream = args.stream if args.stream is not None else sys.stdout.isatty()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if use_stream and single and not args.json:
            pieces = stream(model, prompts[0], tokenizer=tok, **kw)
            first = next(pieces, "")  # bad options fail here, before anything is printed
            _flush_warnings(caught)
            sys.stdout.write(prompts[0] + first)
            sys.stdout.flush()
            for piece in pieces:
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            return 0
        results = generate_text(model, tok, prompts, **kw)
        _flush_warnings(caught)
    for i, r in enumerate(results):
        if args.json:
            print(json.dumps({"index": i, **r}, ensure_ascii=False))
        else:
            if len(results) > 1:
                print(f"--- sequence {i + 1} of {len(results)} ---")
            print(r["prompt"] + r["text"])
    return 0


def _flush_warnings(caught: list[Any]) -> None:
    for w in caught:
        print(f"gptkit: warning: {w.message}", file=sys.stderr)
    caught.clear()


def register(sub: Any) -> None:
    ge = sub.add_parser("generate", help="continue prompts (options named as in transformers' generate)")
    ge.add_argument("prompt", nargs="*", help="one or more prompts, generated as one batch (none: start "
                    "from end-of-text)")
    ge.add_argument("--model", required=True, help="a run directory, a Hugging Face GPT-2 directory or a Hub id")
    ge.add_argument("--max-new-tokens", type=int, default=100)
    ge.add_argument("--do-sample", action=argparse.BooleanOptionalAction, default=None,
                    help="sample, or decode greedily / by beam search with --no-do-sample (default: "
                    "sample, unless --num-beams > 1)")
    ge.add_argument("--temperature", type=finite_float, default=1.0)
    ge.add_argument("--top-k", type=int, default=50, help="0: off")
    ge.add_argument("--top-p", type=finite_float, default=1.0)
    ge.add_argument("--min-p", type=finite_float, default=None)
    ge.add_argument("--repetition-penalty", type=finite_float, default=1.0)
    ge.add_argument("--no-repeat-ngram-size", type=int, default=0)
    ge.add_argument("--num-beams", type=int, default=1)
    ge.add_argument("--length-penalty", type=finite_float, default=1.0)
    ge.add_argument("--early-stopping", choices=["false", "true", "never"], default="false")
    ge.add_argument("-n", "--num-return-sequences", type=int, default=1)
    ge.add_argument("--eos-token-id", type=int, action="append", default=None,
                    help="end-of-text id (repeatable; default: the model's)")
    ge.add_argument("--stop", action="append", default=None, help="a stop string (repeatable); cut from the output")
    ge.add_argument("--seed", type=int, default=None, help="makes sampling reproducible")
    ge.add_argument("--context", choices=["error", "truncate"], default="error",
                    help="a prompt + --max-new-tokens longer than the model's context: an error (default), "
                    "or keep the prompt's last tokens, with a warning")
    ge.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16", "auto"],
                    help="default: bfloat16 where the hardware has it (CUDA, CPUs with AVX512-BF16/AMX), "
                    "else float32; auto: as stored")
    ge.add_argument("--quantize", default="none", choices=["none", "int8"],
                    help="int8: weight-only, per output channel (fastest on CPU)")
    ge.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda if available)")
    ge.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                    help="print text as it is produced (default: on a terminal, for one sequence)")
    ge.add_argument("--json", action="store_true", help="one JSON object per line and sequence: prompt, text, "
                    "token_ids, finish_reason")
    ge.set_defaults(func=cmd_generate)
