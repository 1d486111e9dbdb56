"""What a run says while it trains: the banner before the first step, the progress bar, the
train-loss rows of metrics.jsonl and TensorBoard's event files.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..data import TokenShards
from ..distributed import Runtime
from ..model import GPT, GPTConfig
from ..rundir import RunFiles
from .config import TrainConfig
from .speed import flops_per_token, peak_flops


def banner(model: GPT, cfg: TrainConfig, rt: Runtime, why: str, train_data: TokenShards, val_data: TokenShards,
           start: int, muon_why: str = "") -> str:
    """What is about to run, before the first step (as nanoGPT and LitGPT print it); `why` says why
    the compute dtype, `muon_why` why Muon's Newton-Schulz precision."""
    c = model.config
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum * rt.world_size
    steps = cfg.max_iters - start
    total = tokens_per_step * steps
    what = f"--init-from {cfg.init_from}" if cfg.init_from else f"preset {cfg.preset}"
    ranks = f" x {rt.world_size} ranks ({rt.strategy})" if rt.world_size > 1 else ""
    lines = [
        (f"model     {model.num_parameters() / 1e6:,.2f}M parameters ({what}: {c.n_layer} layers, {c.n_head} heads, "
        f"{c.n_embd} wide, context {c.n_positions}, vocabulary {c.vocab_size:,})"),
        f"compute   {rt.device}{ranks}, {cfg.dtype} ({why}), {torch.get_num_threads()} threads",
        (f"steps     {f'{steps:,}' if steps < 10**6 else 'as many as fit'}{f' (resuming at {start:,})' if start else ''}"
        f"{f' in {cfg.max_minutes:g} minutes' if cfg.max_minutes is not None else ''} x {tokens_per_step:,} "
        f"tokens/step (batch {cfg.batch_size} x block {cfg.block_size} x accum {cfg.grad_accum}"
        f"{f' x {rt.world_size} ranks' if rt.world_size > 1 else ''})"
        f"{f' = {total / 1e6:,.2f}M tokens' if steps < 10**6 else ''}, peak lr {cfg.lr:g}"),
        (f"recipe    {cfg.optimizer}{_muon(cfg, muon_why)}, {cfg.schedule} schedule "
         f"over {'the time budget' if cfg.max_minutes is not None else 'the steps'}; "
         f"{_options(c) or 'GPT-2 architecture'}"),
        (f"data      {train_data.data_dir}: {train_data.num_tokens / 1e6:,.2f}M train tokens"
        f"{f' ({_epochs(train_data, steps, total, cfg, rt):.2f} epochs)' if steps < 10**6 else ''}, "
        f"{val_data.num_tokens / 1e6:,.2f}M val tokens"),
        f"output    {Path(cfg.out)} (model files, checkpoints/, metrics.jsonl, loss.png)",
    ]
    return "\n".join(lines)


def _epochs(data: Any, steps: int, tokens: int, cfg: TrainConfig, rt: Runtime) -> float:
    """Passes over the training data in `steps`: token windows over tokens, or (task examples,
    finetune) examples per step over examples."""
    if hasattr(data, "rows"):  # a step is examples padded to their longest, not a block of tokens
        return steps * cfg.batch_size * cfg.grad_accum * rt.world_size / max(len(data.rows), 1)
    return tokens / max(data.num_tokens, 1)


def _muon(cfg: TrainConfig, why: str) -> str:
    if cfg.optimizer != "muon":
        return ""
    lr = f"muon lr {cfg.muon_lr:g}, " if cfg.muon_lr else ""
    return f" ({lr}Newton-Schulz in {cfg.muon_dtype}{f': {why}' if why else ''})"


def _options(c: GPTConfig) -> str:
    parts = [c.n_kv_head != c.n_head and f"{c.n_kv_head} key/value heads", c.position_embedding == "rope" and "RoPE", c.norm == "rmsnorm" and "RMSNorm",
             not c.bias and "no bias", c.gated_mlp and f"gated {c.activation_function} MLP",
             not c.gated_mlp and c.activation_function == "relu2" and "ReLU² MLP", c.qk_norm and "QK-norm",
             not c.tie_word_embeddings and "untied head", c.zero_init and "zero-init projections",
             c.logit_softcap is not None and f"logit soft-cap {c.logit_softcap:g}"]
    return ", ".join(p for p in parts if p)


class Log:
    """Train-loss rows every log_interval steps (tokens/s, MFU where the peak is known) and the
    progress bar."""

    def __init__(self, cfg: TrainConfig, rt: Runtime, model: GPT, start: int, files: RunFiles) -> None:
        self.cfg, self.rt = cfg, rt
        self.tb = tensorboard(files, cfg, rt, start)
        self.tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum * rt.world_size
        self.flops_per_token, self.peak = flops_per_token(model, cfg.block_size), peak_flops(rt.device)
        self.bar = progress_bar(cfg, rt, start)
        self.last, self.tokens_since = time.time(), 0

    def step(self, step: int, loss: torch.Tensor, lr: float, rows: list[dict[str, Any]],
             elapsed: float) -> float | None:
        """Count the step; on a logging step, log its loss and return it (else None)."""
        self.tokens_since += self.tokens_per_step
        value = None
        if step % self.cfg.log_interval == 0 or step == self.cfg.max_iters:
            value = loss.item()  # the one wait for the device per log interval (the loss stays on it till now)
            now = time.time()
            tps = self.tokens_since / max(now - self.last, 1e-9)
            rows.append({"kind": "train", "step": step, "loss": value, "lr": lr, "tokens_per_s": tps,
                         "tokens": step * self.tokens_per_step, "time": now, "elapsed_s": round(elapsed, 3)})
            if self.tb is not None:
                for k in ("loss", "lr", "tokens_per_s"):
                    self.tb.add_scalar(f"train/{k}", rows[-1][k], step)
            # MFU: model FLOPs per token x tokens/s over the devices' bf16 peak (GPUs in the table only)
            mfu = self.flops_per_token * tps / (self.peak * self.rt.world_size) if self.peak else None
            if mfu is not None:
                rows[-1]["mfu"] = mfu
            self.last, self.tokens_since = now, 0
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{value:.3f}", tok_s=f"{tps:,.0f}", refresh=False,
                                     **({"mfu": f"{mfu:.1%}"} if mfu is not None else {}))
        if self.bar is not None:
            self.bar.update(1)
        return value

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()


def progress_bar(cfg: TrainConfig, rt: Runtime, start: int) -> Any:
    if not (cfg.progress and rt.is_main):
        return None
    from tqdm.auto import tqdm
    # a time budget with an iteration cap far away: count steps without a meaningless total
    total = None if cfg.max_minutes is not None and cfg.max_iters >= 1_000_000 else cfg.max_iters
    desc = f"train ({cfg.max_minutes:g} min)" if cfg.max_minutes is not None else "train"
    return tqdm(total=total, initial=start, desc=desc, unit="it", dynamic_ncols=True)


def tensorboard(files: RunFiles, cfg: TrainConfig, rt: Runtime, start: int) -> Any:
    """A TensorBoard writer into <out>/tb (rank 0; None when off or tensorboard is missing)."""
    if not (cfg.tensorboard and rt.is_main):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(files.root / "tb"), purge_step=start or None)
