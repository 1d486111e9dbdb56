"""Training by maximum likelihood: cross-entropy, AdamW, warm-up + cosine schedule, checkpoints
that resume exactly, and evaluation in loss, perplexity and bits per byte.

Rank-aware from the first line (see distributed.py): under torchrun each rank takes its own rows
of the step's global batch (micro-batch x accumulation x world size rows, each drawn from a seed of
step and row, so the data position is the step itself and a global batch is the same whatever the
world size), DDP or FSDP2 keep the ranks in step, and only rank 0 writes.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import distributed as distr
from ..data import TokenShards
from ..data.batches import rank_batch, step_seed
from ..data.datacard import copy as copy_datacard
from ..device import autocast, autocast_dtype
from ..distributed import Runtime, setup_runtime
from ..errors import GptkitError
from ..evaluate import evaluate
from ..files import write_json
from ..hf import load_model
from ..hf.gpt2 import from_hf_state_dict, load_state_into
from ..hf.weights import read_weights
from ..model import GPT, GPTConfig, preset_config
from ..rundir import RunFiles, load_train_state, plot_losses, read_metrics, write_metrics
from ..tokenizer import Tokenizer
from .config import TrainConfig
from .optim import make_optimizer
from .schedule import lr_at, with_default_lr
from .speed import flops_per_token, measured_step_seconds, peak_flops

# ---------------------------------------------------------------------------- the run

def model_config(cfg: TrainConfig, vocab_size: int, eot_id: int) -> GPTConfig:
    overrides = {k: getattr(cfg, k) for k in ("n_layer", "n_head", "n_embd", "n_positions")
                 if getattr(cfg, k) is not None}
    return preset_config(cfg.preset, vocab_size=vocab_size, dropout=cfg.dropout, bias=cfg.bias,
                         eos_token_id=eot_id, bos_token_id=eot_id, **overrides)


def build_model(cfg: TrainConfig, tokenizer: Tokenizer) -> GPT:
    """A fresh GPT of the configured shape, or the --init-from model (same tokenizer required)."""
    if not cfg.init_from:
        return GPT(model_config(cfg, tokenizer.vocab_size, tokenizer.eot_id))
    model = load_model(cfg.init_from)
    theirs = model.tokenizer
    if model.config.vocab_size != tokenizer.vocab_size or (theirs is not None and theirs.ranks != tokenizer.ranks):
        raise GptkitError(f"--init-from {cfg.init_from} uses a different tokenizer than the data "
                          f"({model.config.vocab_size} vs {tokenizer.vocab_size} tokens); prepare the data "
                          "with that model's tokenizer (e.g. --tokenizer gpt2)")
    if cfg.dropout:
        model.config.dropout = cfg.dropout
    return model.train()

@dataclass
class TrainResult:
    out: Path
    step: int
    val: dict[str, float] = field(default_factory=dict)
    tokens_per_s: float = 0.0
    stopped_by: str = "max_iters"


def train(cfg: TrainConfig, hooks: Any = None) -> TrainResult:
    """Train as cfg says. `hooks` (optional) adapts the loop to another objective without forking
    it — gptkit.tasks.finetune.TaskHooks is the one in use. It provides:
      tokenizer, data(split) -> an object with TokenShards' batch interface (its rank_batch, if
        any, gives a rank's micro-batch; targets of -100 are not learned);
      prepare_model(model) before the optimizer is built (e.g. inject LoRA adapters);
      saveable(model) -> the GPT written as model.safetensors; state() -> extra training state;
      save_extra(directory) -> more files in each checkpoint; restore(model, state) -> True when
        it restored the weights itself;
      after_eval(step, model) -> extra metrics for the eval row; after_checkpoint(out, step);
      stop -> True to stop early ("early_stopping").
    """
    cfg.validate()
    with_default_lr(cfg)
    rt = setup_runtime(cfg)
    try:
        with distr.lost_rank_errors(rt):
            return _train(cfg, rt, hooks)
    finally:
        distr.shutdown(rt)


def check_block_size(cfg: TrainConfig, n_ctx: int) -> None:
    if cfg.block_size > n_ctx:
        raise GptkitError(f"block_size {cfg.block_size} is larger than the model's context "
                          f"(n_positions = {n_ctx}); lower --block-size or raise --n-positions")


def _train(cfg: TrainConfig, rt: Runtime, hooks: Any = None) -> TrainResult:
    data_dir, tokenizer, train_data, val_data = _open_data(cfg, hooks)
    files = RunFiles(cfg.out)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, tokenizer)
    check_block_size(cfg, model.config.n_positions)  # --init-from: known only once loaded
    if hooks is not None:
        hooks.prepare_model(model)
    amp, why = _precision(model, train_data, cfg, rt, files)
    cfg.dtype = "float32" if amp is None else str(amp).removeprefix("torch.")  # what ran, as resume reads it
    runner = _wrap(model, cfg, rt, amp)  # before the optimizer: FSDP replaces the parameters by shards
    optimizer = make_optimizer(model, cfg, rt.device)
    state = _restore(files, model, optimizer, cfg, rt, hooks) if cfg.resume else None
    start, rows = 0, []
    if state is not None:
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
        rows = read_metrics(files.metrics, up_to_step=start)
    elif files.last.exists() or files.last.is_symlink():
        raise GptkitError(f"{cfg.out} already holds a run; pass --resume to continue it or choose another --out")
    if rt.is_main:
        files.root.mkdir(parents=True, exist_ok=True)
        write_json(files.root / "train_config.json", asdict(cfg))
        copy_datacard(data_dir, files.root)  # the model says what it was trained on
        if cfg.progress:
            print(banner(model, cfg, rt, why, train_data, val_data, start), file=sys.stderr, flush=True)
    log = _Log(cfg, rt, model, start)
    t0, stopped_by, val, it = time.time(), "max_iters", {}, start
    model.train()
    for it in range(start, cfg.max_iters):
        lr = lr_at(it, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = _train_step(runner, model, optimizer, train_data, cfg, rt, it, amp)
        step = it + 1
        log.step(step, loss, lr, rows)
        # every rank must agree, or one would stop while the others wait in a collective
        out_of_time = cfg.max_minutes is not None and distr.any_rank((time.time() - t0) / 60 >= cfg.max_minutes, rt)
        if out_of_time:
            stopped_by = "max_minutes"
        if step % cfg.eval_interval == 0 or step == cfg.max_iters or out_of_time:
            val = _eval_and_checkpoint(files, model, optimizer, tokenizer, val_data, cfg, rt, step, rows, data_dir,
                                       amp, log, hooks)
            if hooks is not None and hooks.stop:
                stopped_by = "early_stopping"
                break
        if out_of_time:
            break
    log.close()
    done = it + 1 if cfg.max_iters > start else start
    tps = (done - start) * log.tokens_per_step / max(time.time() - t0, 1e-9)
    return TrainResult(files.root, done, val, tps, stopped_by)


def _open_data(cfg: TrainConfig, hooks: Any = None) -> tuple[Path, Tokenizer, TokenShards, TokenShards]:
    """The data directory's tokenizer and splits; cheap checks (the model's shape) come first."""
    if cfg.data is None:
        raise GptkitError("no --data given (the CLI prepares the embedded corpus; the API needs a data dir)")
    data_dir = Path(cfg.data)
    if hooks is not None:  # task examples, tokenized by the hooks with the --init-from model's tokenizer
        return data_dir, hooks.tokenizer, hooks.data("train"), hooks.data("val")
    tokenizer = Tokenizer.load(data_dir)
    if not cfg.init_from:  # check the shape before touching the data: cheap errors first
        check_block_size(cfg, model_config(cfg, tokenizer.vocab_size, tokenizer.eot_id).n_positions)
    train_data, val_data = TokenShards(data_dir, "train"), TokenShards(data_dir, "val")
    for split in (train_data, val_data):
        if split.num_tokens < cfg.block_size + 1:
            raise GptkitError(f"split '{split.split}' of {data_dir} has {split.num_tokens} tokens, fewer than "
                              f"block_size+1 = {cfg.block_size + 1}; use a smaller --block-size or more data")
    return data_dir, tokenizer, train_data, val_data


def _precision(model: GPT, data: TokenShards, cfg: TrainConfig, rt: Runtime,
               files: RunFiles) -> tuple[torch.dtype | None, str]:
    """The autocast dtype (None: fp32) and why. --dtype auto on a CPU with native bf16 times a few
    forward + backward steps of this model in both and takes the faster: bf16 autocast is not
    faster for every shape (a 4-layer, 128-wide model runs ~10% slower in it). A resumed run keeps
    the precision its first part measured, so that it continues the same curve."""
    if cfg.dtype != "auto":
        return autocast_dtype(cfg.dtype, rt.device), "as asked"
    if cfg.resume and (files.root / "train_config.json").is_file():
        try:
            ran = json.loads((files.root / "train_config.json").read_text()).get("dtype")
        except (OSError, ValueError):
            ran = None
        if ran in ("float32", "bfloat16", "float16"):
            return autocast_dtype(ran, rt.device), "auto: as the run being resumed"
    rule = autocast_dtype("auto", rt.device)
    if rule is None or rt.device.type != "cpu" or rt.world_size > 1:
        return rule, "auto: " + ("none faster than float32 on this hardware" if rule is None else
                                 "the device's native low precision")
    x, y = data.get_batch(cfg.batch_size, cfg.block_size, torch.Generator().manual_seed(cfg.seed))
    fp32, low = measured_step_seconds(model.to(rt.device), x.to(rt.device), y.to(rt.device), [None, rule])
    name = str(rule).removeprefix("torch.")
    why = f"auto: measured {1e3 * fp32:.0f} ms/step in float32, {1e3 * low:.0f} ms in {name}"
    return (rule, why) if low < fp32 else (None, why)


def banner(model: GPT, cfg: TrainConfig, rt: Runtime, why: str, train_data: TokenShards, val_data: TokenShards,
           start: int) -> str:
    """What is about to run, before the first step (as nanoGPT and LitGPT print it)."""
    c = model.config
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum * rt.world_size
    total = tokens_per_step * (cfg.max_iters - start)
    what = f"--init-from {cfg.init_from}" if cfg.init_from else f"preset {cfg.preset}"
    ranks = f" x {rt.world_size} ranks ({rt.strategy})" if rt.world_size > 1 else ""
    lines = [
        (f"model     {model.num_parameters() / 1e6:,.2f}M parameters ({what}: {c.n_layer} layers, {c.n_head} heads, "
        f"{c.n_embd} wide, context {c.n_positions}, vocabulary {c.vocab_size:,})"),
        f"compute   {rt.device}{ranks}, {cfg.dtype} ({why}), {torch.get_num_threads()} threads",
        (f"steps     {cfg.max_iters - start:,}{f' (resuming at {start:,})' if start else ''} x {tokens_per_step:,} "
        f"tokens/step (batch {cfg.batch_size} x block {cfg.block_size} x accum {cfg.grad_accum}"
        f"{f' x {rt.world_size} ranks' if rt.world_size > 1 else ''}) = {total / 1e6:,.2f}M tokens, "
        f"peak lr {cfg.lr:g}"),
        (f"data      {train_data.data_dir}: {train_data.num_tokens / 1e6:,.2f}M train tokens "
        f"({total / max(train_data.num_tokens, 1):.2f} epochs), {val_data.num_tokens / 1e6:,.2f}M val tokens"),
        f"output    {Path(cfg.out)} (model files, checkpoints/, metrics.jsonl, loss.png)",
    ]
    return "\n".join(lines)


class _Log:
    """Train-loss rows every log_interval steps (tokens/s, MFU where the peak is known) and the
    progress bar."""

    def __init__(self, cfg: TrainConfig, rt: Runtime, model: GPT, start: int) -> None:
        self.cfg, self.rt = cfg, rt
        self.tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum * rt.world_size
        self.flops_per_token, self.peak = flops_per_token(model, cfg.block_size), peak_flops(rt.device)
        self.bar = _progress(cfg, rt, start)
        self.last, self.tokens_since = time.time(), 0

    def step(self, step: int, loss: torch.Tensor, lr: float, rows: list[dict[str, Any]]) -> None:
        self.tokens_since += self.tokens_per_step
        if step % self.cfg.log_interval == 0 or step == self.cfg.max_iters:
            value = loss.item()  # the one wait for the device per log interval (the loss stays on it till now)
            now = time.time()
            tps = self.tokens_since / max(now - self.last, 1e-9)
            rows.append({"kind": "train", "step": step, "loss": value, "lr": lr, "tokens_per_s": tps,
                         "tokens": step * self.tokens_per_step, "time": now})
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

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _eval_and_checkpoint(files: RunFiles, model: GPT, optimizer: torch.optim.Optimizer, tokenizer: Tokenizer,
                         val_data: TokenShards, cfg: TrainConfig, rt: Runtime, step: int,
                         rows: list[dict[str, Any]], data_dir: Path, amp: torch.dtype | None,
                         log: _Log, hooks: Any = None) -> dict[str, float]:
    val = evaluate(model, val_data, cfg.block_size, cfg.batch_size, cfg.eval_iters, amp, rt)
    rows.append({"kind": "eval", "step": step, "val_loss": val["loss"], "val_perplexity": val["perplexity"],
                 "val_bits_per_byte": val["bits_per_byte"], "time": time.time()})
    extra = hooks.after_eval(step, model) if hooks is not None else {}  # e.g. the task score
    rows[-1].update(extra)
    log.write(f"step {step}: val loss {val['loss']:.4f}, perplexity {val['perplexity']:.2f}, "
              f"bits/byte {val['bits_per_byte']:.4f}" + "".join(f", {k} {v:.2f}" for k, v in extra.items()))
    _checkpoint(files, model, optimizer, tokenizer, cfg, rt, step, rows, data_dir, hooks)
    return val


def _wrap(model: GPT, cfg: TrainConfig, rt: Runtime, amp: torch.dtype | None) -> torch.nn.Module:
    """Moves the model to its device; DDP / FSDP2 under those strategies; torch.compile if asked."""
    return distr.wrap(model, rt, amp, cfg.compile)


def _train_step(runner: torch.nn.Module, model: GPT, optimizer: torch.optim.Optimizer,
                data: TokenShards, cfg: TrainConfig, rt: Runtime, it: int, amp: torch.dtype | None) -> torch.Tensor:
    """One optimizer step over this rank's rows of the global batch; returns the global mean loss,
    a 0-d tensor on the device (reading it waits for the device: the caller does so when logging)."""
    torch.manual_seed(step_seed(cfg.seed, it, rt.rank))  # dropout: a function of step and rank
    total = torch.zeros((), device=rt.device)
    cuda = rt.device.type == "cuda"
    for micro in range(cfg.grad_accum):
        x, y = rank_batch(data, cfg.batch_size, cfg.block_size, cfg.seed, it, rt, micro)
        if cuda:  # pinned: the copy is queued, not waited for, so the host runs ahead of the GPU
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(rt.device, non_blocking=True), y.to(rt.device, non_blocking=True)
        with distr.grad_sync(runner, micro == cfg.grad_accum - 1), autocast(rt.device, amp):
            loss = runner(x, targets=y) / cfg.grad_accum
            loss.backward()
        total += loss.detach()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return distr.global_mean(total, rt)


def _progress(cfg: TrainConfig, rt: Runtime, start: int) -> Any:
    if not (cfg.progress and rt.is_main):
        return None
    from tqdm.auto import tqdm
    return tqdm(total=cfg.max_iters, initial=start, desc="train", unit="it", dynamic_ncols=True)


def _checkpoint(files: RunFiles, model: GPT, optimizer: torch.optim.Optimizer, tokenizer: Tokenizer,
                cfg: TrainConfig, rt: Runtime, step: int, rows: list[dict[str, Any]], data_dir: Path,
                hooks: Any = None) -> None:
    """Rank 0 writes the checkpoint; under FSDP every rank first writes its own shards of the model
    and optimizer into it (torch.distributed.checkpoint), and the whole model is gathered to rank
    0's CPU for the Hugging Face model.safetensors."""
    state = {"step": step, "torch_rng": torch.get_rng_state(), "config": json.dumps(asdict(cfg)),
             "data": str(data_dir.resolve()), "world_size": rt.world_size, "strategy": rt.strategy}
    to_save: GPT | None = model
    if hooks is not None:
        state.update(hooks.state())
        to_save = hooks.saveable(model)
    if rt.strategy == "fsdp":
        if rt.is_main:
            files.begin(step)
        distr.barrier(rt)
        distr.save_sharded(model, optimizer, files.staging(step) / distr.DCP_DIR)
        full = distr.full_state(model)
        to_save = _model_from_state(model.config, full) if rt.is_main else None
    else:
        state["optimizer"] = optimizer.state_dict()
    if rt.is_main:
        write_metrics(files.metrics, rows)
        files.save(to_save, tokenizer, state, step, begun=rt.strategy == "fsdp",
                   extra=hooks.save_extra if hooks is not None else None)
        plot_losses(rows, files.root / "loss.png")
        if hooks is not None:
            hooks.after_checkpoint(files.root, step)
    distr.barrier(rt)


def _model_from_state(config: GPTConfig, sd: dict[str, torch.Tensor]) -> GPT:
    """A GPT that adopts the tensors of a full state dict (no copy), for saving."""
    with torch.device("meta"):
        model = GPT(config)
    sd = {k: v for k, v in sd.items() if k != "lm_head.weight"}
    load_state_into(model, sd, "the gathered FSDP state", assign=True)
    return model


def _restore(files: RunFiles, model: GPT, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
             rt: Runtime, hooks: Any = None) -> dict[str, Any]:
    """Load the last checkpoint's weights and optimizer state (every rank reads it: under several
    nodes the run directory must be on a shared filesystem); return its training state.

    Any strategy resumes any other's checkpoint, on any number of ranks; the continuation is exact
    (to float rounding) when the global batch, batch_size x grad_accum x world_size, is unchanged.
    """
    if not files.last.exists():
        raise GptkitError(f"{files.root}: no checkpoint to resume from (checkpoints/last is missing)")
    state = load_train_state(files.last)
    sharded = files.last / distr.DCP_DIR
    if hooks is not None and hooks.restore(model, state):  # the hooks own the weights (LoRA adapters)
        optimizer.load_state_dict(state["optimizer"])
    elif "optimizer" not in state:  # written under FSDP
        distr.load_sharded(model, optimizer, sharded)
    else:
        sd, source = read_weights(files.last)
        sd = from_hf_state_dict(sd, source)
        if rt.strategy == "fsdp":
            distr.load_full_into_sharded(model, optimizer, sd, state["optimizer"])
        else:
            load_state_into(model, sd, source, assign=False)
            optimizer.load_state_dict(state["optimizer"])
    try:
        old = json.loads(state["config"])
        old_global = old["batch_size"] * old["grad_accum"] * int(state.get("world_size", 1))
    except (KeyError, TypeError, ValueError):
        old_global = None
    new_global = cfg.batch_size * cfg.grad_accum * rt.world_size
    if old_global is not None and old_global != new_global:
        distr.note(rt, f"resuming with a global batch of {new_global} sequences (batch_size x grad_accum x "
                       f"world_size), the checkpoint was trained with {old_global}: the run continues, but "
                       "not as the uninterrupted run would have (keep the product to resume exactly)")
    return state
