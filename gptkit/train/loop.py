"""Training by maximum likelihood: cross-entropy, AdamW, warm-up + cosine schedule, checkpoints
that resume exactly, and evaluation in loss, perplexity and bits per byte.

Rank-aware from the first line (see distributed.py): under torchrun each rank takes its own rows
of the step's global batch (micro-batch x accumulation x world size rows, each drawn from a seed of
step and row, so the data position is the step itself and a global batch is the same whatever the
world size), DDP or FSDP2 keep the ranks in step, and only rank 0 writes.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import distributed as distr
from ..data import TokenShards
from ..data.batches import rank_batch, step_seed
from ..device import autocast, autocast_dtype
from ..distributed import Runtime, setup_runtime
from ..errors import GptkitError, OptionError
from ..evaluate import evaluate
from ..files import check_parent_dirs, write_json
from ..hf import check_savable, load_model
from ..hf.gpt2 import config_from_hf, from_hf_state_dict, load_state_into
from ..hf.weights import CONFIG_FILE, read_config_dict, read_weights
from ..model import GPT, GPTConfig, preset_config
from ..rundir import RunFiles, load_train_state, plot_losses, read_metrics, write_metrics
from ..tokenizer import Tokenizer
from .config import TrainConfig
from .optim import make_optimizer
from .schedule import lr_at, with_default_lr
from .speed import flops_per_token, peak_flops

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
    theirs = getattr(model, "tokenizer", None)
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
        raise OptionError("block_size", f"{cfg.block_size} is larger than the model's context "
                          f"(n_positions = {n_ctx}); lower --block-size or raise --n-positions")


def _train(cfg: TrainConfig, rt: Runtime) -> TrainResult:
    if cfg.data is None:
        raise GptkitError("no --data given (the CLI prepares the embedded corpus; the API needs a data dir)")
    data_dir = Path(cfg.data)
    files = RunFiles(cfg.out)
    check_run_dir(files.root, cfg.resume)
    tokenizer = Tokenizer.load(data_dir)
    planned = None if cfg.init_from else model_config(cfg, tokenizer.vocab_size, tokenizer.eot_id)
    if planned is not None:  # check the shape before touching the data: cheap errors first
        check_block_size(cfg, planned.n_positions)
    state = load_train_state(files.last) if cfg.resume else None
    if state is not None:
        _check_resume(files, state, cfg, tokenizer, planned, data_dir, rt)
    train_data, val_data = TokenShards(data_dir, "train"), TokenShards(data_dir, "val")
    if val_data.num_tokens == 0:
        raise GptkitError(f"{data_dir} has no validation split (prepared with --val-fraction 0): training "
                          "evaluates and checkpoints on one; prepare the data again with --val-fraction 0.01, say")
    for split in (train_data, val_data):
        if split.num_tokens < cfg.block_size + 1:
            raise OptionError("block_size", f"{cfg.block_size} is too long for split '{split.split}' of {data_dir}: "
                              f"it has {split.num_tokens} tokens, fewer than block_size+1 = {cfg.block_size + 1}; "
                              "use a smaller --block-size or more data")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, tokenizer)
    check_block_size(cfg, model.config.n_positions)  # --init-from: known only once loaded
    if state is not None and planned is None:
        _check_same_model(files, model.config, cfg)
    check_savable(model)  # whatever would fail at the first checkpoint fails now, before step 1
    flops_per_tok, peak = flops_per_token(model, cfg.block_size), peak_flops(rt.device)
    amp = autocast_dtype(cfg.dtype, rt.device)
    runner = _wrap(model, cfg, rt, amp)  # before the optimizer: FSDP replaces the parameters by shards
    optimizer = make_optimizer(model, cfg, rt.device)
    state = _restore(files, model, optimizer, cfg, rt, state) if cfg.resume else None
    start, rows = 0, []
    if state is not None:
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
        rows = read_metrics(files.metrics, up_to_step=start)
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum * rt.world_size
    if rt.is_main:
        files.root.mkdir(parents=True, exist_ok=True)
        clean_run_temps(files.root)
        write_json(files.root / "train_config.json", asdict(cfg))
    if state is not None:
        distr.say(rt, f"resumed from step {start} of {cfg.max_iters} ({files.last.resolve().name} in {files.root})")
    with _interrupts(rt) as interrupted:
        return _loop(cfg, rt, files, model, runner, optimizer, tokenizer, train_data, val_data, data_dir, amp,
                     start, rows, tokens_per_step, flops_per_tok, peak, interrupted)


def _loop(cfg: TrainConfig, rt: Runtime, files: RunFiles, model: GPT, runner: torch.nn.Module,
          optimizer: torch.optim.Optimizer, tokenizer: Tokenizer, train_data: TokenShards, val_data: TokenShards,
          data_dir: Path, amp: torch.dtype | None, start: int, rows: list[dict[str, Any]], tokens_per_step: int,
          flops_per_tok: float, peak: float | None, interrupted: list[bool]) -> TrainResult:
    bar = _progress(cfg, rt, start)
    t0, last_log, tokens_since = time.time(), time.time(), 0
    stopped_by, val, it = "max_iters", {}, start
    model.train()
    try:
        for it in range(start, cfg.max_iters):
            lr = lr_at(it, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = _train_step(runner, model, optimizer, train_data, cfg, rt, it, amp)
            tokens_since += tokens_per_step
            step = it + 1
            if step % cfg.log_interval == 0 or step == cfg.max_iters:
                loss = loss.item()  # the one wait for the device per log interval (the loss stays on it till now)
                if not math.isfinite(loss):
                    _diverged(files, f"the training loss became {loss} at step {step} (lr {lr:.3g})")
                now = time.time()
                tps = tokens_since / max(now - last_log, 1e-9)
                rows.append({"kind": "train", "step": step, "loss": loss, "lr": lr, "tokens_per_s": tps,
                             "tokens": step * tokens_per_step})
                # MFU: model FLOPs per token x tokens/s over the devices' bf16 peak (GPUs in the table only)
                mfu = flops_per_tok * tps / (peak * rt.world_size) if peak else None
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
            final = step == cfg.max_iters or out_of_time
            if step % cfg.eval_interval == 0 or final:
                # the last evaluation covers the whole split, so the number a run ends with is `gptkit eval`'s
                val = evaluate(model, val_data, cfg.block_size, cfg.batch_size, None if final else cfg.eval_iters,
                               amp, rt)
                val["split_tokens"] = val_data.num_tokens
                if not math.isfinite(val["loss"]):
                    _diverged(files, f"the validation loss became {val['loss']} at step {step} (lr {lr:.3g})")
                rows.append({"kind": "eval", "step": step, "val_loss": val["loss"],
                             "val_perplexity": val["perplexity"], "val_bits_per_byte": val["bits_per_byte"],
                             "val_tokens": val["eval_tokens"]})
                if bar is not None:
                    bar.write(f"step {step}: val loss {val['loss']:.4f}, perplexity {val['perplexity']:.2f}, "
                              f"bits/byte {val['bits_per_byte']:.4f} ({coverage(val)})")
                _checkpoint(files, model, optimizer, tokenizer, cfg, rt, step, rows, data_dir)
            elif interrupted[0]:
                _checkpoint(files, model, optimizer, tokenizer, cfg, rt, step, rows, data_dir)
            if interrupted[0]:
                raise TrainingInterrupted(f"interrupted at step {step}: checkpoint saved in {files.root} "
                                          "(continue with --resume)")
            if out_of_time:
                break
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.time() - t0
    done = it + 1 if cfg.max_iters > start else start
    tps = (done - start) * tokens_per_step / max(elapsed, 1e-9)
    return TrainResult(files.root, done, val, tps, stopped_by)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: the step in progress finished and a checkpoint was saved."""


@contextlib.contextmanager
def _interrupts(rt: Runtime) -> Iterator[list[bool]]:
    """The first Ctrl-C (SIGINT) asks the loop to stop after the step in progress and save a
    checkpoint; a second one stops at once (the last complete checkpoint stays, as after a kill).
    Single process only: under torchrun a Ctrl-C ends the job, and --resume continues from the last
    checkpoint."""
    flag = [False]
    if rt.world_size > 1 or threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True
        print("\ngptkit: stopping after this step to save a checkpoint (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def coverage(val: dict[str, Any]) -> str:
    """How much of the split an evaluation covered, in words."""
    n, total = val["eval_tokens"], val.get("split_tokens")
    if val.get("whole_split"):
        return f"the whole val split: {n:,} tokens"
    return f"the first {n:,} of {total:,} val tokens" if total else f"{n:,} val tokens"


def _diverged(files: RunFiles, what: str) -> None:
    last = files.last.resolve().name if files.last.exists() else None
    kept = (f"the last good checkpoint ({last}) is kept in {files.root}; resume from it with a lower --lr"
            if last else "no checkpoint was saved; start again with a lower --lr")
    raise GptkitError(f"{what}: the run diverged and was stopped; {kept}")


RUN_FILES = {"checkpoints", "metrics.jsonl", "loss.png", "train_config.json", "config.json", "model.safetensors",
             "train_state.pt", "generation_config.json", "vocab.json", "merges.txt", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json"}


def check_run_dir(out: Path, resume: bool) -> None:
    """--out for a new run: a new or empty directory, or one with a run's files but no checkpoint (a
    run stopped before its first); for --resume: a run with a checkpoint. Never a directory of the
    user's own files, nor a path under a file."""
    check_parent_dirs(out, "out")
    if out.exists() and not out.is_dir():
        raise OptionError("out", f"{out} exists and is not a directory")
    last = out / "checkpoints" / "last"
    if resume:
        if not last.exists():
            raise GptkitError(f"{out}: no checkpoint to resume from (checkpoints/last is missing); "
                              "drop --resume to start a new run there")
        return
    if last.exists() or last.is_symlink():
        raise GptkitError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES and not p.name.startswith("."))
        if foreign:
            raise OptionError("out", f"{out} already holds {foreign[0]}, which is not a gptkit run's: choose a new "
                              "directory for the run")


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


def _check_resume(files: RunFiles, state: dict[str, Any], cfg: TrainConfig, tokenizer: Tokenizer,
                  planned: GPTConfig | None, data_dir: Path, rt: Runtime) -> None:
    """--resume continues the run in --out as it was: refuse flags that would change the model, the
    windows or the tokens (naming the flag), and say what else changed."""
    step = int(state.get("step", 0))
    if step >= cfg.max_iters:
        raise OptionError("max_iters", f"{cfg.max_iters}: the run in {files.root} already reached step {step}, "
                          "so there is nothing to train; raise --max-iters to train it further")
    try:
        old = json.loads(state["config"])
    except (KeyError, TypeError, ValueError, RecursionError):
        old = {}
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
        _check_same_model(files, planned, cfg, old)
    if state.get("data_digest", data_digest(data_dir)) != data_digest(data_dir):
        distr.note(rt, f"resuming on {data_dir}, other data than the run was trained on ({state.get('data')}; same "
                       "tokenizer): the run continues on the new data")
    if "seed" in old and old["seed"] != cfg.seed:
        distr.note(rt, f"--seed {cfg.seed} differs from the run's {old['seed']}: it continues on other batches")


def data_digest(data_dir: Path) -> str:
    """What a data directory holds (its meta.json: shard sizes, tokenizer, sources), wherever it lies."""
    try:
        return hashlib.sha256((data_dir / "meta.json").read_bytes()).hexdigest()[:16]
    except OSError:
        return ""


def _check_same_model(files: RunFiles, new: GPTConfig, cfg: TrainConfig, old: dict[str, Any] | None = None) -> None:
    """The checkpoint's model (its config.json) against the one these flags describe."""
    ckpt = config_from_hf(read_config_dict(files.last), str(files.last / CONFIG_FILE))
    old = old or {}
    for name in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size"):
        theirs, ours = getattr(ckpt, name), getattr(new, name)
        if theirs == ours:
            continue
        if name == "vocab_size":
            raise GptkitError(f"--data has a {ours}-token vocabulary, the run in {files.root} {theirs}")
        if getattr(cfg, name) is not None or old.get("preset", cfg.preset) != cfg.preset:
            flag = name if getattr(cfg, name) is not None else "preset"
            shown = cfg.preset if flag == "preset" else ours
            raise OptionError(flag, f"{shown} does not match the run in {files.root} ({name} {theirs}): a resumed "
                              "run keeps its model; drop the flag or start a new --out")
        raise GptkitError(f"the run in {files.root} has {name} {theirs}, these options make {ours}: resume with "
                          f"the flags it was trained with (--{name.replace('_', '-')} {theirs})")
    if ckpt.bias != new.bias:
        if not new.bias:
            raise GptkitError(f"--no-bias does not match the run in {files.root} (trained with biases): a resumed "
                              "run keeps its model; drop the flag or start a new --out")
        raise GptkitError(f"the run in {files.root} was trained with --no-bias: pass --no-bias to resume it")


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
                cfg: TrainConfig, rt: Runtime, step: int, rows: list[dict[str, Any]], data_dir: Path) -> None:
    """Rank 0 writes the checkpoint; under FSDP every rank first writes its own shards of the model
    and optimizer into it (torch.distributed.checkpoint), and the whole model is gathered to rank
    0's CPU for the Hugging Face model.safetensors."""
    state = {"step": step, "torch_rng": torch.get_rng_state(), "config": json.dumps(asdict(cfg)),
             "data": str(data_dir.resolve()), "data_digest": data_digest(data_dir), "world_size": rt.world_size,
             "strategy": rt.strategy}
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
    load_state_into(model, sd, "the gathered FSDP state", assign=True)
    return model


def _restore(files: RunFiles, model: GPT, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
             rt: Runtime, state: dict[str, Any]) -> dict[str, Any]:
    """Load the last checkpoint's weights and optimizer state (every rank reads it: under several
    nodes the run directory must be on a shared filesystem); return its training state.

    Any strategy resumes any other's checkpoint, on any number of ranks; the continuation is exact
    (to float rounding) when the global batch, batch_size x grad_accum x world_size, is unchanged.
    """
    sharded = files.last / distr.DCP_DIR
    if "optimizer" not in state:  # written under FSDP
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
