"""`gptkit prepare | train | eval | generate`: a thin layer over the Python API.

Bad input is one line on stderr ("gptkit: error: ...") and exit status 2; --debug shows the
traceback instead.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .errors import GptkitError

# The embedded default: a corpus every Python has, its standard library's own source.
STDLIB_TOKENIZER = "bpe"
STDLIB_VOCAB = 4096
STDLIB_MAX_BYTES = 24_000_000
STDLIB_PROMPTS = ["def fibonacci(n):\n", "import os\n\n\ndef list_files(", "class Stack:\n    def __init__(self"]


def _cache_dir() -> Path:
    base = os.environ.get("GPTKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "gptkit")
    return Path(base)


# ---------------------------------------------------------------------------- prepare

def cmd_prepare(args: argparse.Namespace) -> int:
    from .data import format_summary, prepare
    t0 = time.time()
    vocab_size = args.vocab_size or (8192 if args.tokenizer == "bpe" else None)
    meta = prepare(args.inputs, args.out, tokenizer=args.tokenizer, vocab_size=vocab_size,
                   field=args.field, val_fraction=args.val_fraction, seed=args.seed,
                   num_workers=args.workers, on_decode_error=args.on_decode_error,
                   overwrite=args.overwrite, progress=not args.quiet)
    print(format_summary(meta, time.time() - t0))
    return 0


def stdlib_data_dir(progress: bool = True) -> Path:
    """Prepare (once, then reuse) the Python standard library corpus in the cache directory."""
    from .data import stdlib_corpus_files
    out = _cache_dir() / f"data/stdlib-{STDLIB_TOKENIZER}{STDLIB_VOCAB}"
    return _prepare_once(lambda: stdlib_corpus_files(max_bytes=STDLIB_MAX_BYTES), out,
                         STDLIB_TOKENIZER, STDLIB_VOCAB, progress, "the embedded corpus, Python's standard library")


def corpus_data_dir(corpus: Path, tokenizer: str, vocab_size: int | None, progress: bool = True) -> Path:
    """`train --data` given raw text (a file or a directory of them): prepare it once into the cache."""
    import hashlib
    src = corpus.resolve()
    key = hashlib.blake2b(f"{src}|{tokenizer}|{vocab_size}".encode(), digest_size=6).hexdigest()
    out = _cache_dir() / f"data/{src.name}-{Path(tokenizer).name}-{key}"
    return _prepare_once(lambda: [src], out, tokenizer, vocab_size, progress, str(src))


def _prepare_once(sources: Any, out: Path, tokenizer: str, vocab_size: int | None, progress: bool,
                  what: str) -> Path:
    """Rank 0 prepares (unless already done); other torchrun ranks wait for its meta.json."""
    from .data import format_summary, prepare
    if (out / "meta.json").is_file():
        return out
    if os.environ.get("RANK", "0") != "0":
        deadline = time.time() + 3600
        while not (out / "meta.json").is_file():
            if time.time() > deadline:
                raise GptkitError(f"timed out waiting for rank 0 to prepare {out}")
            time.sleep(1)
        return out
    print(f"Preparing {what} with the {tokenizer} tokenizer into {out}", file=sys.stderr)
    t0 = time.time()
    meta = prepare(sources(), out, tokenizer=tokenizer, vocab_size=vocab_size, progress=progress)
    print(format_summary(meta, time.time() - t0), file=sys.stderr)
    return out


# ---------------------------------------------------------------------------- train

def _train_flags(p: argparse.ArgumentParser) -> None:
    from .train import TrainConfig
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("data", "progress"):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        if kind.startswith("bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS)
        elif kind.startswith("int"):
            p.add_argument(flag, type=int, default=argparse.SUPPRESS, metavar="N")
        elif kind.startswith("float"):
            p.add_argument(flag, type=float, default=argparse.SUPPRESS, metavar="X")
        else:
            p.add_argument(flag, default=argparse.SUPPRESS, metavar="S")


def load_config_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise GptkitError(f"{p}: config file not found")
    text = p.read_text()
    try:
        if p.suffix == ".toml":
            import tomllib
            return tomllib.loads(text)
        return json.loads(text)
    except Exception as e:
        raise GptkitError(f"{p}: cannot parse ({e})") from None


def train_config_from_args(args: argparse.Namespace) -> Any:
    from .train import TrainConfig
    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names and k != "progress"})
    if args.data is not None:
        values["data"] = args.data
    values["progress"] = not args.quiet
    return TrainConfig.from_dict(values, source=args.config or "flags")


def _fresh_run_dir(default: Path) -> Path:
    """The default run directory, or default-2, default-3, ... if it already holds a run."""
    candidate, n = default, 1
    while (candidate / "checkpoints").exists():
        n += 1
        candidate = default.with_name(f"{default.name}-{n}")
    return candidate


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train
    cfg = train_config_from_args(args)
    embedded = cfg.data is None
    if embedded:
        cfg.data = str(stdlib_data_dir(progress=cfg.progress))
    elif Path(cfg.data).exists() and not (Path(cfg.data) / "meta.json").is_file():
        vocab = args.vocab_size or (STDLIB_VOCAB if args.tokenizer == "bpe" else None)
        cfg.data = str(corpus_data_dir(Path(cfg.data), args.tokenizer, vocab, progress=cfg.progress))
    if "out" not in vars(args) and not cfg.resume and "RANK" not in os.environ:
        cfg.out = str(_fresh_run_dir(Path(cfg.out)))  # no --out: never collide with an earlier run
    result = train(cfg)
    if os.environ.get("RANK", "0") != "0":
        return 0
    v = result.val
    print(f"trained {result.step} steps ({result.stopped_by}), {result.tokens_per_s:,.0f} tokens/s; "
          f"val loss {v.get('loss', float('nan')):.4f}, perplexity {v.get('perplexity', float('nan')):.2f}, "
          f"bits/byte {v.get('bits_per_byte', float('nan')):.4f}")
    print(f"model saved in {result.out} (config.json + model.safetensors + tokenizer; loss curve loss.png)")
    if args.samples:
        _print_samples(result.out, STDLIB_PROMPTS if embedded else None, args.samples)
    return 0


def _print_samples(model_dir: Path, prompts: list[str] | None, n: int) -> None:
    from .checkpoint import load_model
    from .generate import generate_text
    model = load_model(model_dir)
    tok = model.tokenizer
    prompts = prompts or [""] * n  # "": start a fresh document, after an end-of-text token
    for i, prompt in enumerate(prompts[:n]):
        out = generate_text(model, tok, prompt, max_new_tokens=120, do_sample=True, temperature=0.8,
                            top_k=50, seed=i)[0]
        print(f"\n--- sample {i + 1} (prompt {prompt!r}) ---\n{prompt}{out['text']}")


# ---------------------------------------------------------------------------- eval

def cmd_eval(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .data import TokenShards
    from .device import autocast_dtype
    from .train import evaluate
    model = load_model(args.model)
    shards = TokenShards(args.data, args.split)
    if model.tokenizer is not None and shards.meta.get("vocab_size") != model.config.vocab_size:
        raise GptkitError(f"{args.data} was prepared with a vocabulary of {shards.meta.get('vocab_size')} "
                          f"tokens, the model has {model.config.vocab_size}")
    block = args.block_size or model.config.n_positions
    if block > model.config.n_positions:
        raise GptkitError(f"--block-size {block} is larger than the model's context ({model.config.n_positions})")
    block = min(block, shards.num_tokens - 1)
    amp = autocast_dtype(args.dtype, model.device)
    r = evaluate(model, shards, block, args.batch_size, args.max_batches, amp)
    if args.json:
        print(json.dumps({"model": str(args.model), "data": str(args.data), "split": args.split, **r}))
    else:
        print(f"{args.split} loss {r['loss']:.4f} nats/token, perplexity {r['perplexity']:.2f}, "
              f"bits per byte {r['bits_per_byte']:.4f} ({r['eval_tokens']:,} tokens)")
    return 0


# ---------------------------------------------------------------------------- generate

def _generate_dtype(name: str | None, device: str) -> str:
    """--dtype default: bfloat16 where the hardware computes in it natively, float32 elsewhere."""
    if name is not None:
        return name
    import torch
    from .device import cpu_has_fast_bf16
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if cpu_has_fast_bf16() else "float32"


def cmd_generate(args: argparse.Namespace) -> int:
    import warnings
    import torch
    from . import load_model
    from .generate import generate_text, stream
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
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


# ---------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gptkit", description="Build, train and use GPT-style language models.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("prepare", help="tokenize text files into token shards")
    pr.add_argument("inputs", nargs="+", help=".txt/.md/.py/.jsonl files (or .gz of them), or directories")
    pr.add_argument("--tokenizer", default="gpt2", help="gpt2, bytes, bpe, or a tokenizer directory")
    pr.add_argument("--vocab-size", type=int, default=None, help="for --tokenizer bpe (default 8192)")
    pr.add_argument("--out", required=True, help="the data directory to write")
    pr.add_argument("--field", default="text", help="the text field of .jsonl records")
    pr.add_argument("--val-fraction", type=float, default=0.01)
    pr.add_argument("--seed", type=int, default=1337)
    pr.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    pr.add_argument("--on-decode-error", choices=["replace", "skip", "error"], default="replace")
    pr.add_argument("--overwrite", action="store_true", help="replace an existing data directory")
    pr.add_argument("-q", "--quiet", action="store_true")
    pr.set_defaults(func=cmd_prepare)

    tr = sub.add_parser("train", help="train a GPT (no --data: the Python standard library corpus)")
    tr.add_argument("--data", default=None, help="a directory written by `gptkit prepare`, or raw text "
                    "(a file or directory of .txt/.md/.py/.jsonl), prepared once into the cache")
    tr.add_argument("--tokenizer", default=STDLIB_TOKENIZER, help="for raw --data: gpt2, bytes, bpe (default)")
    tr.add_argument("--vocab-size", type=int, default=None, help=f"for raw --data with bpe (default {STDLIB_VOCAB})")
    tr.add_argument("--config", default=None, help="a JSON or TOML file of training options; flags override it")
    _train_flags(tr)
    tr.add_argument("--samples", type=int, default=3, help="samples to print after training (0: none)")
    tr.add_argument("-q", "--quiet", action="store_true")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="val loss, perplexity and bits per byte of a model on prepared data")
    ev.add_argument("--model", required=True)
    ev.add_argument("--data", required=True)
    ev.add_argument("--split", default="val", choices=["val", "train"])
    ev.add_argument("--block-size", type=int, default=None)
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument("--max-batches", type=int, default=None)
    ev.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_eval)

    ge = sub.add_parser("generate", help="continue prompts (options named as in transformers' generate)")
    ge.add_argument("prompt", nargs="*", help="one or more prompts, generated as one batch (none: start "
                    "from end-of-text)")
    ge.add_argument("--model", required=True, help="a run directory, a Hugging Face GPT-2 directory or a Hub id")
    ge.add_argument("--max-new-tokens", type=int, default=100)
    ge.add_argument("--do-sample", action=argparse.BooleanOptionalAction, default=None,
                    help="sample, or decode greedily / by beam search with --no-do-sample (default: "
                    "sample, unless --num-beams > 1)")
    ge.add_argument("--temperature", type=float, default=1.0)
    ge.add_argument("--top-k", type=int, default=50, help="0: off")
    ge.add_argument("--top-p", type=float, default=1.0)
    ge.add_argument("--min-p", type=float, default=None)
    ge.add_argument("--repetition-penalty", type=float, default=1.0)
    ge.add_argument("--no-repeat-ngram-size", type=int, default=0)
    ge.add_argument("--num-beams", type=int, default=1)
    ge.add_argument("--length-penalty", type=float, default=1.0)
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except GptkitError as e:
        if args.debug:
            raise
        print(f"gptkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gptkit: interrupted", file=sys.stderr)
        return 130
    except (OSError, MemoryError) as e:
        if args.debug:
            raise
        print(f"gptkit: error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
