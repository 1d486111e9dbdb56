"""`gptkit generate`: continue prompts (options named as in transformers' generate)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from ..errors import GptkitError
from .args import DTYPE_CHOICES, DTYPE_HELP, add_dataclass_args, from_args
from .args import option as _opt


def cmd_generate(args: argparse.Namespace) -> int:
    import warnings

    from .. import load_model
    from ..device import compute_dtype, resolve_device
    from ..generate import generate_text, stream
    device = resolve_device(args.device)
    quantize = None if args.quantize == "none" else args.quantize
    model = load_model(args.model, dtype=compute_dtype(args.dtype, device), device=str(device), quantize=quantize)
    tok = model.tokenizer
    if tok is None:
        raise GptkitError(model.tokenizer_error
                          or f"{args.model}: no tokenizer files (vocab.json + merges.txt) beside the model")
    prompts = args.prompt or [""]  # no prompt: start from end-of-text
    from ..generate.config import GenerationConfig
    kw = from_args(GenerationConfig, args)
    if kw["do_sample"] is None:  # the CLI samples unless it searches beams
        kw["do_sample"] = kw["num_beams"] == 1
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


@dataclass
class GenerateCommand:
    """`gptkit generate`'s own options; the decoding options are GenerationConfig's fields."""
    prompt: list[str] = _opt(None, "one or more prompts, generated as one batch (none: start from end-of-text)",
                             positional="*")
    model: str = _opt(None, "a run directory, a Hugging Face GPT-2 directory or a Hub id", required=True)
    dtype: str = _opt("auto", DTYPE_HELP, choices=DTYPE_CHOICES)
    quantize: str = _opt("none", "int8: weight-only, per output channel (fastest on CPU)", choices=["none", "int8"])
    device: str = _opt("auto", "cpu, cuda, cuda:1, ... (auto: cuda if available)")
    stream: bool | None = _opt(None, "print text as it is produced", default_text="on a terminal, for one sequence")
    json: bool = _opt(False, "one JSON object per line and sequence: prompt, text, token_ids, finish_reason")


def register(sub: Any) -> None:
    from ..generate.config import GenerationConfig
    ge = sub.add_parser("generate", help="continue prompts (options named as in transformers' generate)")
    add_dataclass_args(ge, GenerateCommand)
    add_dataclass_args(ge, GenerationConfig)
    ge.set_defaults(func=cmd_generate)
