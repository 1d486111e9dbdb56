"""`gptkit eval`: loss, perplexity and bits per byte of a model on prepared data."""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from ..errors import GptkitError
from .args import DTYPE_CHOICES, DTYPE_HELP, add_dataclass_args
from .args import option as _opt


def cmd_eval(args: argparse.Namespace) -> int:
    from ..data import TokenShards
    from ..device import autocast_dtype
    from ..evaluate import evaluate
    from ..hf import load_model
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


@dataclass
class EvalCommand:
    model: str = _opt(None, "a run directory, a Hugging Face GPT-2 directory or a Hub id", required=True)
    data: str = _opt(None, "a directory written by `gptkit prepare` (with the model's tokenizer)", required=True)
    split: str = _opt("val", "the split to evaluate", choices=["val", "train"])
    block_size: int | None = _opt(None, "tokens per evaluation window (none: the model's context)")
    batch_size: int = _opt(8, "windows per batch")
    max_batches: int | None = _opt(None, "stop after this many batches (none: the whole split)")
    dtype: str = _opt("auto", DTYPE_HELP, choices=DTYPE_CHOICES)
    json: bool = _opt(False, "print one JSON object instead of a sentence")


def register(sub: Any) -> None:
    ev = sub.add_parser("eval", help="val loss, perplexity and bits per byte of a model on prepared data")
    add_dataclass_args(ev, EvalCommand)
    ev.set_defaults(func=cmd_eval)
