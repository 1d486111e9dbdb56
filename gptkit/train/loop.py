"""Training by maximum likelihood: cross-entropy, AdamW, warm-up + cosine schedule, checkpoints
that resume exactly, and evaluation in loss, perplexity and bits per byte.

Rank-aware from the first line (see distributed.py): under torchrun each rank takes its own rows
of the step's global batch (micro-batch x accumulation x world size rows, each drawn from a seed of
step and row, so the data position is the step itself and a global batch is the same whatever the
world size), DDP or FSDP2 keep the ranks in step, and only rank 0 writes.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from . import checkpoint as ckpt
from . import distributed as distr
from .data import TokenShards
from .device import autocast, autocast_dtype
from .distributed import Runtime, setup_runtime  # noqa: F401  (part of this module's API)
from .errors import GptkitError
from .model import GPT, PRESETS, GPTConfig, preset_config
from .tokenizer import Tokenizer


@dataclass
class TrainConfig:
    data: str | None = None  # a prepared data directory; None = the embedded stdlib corpus
    out: str = "runs/stdlib"
    preset: str = "mini"
    init_from: str | None = None  # a model directory or Hub id to continue training from
    # model overrides (None = the preset's value)
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    n_positions: int | None = None
    dropout: float = 0.0
    bias: bool = True
    block_size: int = 256  # training sequence length, <= the model's n_positions
    # optimisation
    batch_size: int = 16  # micro-batch per rank
    grad_accum: int = 1
    max_iters: int = 600
    max_minutes: float | None = None
    lr: float | None = None  # None: the preset's (DEFAULT_LR), 1e-4 with --init-from
    min_lr: float | None = None  # None = lr / 10
    warmup_iters: int = 30
    lr_decay_iters: int | None = None  # None = max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    # evaluation, logging, checkpoints
    eval_interval: int = 100
    eval_iters: int = 20
    log_interval: int = 10
    # runtime
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32 (autocast precision; weights stay fp32)
    device: str = "auto"
    compile: bool = False
    seed: int = 1337
    resume: bool = False
    strategy: str = "auto"  # auto | single | ddp | fsdp (auto: ddp under torchrun, else single)
    dist_timeout: float = 300.0  # seconds a collective waits for a missing rank before the job fails
    progress: bool = True

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


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; matrices decay, biases, LayerNorms and embeddings do not."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_matrix = p.dim() >= 2 and "wte" not in name and "wpe" not in name
        (decay if is_matrix else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)


# ---------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model: GPT, shards: TokenShards, block_size: int, batch_size: int,
             max_batches: int | None, amp: torch.dtype | None = None, rt: Runtime | None = None) -> dict[str, float]:
    """Mean loss over consecutive windows of a split; perplexity and bits per byte from it.

    Under several ranks (`rt`), an eval batch is batch_size x world_size windows, each rank takes
    its batch_size of them and the sums are all-reduced: the windows, hence the result, are those
    of one process with a batch of batch_size x world_size.
    """
    rank, world = (rt.rank, rt.world_size) if rt is not None else (0, 1)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = torch.zeros((), device=device, dtype=torch.float64)
    n = 0
    for x, y in shards.iter_eval_batches(batch_size * world, block_size, max_batches):
        x, y = x[rank * batch_size:(rank + 1) * batch_size], y[rank * batch_size:(rank + 1) * batch_size]
        weight = y.numel()
        if weight == 0:  # a short last batch: still take part in FSDP's collectives, count nothing
            x, y = x.new_zeros(1, block_size), y.new_zeros(1, block_size)
        with autocast(device, amp):
            loss = model.loss(x.to(device), y.to(device))
        total += loss.double() * weight
        n += weight
    if world > 1:
        sums = torch.stack([total, torch.tensor(float(n), device=device, dtype=torch.float64)])
        distr.all_sum(sums)
        total, n = sums[0], int(sums[1].item())
    total = total.item()
    model.train(was_training)
    if n == 0:
        raise GptkitError(f"split '{shards.split}' has no full window of {block_size + 1} tokens")
    loss = total / n
    tokens_per_byte = shards.num_tokens / max(1, shards.num_bytes)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700)),
            "bits_per_byte": loss / math.log(2) * tokens_per_byte, "eval_tokens": n}


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
    model = ckpt.load_model(cfg.init_from)
    theirs = getattr(model, "tokenizer", None)
    if model.config.vocab_size != tokenizer.vocab_size or (theirs is not None and theirs.ranks != tokenizer.ranks):
        raise GptkitError(f"--init-from {cfg.init_from} uses a different tokenizer than the data "
                          f"({model.config.vocab_size} vs {tokenizer.vocab_size} tokens); prepare the data "
                          "with that model's tokenizer (e.g. --tokenizer gpt2)")
    if cfg.dropout:
        model.config.dropout = cfg.dropout
    return model.train()


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

    def save(self, model: GPT, tokenizer: Tokenizer, state: dict[str, Any], step: int, begun: bool = False) -> None:
        self.ckpts.mkdir(parents=True, exist_ok=True)
        final = self.ckpts / f"step-{step:08d}"
        tmp = self.staging(step)
        for d in ((final,) if begun else (tmp, final)):
            _rmtree(d)
        ckpt.save_model(model, tmp, tokenizer)
        ckpt.save_train_state(tmp, state)
        os.replace(tmp, final)
        link_tmp = self.ckpts / ".last.tmp"
        _unlink(link_tmp)
        os.symlink(final.name, link_tmp)
        os.replace(link_tmp, self.last)
        for f in final.iterdir():
            if f.is_file() and f.name != ckpt.TRAIN_STATE_FILE:
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
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if up_to_step is None or row.get("step", 0) <= up_to_step:
            rows.append(row)
    return rows


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    with ckpt.atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))


def plot_losses(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    train = [(r["step"], r["loss"]) for r in rows if r.get("kind") == "train"]
    val = [(r["step"], r["val_loss"]) for r in rows if r.get("kind") == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="val loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with ckpt.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


@dataclass
class TrainResult:
    out: Path
    step: int
    val: dict[str, float] = field(default_factory=dict)
    tokens_per_s: float = 0.0
    stopped_by: str = "max_iters"


def train(cfg: TrainConfig) -> TrainResult:
    cfg.validate()
    with_default_lr(cfg)
    rt = setup_runtime(cfg)
    try:
        with distr.lost_rank_errors(rt):
            return _train(cfg, rt)
    finally:
        distr.shutdown(rt)


def check_block_size(cfg: TrainConfig, n_ctx: int) -> None:
    if cfg.block_size > n_ctx:
        raise GptkitError(f"block_size {cfg.block_size} is larger than the model's context "
                          f"(n_positions = {n_ctx}); lower --block-size or raise --n-positions")


def _train(cfg: TrainConfig, rt: Runtime) -> TrainResult:
    if cfg.data is None:
        raise GptkitError("no --data given (the CLI prepares the embedded corpus; the API needs a data dir)")
    data_dir = Path(cfg.data)
    tokenizer = Tokenizer.load(data_dir)
    if not cfg.init_from:  # check the shape before touching the data: cheap errors first
        check_block_size(cfg, model_config(cfg, tokenizer.vocab_size, tokenizer.eot_id).n_positions)
    train_data, val_data = TokenShards(data_dir, "train"), TokenShards(data_dir, "val")
    for split in (train_data, val_data):
        if split.num_tokens < cfg.block_size + 1:
            raise GptkitError(f"split '{split.split}' of {data_dir} has {split.num_tokens} tokens, fewer than "
                              f"block_size+1 = {cfg.block_size + 1}; use a smaller --block-size or more data")
    files = RunFiles(cfg.out)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, tokenizer)
    check_block_size(cfg, model.config.n_positions)  # --init-from: known only once loaded
    flops_per_token, peak = distr.flops_per_token(model, cfg.block_size), distr.peak_flops(rt.device)
    amp = autocast_dtype(cfg.dtype, rt.device)
    runner = _wrap(model, cfg, rt, amp)  # before the optimizer: FSDP replaces the parameters by shards
    optimizer = make_optimizer(model, cfg, rt.device)
    state = _restore(files, model, optimizer, cfg, rt) if cfg.resume else None
    start, rows = 0, []
    if state is not None:
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
        rows = read_metrics(files.metrics, up_to_step=start)
    elif files.last.exists() or files.last.is_symlink():
        raise GptkitError(f"{cfg.out} already holds a run; pass --resume to continue it or choose another --out")
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum * rt.world_size
    if rt.is_main:
        files.root.mkdir(parents=True, exist_ok=True)
        ckpt.write_json(files.root / "train_config.json", asdict(cfg))
    bar = _progress(cfg, rt, start)
    t0, last_log, tokens_since = time.time(), time.time(), 0
    stopped_by, val, it = "max_iters", {}, start
    model.train()
    for it in range(start, cfg.max_iters):
        lr = lr_at(it, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = _train_step(runner, model, optimizer, train_data, cfg, rt, it, amp)
        tokens_since += tokens_per_step
        step = it + 1
        if step % cfg.log_interval == 0 or step == cfg.max_iters:
            loss = loss.item()  # the one wait for the device per log interval (the loss stays on it till now)
            now = time.time()
            tps = tokens_since / max(now - last_log, 1e-9)
            rows.append({"kind": "train", "step": step, "loss": loss, "lr": lr, "tokens_per_s": tps,
                         "tokens": step * tokens_per_step})
            # MFU: model FLOPs per token x tokens/s over the devices' bf16 peak (GPUs in the table only)
            mfu = flops_per_token * tps / (peak * rt.world_size) if peak else None
            if mfu is not None:
                rows[-1]["mfu"] = mfu
            last_log, tokens_since = now, 0
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tps:,.0f}", refresh=False,
                                **({"mfu": f"{mfu:.1%}"} if mfu is not None else {}))
        if bar is not None:
            bar.update(1)
        # every rank must agree, or one would stop while the others wait in a collective
        out_of_time = cfg.max_minutes is not None and distr.any_rank((time.time() - t0) / 60 >= cfg.max_minutes, rt)
        if out_of_time:
            stopped_by = "max_minutes"
        if step % cfg.eval_interval == 0 or step == cfg.max_iters or out_of_time:
            val = evaluate(model, val_data, cfg.block_size, cfg.batch_size, cfg.eval_iters, amp, rt)
            rows.append({"kind": "eval", "step": step, "val_loss": val["loss"],
                         "val_perplexity": val["perplexity"], "val_bits_per_byte": val["bits_per_byte"]})
            if bar is not None:
                bar.write(f"step {step}: val loss {val['loss']:.4f}, perplexity {val['perplexity']:.2f}, "
                          f"bits/byte {val['bits_per_byte']:.4f}")
            _checkpoint(files, model, optimizer, tokenizer, cfg, rt, step, rows, data_dir)
        if out_of_time:
            break
    if bar is not None:
        bar.close()
    elapsed = time.time() - t0
    done = it + 1 if cfg.max_iters > start else start
    tps = (done - start) * tokens_per_step / max(elapsed, 1e-9)
    return TrainResult(files.root, done, val, tps, stopped_by)


def _wrap(model: GPT, cfg: TrainConfig, rt: Runtime, amp: torch.dtype | None) -> torch.nn.Module:
    """Moves the model to its device; DDP / FSDP2 under those strategies; torch.compile if asked."""
    return distr.wrap(model, rt, amp, cfg.compile)


def _train_step(runner: torch.nn.Module, model: GPT, optimizer: torch.optim.Optimizer,
                data: TokenShards, cfg: TrainConfig, rt: Runtime, it: int, amp: torch.dtype | None) -> torch.Tensor:
    """One optimizer step over this rank's rows of the global batch; returns the global mean loss,
    a 0-d tensor on the device (reading it waits for the device: the caller does so when logging)."""
    torch.manual_seed(distr.step_seed(cfg.seed, it, rt.rank))  # dropout: a function of step and rank
    total = torch.zeros((), device=rt.device)
    cuda = rt.device.type == "cuda"
    for micro in range(cfg.grad_accum):
        x, y = distr.rank_batch(data, cfg.batch_size, cfg.block_size, cfg.seed, it, rt, micro)
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
                cfg: TrainConfig, rt: Runtime, step: int, rows: list[dict[str, Any]], data_dir: Path) -> None:
    """Rank 0 writes the checkpoint; under FSDP every rank first writes its own shards of the model
    and optimizer into it (torch.distributed.checkpoint), and the whole model is gathered to rank
    0's CPU for the Hugging Face model.safetensors."""
    state = {"step": step, "torch_rng": torch.get_rng_state(), "config": json.dumps(asdict(cfg)),
             "data": str(data_dir.resolve()), "world_size": rt.world_size, "strategy": rt.strategy}
    to_save: GPT | None = model
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
        files.save(to_save, tokenizer, state, step, begun=rt.strategy == "fsdp")
        plot_losses(rows, files.root / "loss.png")
    distr.barrier(rt)


def _model_from_state(config: GPTConfig, sd: dict[str, torch.Tensor]) -> GPT:
    """A GPT that adopts the tensors of a full state dict (no copy), for saving."""
    with torch.device("meta"):
        model = GPT(config)
    sd = {k: v for k, v in sd.items() if k != "lm_head.weight"}
    ckpt.load_state_into(model, sd, "the gathered FSDP state", assign=True)
    return model


def _restore(files: RunFiles, model: GPT, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
             rt: Runtime) -> dict[str, Any]:
    """Load the last checkpoint's weights and optimizer state (every rank reads it: under several
    nodes the run directory must be on a shared filesystem); return its training state.

    Any strategy resumes any other's checkpoint, on any number of ranks; the continuation is exact
    (to float rounding) when the global batch, batch_size x grad_accum x world_size, is unchanged.
    """
    if not files.last.exists():
        raise GptkitError(f"{files.root}: no checkpoint to resume from (checkpoints/last is missing)")
    state = ckpt.load_train_state(files.last)
    sharded = files.last / distr.DCP_DIR
    if "optimizer" not in state:  # written under FSDP
        distr.load_sharded(model, optimizer, sharded)
    else:
        sd, source = ckpt.read_weights(files.last)
        sd = ckpt.from_hf_state_dict(sd, source)
        if rt.strategy == "fsdp":
            distr.load_full_into_sharded(model, optimizer, sd, state["optimizer"])
        else:
            ckpt.load_state_into(model, sd, source, assign=False)
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
