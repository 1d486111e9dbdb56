"""`gptkit eval`: loss, perplexity and bits per byte of a model on prepared data."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import GptkitError


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


def register(sub: Any) -> None:
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
