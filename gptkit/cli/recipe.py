"""`gptkit lr-find` (the learning-rate range test) and `gptkit sweep` (Optuna search over a
training config, each trial a normal run directory)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .args import add_dataclass_args, command_options, from_args
from .args import option as _opt
from .prepare import STDLIB_TOKENIZER, STDLIB_VOCAB, corpus_data_dir, stdlib_data_dir

LR_FIND_SKIP = ("data", "progress", "out", "resume", "max_iters", "max_minutes", "extend", "eval_interval",
                "eval_iters", "log_interval", "tensorboard", "schedule", "cooldown", "warmup_iters",
                "lr_decay_iters", "min_lr")
SWEEP_SKIP = ("data", "progress", "out", "resume", "max_minutes", "extend")


@dataclass
class DataOptions:
    """What lr-find and sweep train on (as `gptkit train`); every TrainConfig field is a flag too."""
    data: str | None = _opt(None, "a directory written by `gptkit prepare`, or raw text, prepared once into the "
                            "cache (none: the Python standard library corpus)")
    tokenizer: str = _opt(STDLIB_TOKENIZER, "for raw --data: gpt2, bytes, bpe, or a tokenizer directory")
    vocab_size: int | None = _opt(None, f"for raw --data with bpe: tokens in the trained vocabulary (none: {STDLIB_VOCAB})")
    config: str | None = _opt(None, "a JSON or TOML file of training options; flags override it")
    quiet: bool = _opt(False, "less output", flags=["-q"])


@dataclass
class LRFindOptions:
    start_lr: float = _opt(1e-6, "the ramp's first learning rate")
    end_lr: float = _opt(1.0, "the ramp's last learning rate")
    steps: int = _opt(200, "training steps of the ramp (on a copy of the model)")
    plot: str = _opt("lr_find.png", "where to save the loss-vs-lr plot (PNG)")


@dataclass
class SweepOptions:
    out: str = _opt("runs/sweep", "the sweep directory: study.db, trial-NNN/ run directories, results.csv, "
                    "sweep.png, best.toml, tb/")
    budget_minutes: float = _opt(2.0, "each trial's training budget, in minutes")
    trials: int = _opt(10, "trials in the study, across all processes and resumes")
    space: str | None = _opt(None, "a search-space file (TOML/JSON); none: the built-in space (lr, width, depth, "
                             "batch, warm-up)")
    sampler_seed: int = _opt(0, "seed of the TPE sampler")


def _data(args: argparse.Namespace, progress: bool) -> str:
    if args.data is None:
        return str(stdlib_data_dir(progress=progress))
    if Path(args.data).exists() and not (Path(args.data) / "meta.json").is_file():
        vocab = args.vocab_size or (STDLIB_VOCAB if args.tokenizer == "bpe" else None)
        return str(corpus_data_dir(Path(args.data), args.tokenizer, vocab, progress=progress))
    return args.data


def _base_config(args: argparse.Namespace) -> dict[str, Any]:
    from ..train import TrainConfig
    from .args import load_config_file
    args.config = getattr(args, "config", None)
    base = load_config_file(args.config) if args.config else {}
    command_options(DataOptions, args, base, args.config or "flags")  # data, tokenizer, vocab_size, quiet
    return from_args(TrainConfig, args, base)


def cmd_lr_find(args: argparse.Namespace) -> int:
    from ..train import TrainConfig
    from ..train.lr_find import lr_find
    opts = LRFindOptions(**{k: v for k, v in vars(args).items() if k in LRFindOptions.__dataclass_fields__})
    values = _base_config(args)
    from ..outputs import is_gptkit_png, output_file
    output_file(opts.plot, "plot", inputs=[args.data, values.get("init_from"), args.config], ours=is_gptkit_png,
                what="plot")  # before any data is prepared
    values.update(data=_data(args, not args.quiet), progress=False)
    cfg = TrainConfig.from_dict(values, source=args.config or "flags")
    r = lr_find(cfg, opts.plot, opts.start_lr, opts.end_lr, opts.steps)
    how = "stopped once the loss diverged" if r.stopped_early else "ran the whole ramp"
    print(f"lr-find: {len(r.lrs)} steps from {r.lrs[0]:.2g} to {r.lrs[-1]:.2g} ({how}); the loss bottoms out at "
          f"lr {r.min_loss_lr:.3g}")
    print(f"suggested lr: {r.suggested_lr:.3g}  (use --lr {r.suggested_lr:.2g}); plot saved in {opts.plot}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..train.sweep import sweep
    opts = SweepOptions(**{k: v for k, v in vars(args).items() if k in SweepOptions.__dataclass_fields__})
    values = _base_config(args)
    from ..train.sweep import check_sweep_out
    check_sweep_out(opts.out, [args.data, values.get("init_from"), opts.space, args.config])  # before data prep
    values.update(data=_data(args, not args.quiet))
    result = sweep(values, opts.out, opts.budget_minutes, opts.trials, opts.space, opts.sampler_seed,
                   progress=not args.quiet, config_source=args.config or "flags")
    print(result.table)
    print(f"best: trial {result.best_trial} with val loss {result.best_value:.4f}; config in {result.best_config} "
          f"(gptkit train --config {result.best_config}); plot {result.plot}; TensorBoard {Path(opts.out) / 'tb'}")
    return 0


def _common(p: argparse.ArgumentParser, skip: tuple[str, ...]) -> None:
    from ..train import TrainConfig
    add_dataclass_args(p, DataOptions, suppress=True)
    add_dataclass_args(p, TrainConfig, skip=skip, suppress=True)


def register(sub: Any) -> None:
    lf = sub.add_parser("lr-find", help="learning-rate range test: loss vs an exponentially growing lr, plot "
                        "and suggested lr (the model is not changed)")
    add_dataclass_args(lf, LRFindOptions)
    _common(lf, LR_FIND_SKIP)
    lf.set_defaults(func=cmd_lr_find)
    sw = sub.add_parser("sweep", help="hyperparameter search with Optuna (TPE, pruning, resumable): each trial a "
                        "run directory; best config written for train --config")
    add_dataclass_args(sw, SweepOptions)
    _common(sw, SWEEP_SKIP)
    sw.set_defaults(func=cmd_sweep)
