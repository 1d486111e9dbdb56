"""What the trainer checks about its run directory before any work: a new run never writes into a
directory of the user's own files, and --resume continues the run in --out as it was (same model,
same windows, same tokenizer by content), naming the flag that would change it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import distributed as distr
from ..distributed import Runtime
from ..errors import GptkitError, OptionError
from ..files import check_parent_dirs
from ..model import GPTConfig, model_options
from ..rundir import RunFiles
from ..tokenizer import Tokenizer
from .config import TrainConfig

# What a run directory may hold: what the trainer, the data card, TensorBoard and the task hooks write.
RUN_FILES = {"checkpoints", "metrics.jsonl", "loss.png", "train_config.json", "config.json", "model.safetensors",
             "train_state.pt", "generation_config.json", "vocab.json", "merges.txt", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "tb", "DATACARD.md", "datacard.json",
             "adapter_model.safetensors", "adapter_config.json", "best", "merged"}

def check_run_dir(out: Path, resume: bool, inputs: Iterable[Any] = ()) -> None:
    """--out for a new run: a new or empty directory, or one with a run's files but no checkpoint (a
    run stopped before its first); for --resume: a run with a checkpoint. Never a directory of the
    user's own files, one of the inputs (--data, --init-from), nor a path under a file."""
    from ..outputs import input_clash, output_dir
    check_parent_dirs(out, "out")
    if out.exists() and not out.is_dir():
        raise OptionError("out", f"{out} exists and is not a directory")
    clash = input_clash(out, inputs)
    if clash is not None:
        raise OptionError("out", f"{out} is (or holds) the input {clash}: gptkit never writes over its inputs; "
                          "choose another --out")
    last = out / "checkpoints" / "last"
    if resume:
        if not last.exists():
            raise GptkitError(f"{out}: no checkpoint to resume from (checkpoints/last is missing); "
                              "drop --resume to start a new run there")
        return
    if last.exists() or last.is_symlink():
        raise GptkitError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    output_dir(out, "out", ours=lambda p: p.name in RUN_FILES or p.name.startswith((".", "best-step-")), what="run")


def clean_run_temps(root: Path) -> None:
    """What a killed run left behind: half-written files (`.name.PID.xxxx.tmp`, older `.name.xxxx.tmp`),
    link temps and checkpoint staging directories. The run directory is this run's alone."""
    for d in (root, root / "checkpoints"):
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if p.name.startswith(".") and p.name.endswith((".tmp", ".link")):
                with contextlib.suppress(OSError):
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def check_resume(files: RunFiles, state: dict[str, Any], cfg: TrainConfig, tokenizer: Tokenizer,
                 planned: GPTConfig | None, data_dir: Path, rt: Runtime) -> None:
    """--resume continues the run in --out as it was: refuse flags that would change the model, the
    windows or the tokens (naming the flag), and budgets with nothing left to train; say what else
    changed. (What a changed --max-iters or --max-minutes does to the schedule is --extend's.)"""
    step = int(state.get("step", 0))
    if step >= cfg.max_iters:
        raise OptionError("max_iters", f"{cfg.max_iters}: the run in {files.root} already reached step {step}, "
                          "so there is nothing to train; raise --max-iters to train it further")
    elapsed = float(state.get("elapsed_s", 0.0) or 0.0)
    if cfg.max_minutes is not None and elapsed >= cfg.max_minutes * 60:
        raise OptionError("max_minutes", f"{cfg.max_minutes:g}: the run in {files.root} already trained "
                          f"{elapsed / 60:.1f} minutes, its whole budget, so there is nothing to train; raise "
                          "--max-minutes to train it further")
    old = run_config(state)
    if "block_size" in old and old["block_size"] != cfg.block_size:
        raise OptionError("block_size", f"{cfg.block_size} does not match the run in {files.root}, trained at "
                          f"{old['block_size']}: a resumed run keeps its windows; drop the flag or start a new --out")
    run_tok = Tokenizer.load(files.last) if (files.last / "vocab.json").is_file() else None
    if run_tok is not None and run_tok.fingerprint != tokenizer.fingerprint:
        same = "same size, " if run_tok.vocab_size == tokenizer.vocab_size else ""
        raise GptkitError(f"--data {data_dir} was prepared with another tokenizer than the run in {files.root} "
                          f"({same}{tokenizer.vocab_size} vs {run_tok.vocab_size} tokens, different vocabularies): "
                          f"its ids mean other text to this model; prepare it with --tokenizer {files.root}")
    if planned is not None:
        check_same_model(files, planned, cfg, old)
    if state.get("data_digest", data_digest(data_dir)) != data_digest(data_dir):
        distr.note(rt, f"resuming on {data_dir}, other data than the run was trained on ({state.get('data')}; same "
                       "tokenizer): the run continues on the new data")
    if "seed" in old and old["seed"] != cfg.seed:
        distr.note(rt, f"--seed {cfg.seed} differs from the run's {old['seed']}: it continues on other batches")


def run_config(state: dict[str, Any]) -> dict[str, Any]:
    """The training options the checkpoint was written under ({} when unreadable)."""
    try:
        old = json.loads(state["config"])
    except (KeyError, TypeError, ValueError, RecursionError):
        return {}
    return old if isinstance(old, dict) else {}


def data_digest(data_dir: Path) -> str:
    """What a data directory holds (its meta.json: shard sizes, tokenizer, sources), wherever it lies."""
    try:
        return hashlib.sha256((data_dir / "meta.json").read_bytes()).hexdigest()[:16]
    except OSError:
        return ""


def check_same_model(files: RunFiles, new: GPTConfig, cfg: TrainConfig, old: dict[str, Any] | None = None) -> None:
    """The checkpoint's model (its config.json, any layout) against the one these options make: every
    field that decides what the weights compute (GPTConfig.architecture), each named as its flag."""
    from ..hf import read_config
    ckpt = read_config(files.last)
    if ckpt.vocab_size != new.vocab_size:
        raise GptkitError(f"--data has a {new.vocab_size}-token vocabulary, the run in {files.root} {ckpt.vocab_size}")
    theirs, ours = ckpt.architecture(), new.architecture()
    differ = [name for name in theirs if theirs[name] != ours[name]]
    if not differ:
        return
    trained = _flags(differ, theirs)
    flags = cfg.model_flags()
    given = [name for name in differ if name in flags]
    if given:
        option = given[0] if getattr(cfg, given[0]) is not None else "mlp"
        raise OptionError(option, f"{_shown(getattr(cfg, option))} does not match the run in {files.root}, trained "
                          f"with {trained}: a resumed run keeps its model; drop the flag or start a new --out")
    old = old or {}
    if old.get("preset", cfg.preset) != cfg.preset:
        raise OptionError("preset", f"{cfg.preset} does not match the run in {files.root}, trained with --preset "
                          f"{old['preset']} ({trained}): a resumed run keeps its model; pass the run's flags or start "
                          "a new --out")
    raise GptkitError(f"the run in {files.root} was trained with {trained}, these options make "
                      f"{_flags(differ, ours)}: resume with the flags it was "
                      "trained with")


def adopt_run_model(files: RunFiles, cfg: TrainConfig, planned: GPTConfig, old: dict[str, Any]) -> None:
    """--resume takes the model from the run (its checkpoint's config.json), as nanoGPT and LitGPT do:
    each model option the user did not give is set to the run's value (dropout too), so that only the
    flags given are compared with it, and check_same_model refuses one that contradicts it, by name.
    Under another --preset than the run's, nothing is taken: that preset's shape is compared."""
    from ..hf import read_config
    if old.get("preset", cfg.preset) != cfg.preset:
        return
    ckpt = read_config(files.last)
    theirs, ours = ckpt.architecture(), planned.architecture()
    flags, options = cfg.model_flags(), {f.name for f in model_options()}
    for name in theirs:
        if name in options and name not in flags and theirs[name] != ours[name]:
            setattr(cfg, name, getattr(ckpt, name))
    if cfg.dropout is None:
        cfg.dropout = ckpt.dropout


def _flags(names: list[str], values: dict[str, Any]) -> str:
    """The flags that set `names` to `values`; settings that are off (None) only where all are."""
    on = [name for name in names if values[name] is not None] or names
    return " ".join(_as_flag(name, values[name]) for name in on)


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict) else str(value)


def _as_flag(name: str, value: Any) -> str:
    """The flag that sets option `name` to `value` (--bias / --no-bias for a switch)."""
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    return f"no {flag}" if value is None else f"{flag} {_shown(value)}"
