"""TrainConfig: every training option, with its help text (the CLI's one source of truth).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import GptkitError
from ..model import PRESETS


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    # data and output
    data: str | None = _opt(None, "a prepared data directory; None: the embedded stdlib corpus")
    out: str = _opt("runs/stdlib", "the run directory to write (model, checkpoints/, metrics.jsonl, loss.png)")
    preset: str = _opt("mini", "model size: tiny, mini, small, gpt2, gpt2-medium, gpt2-large, gpt2-xl")
    init_from: str | None = _opt(None, "a model directory or Hub id to continue training from")
    # model overrides (None = the preset's value)
    n_layer: int | None = _opt(None, "transformer blocks (none: the preset's)")
    n_head: int | None = _opt(None, "attention heads per block (none: the preset's)")
    n_embd: int | None = _opt(None, "model width, in channels (none: the preset's)")
    n_positions: int | None = _opt(None, "the model's context length, in tokens (none: the preset's)")
    dropout: float = _opt(0.0, "dropout probability on attention, residual and embeddings")
    bias: bool = _opt(True, "biases in Linear and LayerNorm layers (GPT-2 has them)")
    block_size: int = _opt(256, "training sequence length in tokens, <= the model's n_positions")
    # optimisation
    batch_size: int = _opt(16, "sequences per micro-batch, per rank")
    grad_accum: int = _opt(1, "micro-batches accumulated per optimizer step")
    max_iters: int = _opt(600, "optimizer steps in total")
    max_minutes: float | None = _opt(None, "stop (with an eval and a checkpoint) after this many minutes of wall time")
    lr: float | None = _opt(None, "peak learning rate (none: the preset's, 1e-4 with --init-from)")
    min_lr: float | None = _opt(None, "final learning rate of the cosine decay (none: lr / 10)")
    warmup_iters: int = _opt(30, "steps of linear learning-rate warm-up")
    lr_decay_iters: int | None = _opt(None, "step at which the cosine decay reaches min_lr (none: max_iters)")
    weight_decay: float = _opt(0.1, "AdamW weight decay of the weight matrices")
    beta1: float = _opt(0.9, "AdamW beta1")
    beta2: float = _opt(0.95, "AdamW beta2")
    grad_clip: float = _opt(1.0, "clip the global gradient norm to this (0: off)")
    # evaluation, logging, checkpoints
    eval_interval: int = _opt(100, "steps between evaluations, each followed by a checkpoint")
    eval_iters: int = _opt(20, "val batches per evaluation")
    log_interval: int = _opt(10, "steps between train-loss rows in metrics.jsonl")
    # runtime
    dtype: str = _opt("auto", "autocast precision: auto, bfloat16, float16, float32 (weights stay fp32)")
    device: str = _opt("auto", "cpu, cuda, cuda:N (auto: cuda if available)")
    compile: bool = _opt(False, "torch.compile the model")
    seed: int = _opt(1337, "seed of the initialisation, the data rows and dropout")
    resume: bool = _opt(False, "continue the run in --out from its last checkpoint")
    strategy: str = _opt("auto", "auto, single, ddp, fsdp (auto: ddp under torchrun, else single)")
    dist_timeout: float = _opt(300.0, "seconds a collective waits for a missing rank before the job fails")
    progress: bool = _opt(True, "show a progress bar")

    def validate(self) -> None:
        checks = [
            (self.block_size >= 1, f"block_size must be >= 1, got {self.block_size}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}"),
            (self.max_iters >= 1, f"max_iters must be >= 1, got {self.max_iters}"),
            (self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.warmup_iters >= 0, f"warmup_iters must be >= 0, got {self.warmup_iters}"),
            (self.eval_interval >= 1, f"eval_interval must be >= 1, got {self.eval_interval}"),
            (self.eval_iters >= 1, f"eval_iters must be >= 1, got {self.eval_iters}"),
            (self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}"),
            (self.max_minutes is None or self.max_minutes > 0, f"max_minutes must be > 0, got {self.max_minutes}"),
            (self.dtype in ("auto", "bfloat16", "float16", "float32"), f"unknown dtype {self.dtype!r}"),
            (self.strategy in ("auto", "single", "ddp", "fsdp"), f"unknown strategy {self.strategy!r}"),
            (self.dist_timeout > 0, f"dist_timeout must be > 0, got {self.dist_timeout}"),
            (self.init_from is not None or self.preset in PRESETS,
             f"unknown preset {self.preset!r} (choose from {', '.join(PRESETS)})"),
        ]
        for ok, msg in checks:
            if not ok:
                raise GptkitError(msg)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GptkitError(f"{source}: unknown training option(s) {', '.join(unknown)}")
        return cls(**d)
