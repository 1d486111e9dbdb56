"""Learning rates: the default peak by preset, warm-up + cosine decay.
"""
from __future__ import annotations

import math

from .config import TrainConfig

# Peak learning rates that train each preset well from scratch: smaller models take larger steps
# (GPT-2 124M's 6e-4 as in nanoGPT/GPT-3's table; the small CPU presets measured on the main job).
DEFAULT_LR = {"tiny": 3e-3, "mini": 3e-3, "small": 1e-3, "gpt2": 6e-4, "gpt2-medium": 3e-4,
              "gpt2-large": 2.5e-4, "gpt2-xl": 2e-4}
FINETUNE_LR = 1e-4


def with_default_lr(cfg: TrainConfig) -> TrainConfig:
    if cfg.lr is None:
        cfg.lr = FINETUNE_LR if cfg.init_from else DEFAULT_LR.get(cfg.preset, 6e-4)
    return cfg


def lr_at(it: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to min_lr at lr_decay_iters, then flat."""
    min_lr = cfg.lr / 10 if cfg.min_lr is None else cfg.min_lr
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    if it >= decay_iters:
        return min_lr
    ratio = (it - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - min_lr)
