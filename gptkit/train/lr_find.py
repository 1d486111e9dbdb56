"""The learning-rate range test (Leslie Smith; fastai's lr_find): train a copy of the model for
a few hundred steps while the lr grows exponentially from tiny to huge, record the smoothed loss
at each lr, and suggest the lr a tenth of the one where the loss bottoms out (the loss still falls
fast there, and is far from divergence). The model and optimizer the caller holds are untouched:
the test runs on deep copies.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import TokenShards
from ..device import autocast_dtype, muon_dtype
from ..distributed import Runtime
from ..errors import GptkitError
from ..files import atomic_path
from ..outputs import is_gptkit_png, output_file, png_metadata
from ..tokenizer import Tokenizer
from .config import TrainConfig
from .loop import train_step
from .optim import make_optimizer, set_lr


@dataclass
class LRFindResult:
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # smoothed (bias-corrected EMA)
    suggested_lr: float = float("nan")
    min_loss_lr: float = float("nan")
    stopped_early: bool = False


def lr_range_test(model: torch.nn.Module, data: TokenShards, cfg: TrainConfig, start_lr: float = 1e-6,
                  end_lr: float = 1.0, steps: int = 200, optimizer: Any = None, smoothing: float = 0.98,
                  diverge: float = 4.0) -> LRFindResult:
    """Run the range test on copies of `model` (and `optimizer`, whose state it starts from, if
    given). Stops early once the smoothed loss exceeds `diverge` x its minimum."""
    if not (0 < start_lr < end_lr) or not all(map(math.isfinite, (start_lr, end_lr))):
        raise GptkitError(f"--start-lr {start_lr:g} must be > 0 and below --end-lr {end_lr:g}")
    if steps < 10:
        raise GptkitError(f"--steps must be >= 10, got {steps}")
    device = next(model.parameters()).device
    work = copy.deepcopy(model).train()
    opt = make_optimizer(work, cfg.optimizer, start_lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), device,
                         None if cfg.muon_lr is None else cfg.muon_lr * start_lr / cfg.lr,
                         muon_dtype(cfg.muon_dtype, device))
    if optimizer is not None:  # continue from the caller's optimizer statistics, on the copy
        opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        opt.gptkit_peaks = [start_lr] * len(opt.param_groups)
    amp = autocast_dtype(cfg.dtype if cfg.dtype != "auto" else "float32", device)
    rt = Runtime(device=device)
    result = LRFindResult()
    avg, best = 0.0, math.inf
    gamma = (end_lr / start_lr) ** (1 / (steps - 1))
    for i in range(steps):
        lr = start_lr * gamma ** i
        set_lr(opt, lr, start_lr)
        total = train_step(work, work, opt, data, cfg, rt, i, amp).item()  # the trainer's own step
        if not math.isfinite(total):
            result.stopped_early = True
            break
        avg = smoothing * avg + (1 - smoothing) * total
        smoothed = avg / (1 - smoothing ** (i + 1))
        result.lrs.append(lr)
        result.losses.append(smoothed)
        best = min(best, smoothed)
        if i > 10 and smoothed > diverge * best:
            result.stopped_early = True
            break
    if len(result.losses) < 5:
        raise GptkitError("the loss diverged at once: lower --start-lr")
    k = min(range(len(result.losses)), key=result.losses.__getitem__)
    result.min_loss_lr = result.lrs[k]
    result.suggested_lr = result.min_loss_lr / 10
    for message in edge_warnings(result, k, steps, start_lr, end_lr):
        warnings.warn(message, stacklevel=2)
    return result


def edge_warnings(result: LRFindResult, k: int, steps: int, start_lr: float, end_lr: float) -> list[str]:
    """Why the suggestion may mislead: the loss minimum at an end of the ramp says the best lr may
    lie outside it, and a suggestion below --start-lr was never tried."""
    edge = max(1, steps // 50)  # the first / last 2% of the ramp
    out = []
    if k >= steps - edge:
        out.append(f"the loss was still falling at the end of the ramp (lowest at lr {result.min_loss_lr:.3g}, "
                   f"--end-lr {end_lr:g}): the minimum may lie beyond it, so the suggestion may be too low; "
                   "rerun with a higher --end-lr or more --steps")
    elif k < edge:
        out.append(f"the loss was lowest at the start of the ramp (lr {result.min_loss_lr:.3g}, --start-lr "
                   f"{start_lr:g}), as for an already-trained model: the best lr may lie below it; rerun with a "
                   "lower --start-lr")
    if result.suggested_lr < start_lr and not out:
        out.append(f"the suggested lr {result.suggested_lr:.3g} lies below --start-lr {start_lr:g}: it was not "
                   "tried; rerun with a lower --start-lr to see the loss there")
    return out


def plot(result: LRFindResult, path: str | Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(result.lrs, result.losses, lw=1.5, label="smoothed train loss")
    ax.axvline(result.suggested_lr, color="C2", ls="--", label=f"suggested lr {result.suggested_lr:.2g}")
    ax.axvline(result.min_loss_lr, color="C3", ls=":", label=f"loss minimum at {result.min_loss_lr:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (nats/token)")
    lo = min(result.losses)
    ax.set_ylim(lo - 0.1 * abs(lo), min(max(result.losses), result.losses[0] * 1.2 + 0.1))
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata=png_metadata())
    plt.close(fig)
    return path


def lr_find(cfg: TrainConfig, out: str | Path = "lr_find.png", start_lr: float = 1e-6, end_lr: float = 1.0,
            steps: int = 200) -> LRFindResult:
    """The range test for the model `cfg` describes (fresh, or --init-from), on its data."""
    from ..hf import check_saveable
    from .config import model_config
    from .loop import build_model, check_block_size
    from .schedule import with_default_lr
    cfg.apply_recipe()
    cfg.validate()
    with_default_lr(cfg)
    if cfg.data is None:
        raise GptkitError("no --data given")
    out = output_file(out, "plot", inputs=[cfg.data, cfg.init_from], ours=is_gptkit_png, what="plot")
    tokenizer = Tokenizer.load(cfg.data)
    if not cfg.init_from:
        mconfig = model_config(cfg, tokenizer.vocab_size, tokenizer.eot_id)
        check_block_size(cfg, mconfig.n_positions)
        check_saveable(mconfig)
    data = TokenShards(cfg.data, "train")
    if data.num_tokens < cfg.block_size + 1:
        raise GptkitError(f"the train split of {cfg.data} has fewer than block_size+1 tokens")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, tokenizer)
    check_block_size(cfg, model.config.n_positions)
    result = lr_range_test(model, data, cfg, start_lr, end_lr, steps)
    plot(result, out)
    return result
