"""`gptkit eval`: loss, perplexity and bits per byte of a model on prepared data, benchmark tasks
(gptkit's multiple-choice files or lm-evaluation-harness tasks) and the report card."""
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
    from ..hf import load_model
    for name in ("block_size", "batch_size", "max_batches", "limit"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise OptionError(name, f"must be >= 1, got {v}")
    if args.num_fewshot is not None and args.num_fewshot < 0:
        raise OptionError("num_fewshot", f"must be >= 0, got {args.num_fewshot}")
    if args.data is None and args.tasks is None:
        raise GptkitError("give --data (loss and bits per byte), --tasks (benchmarks) or both")
    for flag in ("limit", "num_fewshot"):
        if getattr(args, flag) is not None and args.tasks is None:
            raise OptionError(flag, "applies to --tasks, which is not given")
    specs = _task_specs(args.tasks) if args.tasks else []
    _check_outputs(args, specs)
    model = load_model(args.model)
    loss = _data_figures(args, model) if args.data else None
    results = _task_results(args, model, specs) if specs else {}
    if args.report:
        from ..evals.report import build_report, write_report
        settings = {"dtype": args.dtype, "limit": args.limit, "num_fewshot": args.num_fewshot}
        md, _ = write_report(args.report, build_report(str(args.model), results, loss, settings))
        print(f"report card: {md} (and report.json)", file=sys.stderr)
    if args.output:
        _write_json(args.output, {"model": str(args.model), "data": loss, "tasks": results})
    if args.json:
        print(json.dumps({"model": str(args.model), **({"data": str(args.data), "split": args.split, **loss}
                                                        if loss else {}), **({"tasks": results} if specs else {})}))
        return 0
    if loss:
        print(f"{args.split} loss {loss['loss']:.4f} nats/token, perplexity {loss['perplexity']:.2f}, "
              f"bits per byte {loss['bits_per_byte']:.4f} ({loss['eval_tokens']:,} tokens)")
    if results:
        from ..evals.run import table
        print(table(results))
    return 0


def _task_specs(tasks: str) -> list[Any]:
    from ..evals.run import parse_tasks
    return parse_tasks(tasks)


def _check_outputs(args: argparse.Namespace, specs: list[Any]) -> None:
    """--output and --report follow the writing rule of every command (gptkit/outputs.py), checked
    before the model is scored: never an input, never a file or directory gptkit did not write."""
    from ..outputs import is_json_with, output_dir, output_file
    inputs = [args.model, args.data, *(s.path for s in specs if s.path is not None)]
    if args.output:
        output_file(args.output, "output", inputs=inputs, ours=lambda p: is_json_with(p, "model", "tasks"),
                    what="results file")
    if args.report:
        output_dir(args.report, "report", inputs=inputs, ours=lambda e: e.name in ("REPORT.md", "report.json"),
                   what="report card")


def _write_json(path: str, obj: dict[str, Any]) -> None:
    from ..files import atomic_path, finite
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(finite(obj), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _task_results(args: argparse.Namespace, model: Any, specs: list[Any]) -> dict[str, Any]:
    from ..evals.harness import model_tokenizer
    from ..evals.run import run_tasks
    if any(s.kind != "jsonl" for s in specs):
        try:
            import lm_eval  # noqa: F401
        except ImportError:
            raise GptkitError("lm-eval tasks need lm-evaluation-harness: pip install 'gptkit[evals]' "
                              "(gptkit's own .jsonl task files do not)") from None
    tok = model_tokenizer(model, str(args.model))
    return run_tasks(model, tok, specs, batch_size=args.batch_size, dtype=args.dtype, limit=args.limit,
                     num_fewshot=args.num_fewshot, debug=args.debug)


def _data_figures(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    from ..data import TokenShards
    from ..device import autocast_dtype
    from ..evaluate import evaluate
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
    return {"data": str(args.data), "split": args.split, **r}


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
    data: str | None = _opt(None, "a directory written by `gptkit prepare` (with the model's tokenizer): loss and bits per byte")
    tasks: str | None = _opt(None, "benchmarks, comma-separated: lm-eval task names (hellaswag, arc_easy, ...), lm-eval "
                             ".yaml task files, or gptkit .jsonl files of {context, choices, label}")
    limit: int | None = _opt(None, "score only the first N questions of each task")
    num_fewshot: int | None = _opt(None, "examples in each prompt for lm-eval tasks (none: the task's default)")
    output: str | None = _opt(None, "also write every figure to this JSON file")
    report: str | None = _opt(None, "write the report card (REPORT.md, report.json) into this directory")
    split: str = _opt("val", "the split to evaluate", choices=["val", "train"])
    block_size: int | None = _opt(None, "tokens per evaluation window (none: the block size the model was trained at, else its context)")
    batch_size: int = _opt(8, "windows (or task continuations) per batch")
    max_batches: int | None = _opt(None, "stop after this many batches (none: the whole split)")
    dtype: str = _opt("auto", DTYPE_HELP, choices=DTYPE_CHOICES)
    json: bool = _opt(False, "print one JSON object instead of a sentence")


def register(sub: Any) -> None:
    ev = sub.add_parser("eval", help="a model's loss and bits per byte on prepared data, benchmark tasks, a report card")
    add_dataclass_args(ev, EvalCommand)
    ev.set_defaults(func=cmd_eval)
