"""A run directory: the HF-layout model at the top, checkpoints/ (complete, atomically switched),
metrics.jsonl, loss.png and the training state that --resume reads.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from .errors import GptkitError
from .files import (
    atomic_path,
    write_json,  # noqa: F401 (the trainer writes through these too)
)
from .hf import save_model
from .model import GPT
from .outputs import png_metadata
from .tokenizer import Tokenizer

TRAIN_STATE_FILE = "train_state.pt"

class RunFiles:
    """The run directory: the HF-layout model at the top, complete checkpoints under checkpoints/.

    A checkpoint is written whole into a temporary directory, renamed, and only then does the
    `last` symlink move to it (one atomic rename); the top-level files are hard links to it.
    """

    def __init__(self, out: str | os.PathLike) -> None:
        self.root = Path(out)
        self.ckpts = self.root / "checkpoints"
        self.metrics = self.root / "metrics.jsonl"

    @property
    def last(self) -> Path:
        return self.ckpts / "last"

    def staging(self, step: int) -> Path:
        return self.ckpts / f".step-{step:08d}.tmp"

    def begin(self, step: int) -> Path:
        """An empty staging directory for a checkpoint that other ranks write into (FSDP shards)."""
        tmp = self.staging(step)
        for d in (tmp, self.ckpts / f"step-{step:08d}"):
            _rmtree(d)
        tmp.mkdir(parents=True)
        return tmp

    def save(self, model: GPT, tokenizer: Tokenizer, state: dict[str, Any], step: int, begun: bool = False,
             extra: Any = None) -> None:
        """extra: called with the staging directory to add files to the checkpoint before it is switched in."""
        self.ckpts.mkdir(parents=True, exist_ok=True)
        final = self.ckpts / f"step-{step:08d}"
        tmp = self.staging(step)
        for d in ((final,) if begun else (tmp, final)):
            _rmtree(d)
        try:
            save_model(model, tmp, tokenizer)
            save_train_state(tmp, state)
            if extra is not None:
                extra(tmp)
            os.replace(tmp, final)
        except BaseException:  # a full disk, Ctrl-C: no half checkpoint left (the last one stays)
            _rmtree(tmp)
            raise
        link_tmp = self.ckpts / ".last.tmp"
        _unlink(link_tmp)
        os.symlink(final.name, link_tmp)
        os.replace(link_tmp, self.last)
        for f in final.iterdir():
            if f.is_file() and f.name != TRAIN_STATE_FILE:
                self._link_top(f)
        for old in self.ckpts.glob("step-*"):
            if old != final:
                _rmtree(old)

    def _link_top(self, f: Path) -> None:
        tmp = self.root / f".{f.name}.link"
        _unlink(tmp)
        os.link(f, tmp)
        os.replace(tmp, self.root / f.name)


def _rmtree(path: Path) -> None:
    import shutil
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _unlink(path: Path) -> None:
    if path.is_symlink() or path.exists():
        path.unlink()


def read_metrics(path: Path, up_to_step: int | None = None) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue  # a line cut by a kill
        if up_to_step is None or row.get("step", 0) <= up_to_step:
            rows.append(row)
    return rows


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """JSON lines, strictly: a value that is not a finite number is written as null (NaN is not JSON)."""
    def finite(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps({k: finite(v) for k, v in r.items()}, allow_nan=False) + "\n"
                               for r in rows))


def plot_losses(rows: list[dict[str, Any]], path: Path) -> None:
    """loss.png: train and val loss over steps; below it each --eval-tasks task's accuracy (as
    llm.c plots HellaSwag beside the loss), where there are any; then the learning rate."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    train = [(r["step"], r["loss"]) for r in rows if r.get("kind") == "train"]
    val = [(r["step"], r["val_loss"]) for r in rows if r.get("kind") == "eval"]
    lr = [(r["step"], r["lr"]) for r in rows if r.get("kind") == "train" and "lr" in r]
    tasks = sorted({k for r in rows if r.get("kind") == "eval" for k in r
                    if k.startswith("task/") and k.endswith("/acc_norm")})
    panels = (3, 2, 1) if tasks else (3, 1)
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 5.5 + 2 * bool(tasks)), sharex=True, height_ratios=panels)
    ax, ax_lr = axes[0], axes[-1]
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="val loss")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    if tasks:
        ax_t = axes[1]
        for key in tasks:
            pts = [(r["step"], r[key]) for r in rows if r.get("kind") == "eval" and key in r]
            ax_t.plot(*zip(*pts), "o-", label=key.removeprefix("task/").replace("/", " "))
        ax_t.set_ylabel("accuracy")
        ax_t.grid(alpha=0.3)
        ax_t.legend()
    if lr:
        ax_lr.plot(*zip(*lr), color="tab:green", lw=1)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata=png_metadata())
    plt.close(fig)


# ---------------------------------------------------------------------------- training state

def save_train_state(directory: str | os.PathLike, state: dict[str, Any]) -> None:
    with atomic_path(Path(directory) / TRAIN_STATE_FILE) as tmp:
        torch.save(state, tmp)


def load_train_state(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / TRAIN_STATE_FILE
    if not path.is_file():
        raise GptkitError(f"{path}: missing (nothing to resume from)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise GptkitError(f"{path}: unreadable or truncated ({type(e).__name__})") from None
