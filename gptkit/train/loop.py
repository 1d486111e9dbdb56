"""Training by maximum likelihood: cross-entropy, AdamW (or Muon + AdamW), a warm-up + cosine or
warmup-stable-decay schedule over an iteration and/or time budget, checkpoints that resume
exactly, and evaluation in loss, perplexity and bits per byte.

Rank-aware from the first line (see distributed.py): under torchrun each rank takes its own rows
of the step's global batch (micro-batch x accumulation x world size rows, each drawn from a seed of
step and row, so the data position is the step itself and a global batch is the same whatever the
world size), DDP or FSDP2 keep the ranks in step, and only rank 0 writes.
"""
from __future__ import annotations

import json
import math
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
from ..device import autocast, autocast_dtype, muon_dtype
from ..distributed import Runtime, setup_runtime
from ..errors import GptkitError, OptionError
from ..evals.training import PREFIX as TASK_PREFIX
from ..evals.training import TaskScorer
from ..evaluate import evaluate
from ..files import write_json
from ..hf import check_saveable, load_model, load_state_into, read_state_dict
from ..model import GPT, GPTConfig
from ..rundir import RunFiles, load_train_state, plot_losses, read_metrics, write_metrics
from ..tokenizer import Tokenizer, same_vocabulary
from .config import TrainConfig, model_config
from .guards import TrainingInterrupted, coverage, diverged, interrupts
from .optim import make_optimizer, set_lr
from .report import Log, banner
from .resume import (
    adopt_run_model,
    check_resume,
    check_run_dir,
    check_same_model,
    clean_run_temps,
    data_digest,
    run_config,
)
from .schedule import Schedule, extend, fit_warmup, schedule_for, with_default_lr
from .speed import measured_step_seconds

# ---------------------------------------------------------------------------- the run

def build_model(cfg: TrainConfig, tokenizer: Tokenizer) -> GPT:
    """A fresh GPT of the configured shape, or the --init-from model (same tokenizer required)."""
    if not cfg.init_from:
        return GPT(model_config(cfg, tokenizer.vocab_size, tokenizer.eot_id))
    model = load_model(cfg.init_from)
    theirs = model.tokenizer
    if _adds_control_tokens(theirs, tokenizer) and model.config.vocab_size == theirs.vocab_size:
        from ..chat.template import grow_vocab  # e.g. chat fine-tuning's ChatML tokens: new rows, old ones kept
        grow_vocab(model, tokenizer.vocab_size)
    if model.config.vocab_size != tokenizer.vocab_size or (theirs is not None and not same_vocabulary(theirs, tokenizer)):
        raise GptkitError(f"--init-from {cfg.init_from} uses a different tokenizer than the data "
                          f"({model.config.vocab_size} vs {tokenizer.vocab_size} tokens); prepare the data "
                          "with that model's tokenizer (e.g. --tokenizer gpt2)")
    if cfg.dropout is not None:
        model.set_dropout(cfg.dropout)
    return model.train()

def _adds_control_tokens(theirs: Tokenizer | None, ours: Tokenizer) -> bool:
    """Whether `ours` is the model's tokenizer with control tokens added after its own."""
    return (theirs is not None and same_vocabulary(theirs, ours) and len(ours.specials) > len(theirs.specials)
            and ours.specials[:len(theirs.specials)] == theirs.specials)


@dataclass
class TrainResult:
    out: Path
    step: int
    val: dict[str, float] = field(default_factory=dict)
    tokens_per_s: float = 0.0
    stopped_by: str = "max_iters"


def train(cfg: TrainConfig, hooks: Any = None, on_eval: Any = None) -> TrainResult:
    """Train as cfg says. `on_eval(step, val, progress)` is called after every evaluation (the
    sweep prunes through it): a true return value stops the run there, checkpointed.
    `hooks` (optional) adapts the loop to another objective without forking
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
    cfg.apply_recipe()
    cfg.validate()
    with_default_lr(cfg)
    warmup_note = fit_warmup(cfg)
    schedule_for(cfg)  # a bad schedule is refused before anything starts
    rt = setup_runtime(cfg)
    try:
        with distr.lost_rank_errors(rt):
            return _train(cfg, rt, hooks, on_eval, warmup_note)
    finally:
        distr.shutdown(rt)


def _clock() -> float:
    """Seconds, for the time budget (tests replace it with a deterministic clock)."""
    return time.perf_counter()


def check_block_size(cfg: TrainConfig, n_ctx: int) -> None:
    if cfg.block_size > n_ctx:
        raise OptionError("block_size", f"{cfg.block_size} is larger than the model's context "
                          f"(n_positions = {n_ctx}); lower --block-size or raise --n-positions")


def _train(cfg: TrainConfig, rt: Runtime, hooks: Any = None, on_eval: Any = None,
           warmup_note: str | None = None) -> TrainResult:
    files = RunFiles(cfg.out)
    check_run_dir(files.root, cfg.resume, [cfg.data, cfg.init_from])
    data_dir, tokenizer, train_data, val_data, state = _open_data(cfg, files, rt, hooks)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, tokenizer)
    check_block_size(cfg, model.config.n_positions)  # --init-from: known only once loaded
    if state is not None and cfg.init_from:
        check_same_model(files, model.config, cfg, run_config(state))
    check_saveable(model)  # whatever would fail at the first checkpoint fails now, before step 1
    scorer = TaskScorer.open(cfg.eval_tasks, tokenizer, model.config.n_positions)  # bad task files: before step 1
    if hooks is not None:
        hooks.prepare_model(model)
    amp, why = _precision(model, train_data, cfg, rt, files)
    cfg.dtype = "float32" if amp is None else str(amp).removeprefix("torch.")  # what ran, as resume reads it
    muon_why = ""
    if cfg.optimizer == "muon":
        cfg.muon_dtype, muon_why = _muon_precision(cfg, rt, files)  # what ran, as resume reads it
    runner = _wrap(model, cfg, rt, amp)  # before the optimizer: FSDP replaces the parameters by shards
    optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2),
                               rt.device, cfg.muon_lr, cfg.muon_dtype)
    if state is not None:
        _restore(files, model, optimizer, cfg, rt, state, hooks)
    start, rows, elapsed0, step_s = 0, [], 0.0, 0.0
    schedule = schedule_for(cfg)
    if state is not None:
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
        rows = read_metrics(files.metrics, up_to_step=start)
        elapsed0, step_s = float(state.get("elapsed_s", 0.0)), float(state.get("step_s", 0.0))
        schedule, how = extend(_old_schedule(state, cfg), schedule, start, elapsed0, cfg.extend)
        distr.say(rt, f"resumed from step {start} ({elapsed0 / 60:.1f} minutes trained): {how}")
    if warmup_note and cfg.progress:  # with the banner (-q: train_config.json records the warm-up run)
        distr.say(rt, warmup_note)  # once every check has passed: a refused run says only why
    if rt.is_main:
        files.root.mkdir(parents=True, exist_ok=True)
        clean_run_temps(files.root)
        write_json(files.root / "train_config.json", asdict(cfg))
        copy_datacard(data_dir, files.root)  # the model says what it was trained on
        if cfg.progress:
            print(banner(model, cfg, rt, why, train_data, val_data, start, muon_why), file=sys.stderr, flush=True)
    log = Log(cfg, rt, model, start, files)
    t0, stopped_by, val, done = _clock(), "max_iters", {}, start
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes is not None else math.inf
    model.train()
    with interrupts(rt) as interrupted:
        try:
            for it in range(start, cfg.max_iters):
                step_start = _clock()
                # the lr of a step is the schedule's at the step's expected end (the last step's duration
                # ahead), so that the last step inside a time budget runs at the bottom of the decay
                lr = schedule.lr_at(it, elapsed0 + (step_start - t0) + step_s)
                set_lr(optimizer, lr, schedule.lr)
                loss = train_step(runner, model, optimizer, train_data, cfg, rt, it, amp)
                step_s, done = _clock() - step_start, it + 1
                step = it + 1
                elapsed = elapsed0 + (_clock() - t0)
                value = log.step(step, loss, lr, rows, elapsed)
                if value is not None and not math.isfinite(value):
                    diverged(files, f"the training loss became {value} at step {step} (lr {lr:.3g})")
                # every rank must agree, or one would stop while the others wait in a collective
                out_of_time = cfg.max_minutes is not None and distr.any_rank(elapsed >= budget_s, rt)
                if out_of_time:
                    stopped_by = "max_minutes"
                extra = {"schedule": schedule.state(), "elapsed_s": elapsed, "step_s": step_s}
                final = step == cfg.max_iters or out_of_time
                if step % cfg.eval_interval == 0 or final:
                    val = _eval_and_checkpoint(files, model, optimizer, tokenizer, val_data, cfg, rt, step, rows,
                                               data_dir, amp, log, extra, hooks, final, lr, scorer)
                    if on_eval is not None and on_eval(step, val, schedule.progress(step, elapsed)):
                        stopped_by = "on_eval"
                        break
                    if hooks is not None and hooks.stop:
                        stopped_by = "early_stopping"
                        break
                elif interrupted[0]:
                    _checkpoint(files, model, optimizer, tokenizer, cfg, rt, step, rows, data_dir, extra, hooks)
                if interrupted[0]:
                    raise TrainingInterrupted(f"interrupted at step {step}: checkpoint saved in {files.root} "
                                              "(continue with --resume)")
                if out_of_time:
                    break
        finally:
            log.close()
    tps = (done - start) * log.tokens_per_step / max(_clock() - t0, 1e-9)
    return TrainResult(files.root, done, val, tps, stopped_by)


def _open_data(cfg: TrainConfig, files: RunFiles, rt: Runtime,
               hooks: Any = None) -> tuple[Path, Tokenizer, Any, Any, dict[str, Any] | None]:
    """The data directory's tokenizer and splits, and the checkpoint's training state on --resume
    (checked against them); cheap checks (the model's shape, the flags against the run) come first."""
    if cfg.data is None:
        raise GptkitError("no --data given (the CLI prepares the embedded corpus; the API needs a data dir)")
    data_dir = Path(cfg.data)
    planned = None
    if hooks is not None:  # task examples, tokenized by the hooks with the --init-from model's tokenizer
        tokenizer = hooks.tokenizer
    else:
        tokenizer = Tokenizer.load(data_dir)
    state = load_train_state(files.last) if cfg.resume else None
    if hooks is None and not cfg.init_from:  # check the shape before touching the data: cheap errors first
        if state is not None:  # the run's own model, whatever the preset's defaults make
            adopt_run_model(files, cfg, model_config(cfg, tokenizer.vocab_size, tokenizer.eot_id), run_config(state))
        planned = model_config(cfg, tokenizer.vocab_size, tokenizer.eot_id)
    if state is not None:  # a flag that contradicts the run is named before what it would make is checked
        check_resume(files, state, cfg, tokenizer, planned, data_dir, rt)
    if planned is not None:
        check_block_size(cfg, planned.n_positions)
        check_saveable(planned)  # a model no transformers layout holds: refused now, not at its first save
    if hooks is not None:
        return data_dir, tokenizer, hooks.data("train"), hooks.data("val"), state
    train_data, val_data = TokenShards(data_dir, "train"), TokenShards(data_dir, "val")
    if train_data.num_tokens == 0:
        raise GptkitError(f"{data_dir} has an empty train split (every document drew val): prepare the data again "
                          "with a lower --val-fraction or more documents")
    if val_data.num_tokens == 0:
        raise GptkitError(f"{data_dir} has no validation split (prepared with --val-fraction 0): training "
                          "evaluates and checkpoints on one; prepare the data again with --val-fraction 0.01, say")
    for split in (train_data, val_data):
        if split.num_tokens < cfg.block_size + 1:
            raise OptionError("block_size", f"{cfg.block_size} is too long for split '{split.split}' of {data_dir}: "
                              f"it has {split.num_tokens} tokens, fewer than block_size+1 = {cfg.block_size + 1}; "
                              "use a smaller --block-size or more data")
    return data_dir, tokenizer, train_data, val_data, state


def _resumed(files: RunFiles, cfg: TrainConfig, option: str, choices: tuple[str, ...]) -> str | None:
    """What `option` resolved to in the run being resumed (its train_config.json), if one of `choices`."""
    if not cfg.resume or not (files.root / "train_config.json").is_file():
        return None
    try:
        ran = json.loads((files.root / "train_config.json").read_text()).get(option)
    except (OSError, ValueError, AttributeError):
        return None
    return ran if ran in choices else None


def _precision(model: GPT, data: TokenShards, cfg: TrainConfig, rt: Runtime,
               files: RunFiles) -> tuple[torch.dtype | None, str]:
    """The autocast dtype (None: fp32) and why. --dtype auto on a CPU with native bf16 times a few
    forward + backward steps of this model in both and takes the faster: bf16 autocast is not
    faster for every shape (a 4-layer, 128-wide model runs ~10% slower in it). A resumed run keeps
    the precision its first part measured, so that it continues the same curve."""
    if cfg.dtype != "auto":
        return autocast_dtype(cfg.dtype, rt.device), "as asked"
    ran = _resumed(files, cfg, "dtype", ("float32", "bfloat16", "float16"))
    if ran is not None:
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


def _muon_precision(cfg: TrainConfig, rt: Runtime, files: RunFiles) -> tuple[str, str]:
    """Muon's Newton-Schulz precision and why: --muon-dtype auto is bf16 where the host computes it
    natively (gptkit.device.muon_dtype: the timing --dtype auto reads), else fp32; a resumed run
    keeps what its first part ran."""
    if cfg.muon_dtype != "auto":
        return cfg.muon_dtype, "as asked"
    ran = _resumed(files, cfg, "muon_dtype", ("float32", "bfloat16"))
    if ran is not None:
        return ran, "auto: as the run being resumed"
    chosen = muon_dtype("auto", rt.device)
    return chosen, "auto: " + ("native on this hardware" if chosen == "bfloat16" else "bf16 is not native here")


def _eval_and_checkpoint(files: RunFiles, model: GPT, optimizer: torch.optim.Optimizer, tokenizer: Tokenizer,
                         val_data: TokenShards, cfg: TrainConfig, rt: Runtime, step: int,
                         rows: list[dict[str, Any]], data_dir: Path, amp: torch.dtype | None,
                         log: Log, state_extra: dict[str, Any], hooks: Any = None, final: bool = False,
                         lr: float = math.nan, scorer: TaskScorer | None = None) -> dict[str, Any]:
    # the last evaluation covers the whole split, so the number a run ends with is `gptkit eval`'s
    val = evaluate(model, val_data, cfg.block_size, cfg.batch_size, None if final else cfg.eval_iters, amp, rt)
    val["split_tokens"] = val_data.num_tokens
    if not math.isfinite(val["loss"]):
        diverged(files, f"the validation loss became {val['loss']} at step {step} (lr {lr:.3g})")
    rows.append({"kind": "eval", "step": step, "val_loss": val["loss"], "val_perplexity": val["perplexity"],
                 "val_bits_per_byte": val["bits_per_byte"], "val_tokens": val["eval_tokens"], "time": time.time()})
    extra = hooks.after_eval(step, model) if hooks is not None else {}  # e.g. the task score
    if scorer is not None:  # --eval-tasks: multiple-choice accuracy
        extra.update(scorer(model, amp))
    rows[-1].update(extra)
    log.write(f"step {step}: val loss {val['loss']:.4f}, perplexity {val['perplexity']:.2f}, "
              f"bits/byte {val['bits_per_byte']:.4f}" + "".join(f", {k} {v:.2f}" for k, v in extra.items())
              + f" ({coverage(val)})")
    if log.tb is not None:
        log.tb.add_scalar("val/loss", val["loss"], step)
        log.tb.add_scalar("val/bits_per_byte", val["bits_per_byte"], step)
        for k, v in extra.items():
            if k.startswith(TASK_PREFIX):
                log.tb.add_scalar(k, v, step)
        log.tb.flush()
    _checkpoint(files, model, optimizer, tokenizer, cfg, rt, step, rows, data_dir, state_extra, hooks)
    return val


def _wrap(model: GPT, cfg: TrainConfig, rt: Runtime, amp: torch.dtype | None) -> torch.nn.Module:
    """Moves the model to its device; DDP / FSDP2 under those strategies; torch.compile if asked."""
    return distr.wrap(model, rt, amp, cfg.compile)


def train_step(runner: torch.nn.Module, model: GPT, optimizer: torch.optim.Optimizer,
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


def _checkpoint(files: RunFiles, model: GPT, optimizer: torch.optim.Optimizer, tokenizer: Tokenizer,
                cfg: TrainConfig, rt: Runtime, step: int, rows: list[dict[str, Any]], data_dir: Path,
                extra: dict[str, Any] | None = None, hooks: Any = None) -> None:
    """Rank 0 writes the checkpoint; under FSDP every rank first writes its own shards of the model
    and optimizer into it (torch.distributed.checkpoint), and the whole model is gathered to rank
    0's CPU for the Hugging Face model.safetensors."""
    state = {"step": step, "torch_rng": torch.get_rng_state(), "config": json.dumps(asdict(cfg)),
             "data": str(data_dir.resolve()), "data_digest": data_digest(data_dir), "world_size": rt.world_size,
             "strategy": rt.strategy, **(extra or {})}
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
    sd = {k: v for k, v in sd.items() if k != "lm_head.weight" or not config.tie_word_embeddings}
    load_state_into(model, sd, "the gathered FSDP state", assign=True)
    return model


def _restore(files: RunFiles, model: GPT, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
             rt: Runtime, state: dict[str, Any], hooks: Any = None) -> None:
    """Load the last checkpoint's weights and optimizer state (every rank reads it: under several
    nodes the run directory must be on a shared filesystem), its training state being `state`.

    Any strategy resumes any other's checkpoint, on any number of ranks; the continuation is exact
    (to float rounding) when the global batch, batch_size x grad_accum x world_size, is unchanged.
    """
    sharded = files.last / distr.DCP_DIR
    if hooks is not None and hooks.restore(model, state):  # the hooks own the weights (LoRA adapters)
        optimizer.load_state_dict(state["optimizer"])
    elif "optimizer" not in state:  # written under FSDP
        distr.load_sharded(model, optimizer, sharded)
    else:
        sd, source = read_state_dict(files.last)  # either layout (GPT-2's, Llama's)
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


def _old_schedule(state: dict[str, Any], cfg: TrainConfig) -> Schedule:
    """The schedule the checkpoint was following (older checkpoints: rebuilt from their config)."""
    if isinstance(state.get("schedule"), dict):
        return Schedule.from_state(state["schedule"])
    try:
        old = TrainConfig.from_dict({k: v for k, v in json.loads(state["config"]).items()
                                     if k in TrainConfig.__dataclass_fields__}, "the checkpoint")
        with_default_lr(old)
        return schedule_for(old)
    except (KeyError, TypeError, ValueError, GptkitError):
        return schedule_for(cfg)
