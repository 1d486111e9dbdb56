"""`gptkit train`: every TrainConfig field is a flag (see gptkit/train/config.py for their help)."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OptionError
from ..tokenizer import MIN_BPE_VOCAB
from .args import add_dataclass_args, command_options, from_args, load_config_file
from .args import option as _opt
from .prepare import STDLIB_PROMPTS, STDLIB_TOKENIZER, STDLIB_VOCAB, corpus_data_dir, stdlib_data_dir


def train_config_from_args(args: argparse.Namespace) -> Any:
    from ..train import TrainConfig
    args.config = getattr(args, "config", None)
    base = load_config_file(args.config) if args.config else {}
    command_options(TrainCommand, args, base, args.config or "flags")  # data, tokenizer, samples, quiet, ...
    args.out_given = "out" in vars(args) or "out" in base  # a config's out is the user's choice too
    values = from_args(TrainConfig, argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "progress"}), base)
    if args.data is not None:
        values["data"] = args.data
    values["progress"] = not args.quiet
    if values.get("resume"):  # the run's own preset and windows, not the defaults (its model: train's)
        ran = _run_options(Path(values.get("out") or TrainConfig.out))
        values.update({k: v for k, v in ran.items() if k not in values})
    return TrainConfig.from_dict(values, source=args.config or "flags")


# what --resume takes from the run when not given (of the type given): its model follows from these
RUN_OPTIONS = {"preset": str, "block_size": int}


def _run_options(out: Path) -> dict[str, Any]:
    """The --preset and --block-size a run in `out` was trained with (its train_config.json), where it says."""
    import json
    try:
        ran = json.loads((out / "train_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(ran, dict):
        return {}
    return {k: ran[k] for k, tp in RUN_OPTIONS.items() if type(ran.get(k)) is tp}


def _fresh_run_dir(default: Path) -> Path:
    """The default run directory, or default-2, default-3, ... if it already holds a run."""
    candidate, n = default, 1
    while (candidate / "checkpoints").exists():
        n += 1
        candidate = default.with_name(f"{default.name}-{n}")
    return candidate


def cmd_train(args: argparse.Namespace) -> int:
    from ..train import train
    from ..train.resume import check_run_dir
    cfg = train_config_from_args(args)
    if args.samples < 0:
        raise OptionError("samples", f"must be >= 0 (0: none), got {args.samples}")
    cfg.validate()  # every option, before any data is prepared
    embedded = cfg.data is None
    raw = not embedded and Path(cfg.data).exists() and not (Path(cfg.data) / "meta.json").is_file()
    vocab = STDLIB_VOCAB if args.vocab_size is None and args.tokenizer == "bpe" else args.vocab_size
    if raw:
        if args.tokenizer not in ("gpt2", "bytes", "bpe") and not Path(args.tokenizer).is_dir():
            raise OptionError("tokenizer", f"{args.tokenizer!r} is unknown: use gpt2, bytes, bpe or a tokenizer "
                              "directory (vocab.json + merges.txt)")
        if args.tokenizer == "bpe" and (vocab is None or vocab < MIN_BPE_VOCAB):
            raise OptionError("vocab_size", f"must be >= {MIN_BPE_VOCAB} for a BPE, got {vocab}")
        from ..data.corpus import _list_files
        if not _list_files([cfg.data]):
            raise OptionError("data", f"{cfg.data} holds no text files (.txt, .md, .py, .jsonl, or .gz of those)")
    if args.out_given or cfg.resume:
        check_run_dir(Path(cfg.out), cfg.resume, [cfg.data, cfg.init_from])
    if embedded:
        cfg.data = str(stdlib_data_dir(progress=cfg.progress))
    elif raw:
        cfg.data = str(corpus_data_dir(Path(cfg.data), args.tokenizer, vocab, progress=cfg.progress))
    if not args.out_given and not cfg.resume and "RANK" not in os.environ:
        cfg.out = str(_fresh_run_dir(Path(cfg.out)))  # no --out: never collide with an earlier run
    result = train(cfg)
    if os.environ.get("RANK", "0") != "0":
        return 0
    from ..train.guards import coverage
    v = result.val
    print(f"trained {result.step} steps ({result.stopped_by}), {result.tokens_per_s:,.0f} tokens/s; "
          f"val loss {v['loss']:.4f}, perplexity {v['perplexity']:.2f}, bits/byte {v['bits_per_byte']:.4f} "
          f"({coverage(v)})")
    print(f"model saved in {result.out} (config.json + model.safetensors + tokenizer; loss curve loss.png)")
    if args.samples:
        _print_samples(result.out, STDLIB_PROMPTS if embedded else None, args.samples)
    return 0


def _print_samples(model_dir: Path, prompts: list[str] | None, n: int) -> None:
    from ..generate import generate_text
    from ..hf import load_model
    model = load_model(model_dir)
    tok = model.tokenizer
    prompts = prompts or [""] * n  # "": start a fresh document, after an end-of-text token
    for i, prompt in enumerate(prompts[:n]):
        out = generate_text(model, tok, prompt, max_new_tokens=120, do_sample=True, temperature=0.8,
                            top_k=50, seed=i)[0]
        print(f"\n--- sample {i + 1} (prompt {prompt!r}) ---\n{prompt}{out['text']}")


@dataclass
class TrainCommand:
    """`gptkit train`'s own options; every TrainConfig field is a flag too."""
    data: str | None = _opt(None, "a directory written by `gptkit prepare`, or raw text (a file or directory of "
                            ".txt/.md/.py/.jsonl), prepared once into the cache (none: the Python standard "
                            "library corpus)")
    tokenizer: str = _opt(STDLIB_TOKENIZER, "for raw --data: gpt2, bytes, bpe, or a tokenizer directory")
    vocab_size: int | None = _opt(None, f"for raw --data with bpe: tokens in the trained vocabulary (none: {STDLIB_VOCAB})")
    config: str | None = _opt(None, "a JSON or TOML file of training options; flags override it")
    samples: int = _opt(3, "samples to print after training (0: none)")
    quiet: bool = _opt(False, "no banner, progress bar or preparation output", flags=["-q"])


def register(sub: Any) -> None:
    from ..train import TrainConfig
    tr = sub.add_parser("train", help="train a GPT (no --data: the Python standard library corpus)",
                        description="Train a GPT. Every option below is also a key of --config files.")
    add_dataclass_args(tr, TrainCommand, suppress=True)
    add_dataclass_args(tr, TrainConfig, skip=("data", "progress"), suppress=True)
    tr.set_defaults(func=cmd_train)
