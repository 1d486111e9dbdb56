"""`gptkit eval`: loss, perplexity and bits per byte of a model on prepared data."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GptkitError, OptionError
from ..tokenizer import Tokenizer
from .args import DTYPE_CHOICES, DTYPE_HELP, add_dataclass_args
from .args import option as _opt


def cmd_eval(args: argparse.Namespace) -> int:
    from ..data import TokenShards
    from ..device import autocast_dtype
    from ..evaluate import evaluate
    from ..hf import load_model
    for name in ("block_size", "batch_size", "max_batches"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise OptionError(name, f"must be >= 1, got {v}")
    model = load_model(args.model)
    shards = TokenShards(args.data, args.split)
    if shards.num_tokens == 0:
        hint = " (prepared with --val-fraction 0: evaluate with --split train)" if args.split == "val" else ""
        raise OptionError("split", f"{args.split} of {args.data} is empty{hint}")
    data_tok = Tokenizer.load(args.data)
    if shards.meta.get("vocab_size") != model.config.vocab_size or (
            model.tokenizer is not None and model.tokenizer.fingerprint != data_tok.fingerprint):
        raise GptkitError(f"{args.data} was prepared with another tokenizer than {args.model}'s "
                          f"({shards.meta.get('vocab_size')} vs {model.config.vocab_size} tokens"
                          f"{', different vocabularies' if shards.meta.get('vocab_size') == model.config.vocab_size else ''}"
                          f"): its loss would mean nothing; prepare the data with --tokenizer {args.model}")
    trained = _training_block_size(model)
    block = args.block_size or trained or model.config.n_positions
    if block > model.config.n_positions:
        raise OptionError("block_size", f"{block} is larger than the model's context ({model.config.n_positions})")
    if trained and block > trained:
        print(f"gptkit: warning: --block-size {block} is beyond the {trained} tokens this model was trained on: "
              f"its positions past {trained} were never trained, so the loss is not the model's", file=sys.stderr)
    block = min(block, shards.num_tokens - 1)
    amp = autocast_dtype(args.dtype, model.device)
    r = evaluate(model, shards, block, args.batch_size, args.max_batches, amp)
    if args.json:
        print(json.dumps({"model": str(args.model), "data": str(args.data), "split": args.split, **r}))
    else:
        print(f"{args.split} loss {r['loss']:.4f} nats/token, perplexity {r['perplexity']:.2f}, "
              f"bits per byte {r['bits_per_byte']:.4f} ({r['eval_tokens']:,} tokens)")
    return 0


def _training_block_size(model: Any) -> int | None:
    """The block size a gptkit run trained at (its train_config.json); None for other models."""
    path = Path(getattr(model, "source", "") or ".") / "train_config.json"
    try:
        block = json.loads(path.read_text(encoding="utf-8")).get("block_size")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return block if isinstance(block, int) and block >= 1 else None


@dataclass
class EvalCommand:
    model: str = _opt(None, "a run directory, a Hugging Face GPT-2 directory or a Hub id", required=True)
    data: str = _opt(None, "a directory written by `gptkit prepare` (with the model's tokenizer)", required=True)
    split: str = _opt("val", "the split to evaluate", choices=["val", "train"])
    block_size: int | None = _opt(None, "tokens per evaluation window (none: the block size the model was trained at, else its context)")
    batch_size: int = _opt(8, "windows per batch")
    max_batches: int | None = _opt(None, "stop after this many batches (none: the whole split)")
    dtype: str = _opt("auto", DTYPE_HELP, choices=DTYPE_CHOICES)
    json: bool = _opt(False, "print one JSON object instead of a sentence")


def register(sub: Any) -> None:
    ev = sub.add_parser("eval", help="val loss, perplexity and bits per byte of a model on prepared data")
    add_dataclass_args(ev, EvalCommand)
    ev.set_defaults(func=cmd_eval)
