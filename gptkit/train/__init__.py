"""Training: `train(TrainConfig(...)) -> TrainResult`.

config.py (TrainConfig, every option with its help), schedule.py (learning rates), optim.py
(optimizers), loop.py (the training loop), resume.py (the run directory and --resume checked
before any work), guards.py (Ctrl-C, divergence, eval coverage), report.py (banner, progress,
logged rows), speed.py (FLOPs per token, MFU).
"""
from __future__ import annotations

from .config import TrainConfig, model_config
from .loop import TrainResult, build_model, check_block_size, train
from .schedule import DEFAULT_LR, FINETUNE_LR, lr_at, with_default_lr

__all__ = ["DEFAULT_LR", "FINETUNE_LR", "TrainConfig", "TrainResult", "build_model", "check_block_size", "lr_at",
           "model_config", "train", "with_default_lr"]
