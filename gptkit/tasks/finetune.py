"""Supervised fine-tuning on a task, through gptkit's own trainer.

Each example becomes prompt tokens + completion tokens (target_prefix + target) + end-of-text;
the loss counts the completion and the end-of-text only: the targets of prompt positions are
-100, which the loss ignores, so prompt tokens give neither loss nor gradient (tested).

Batches are bucketed by length: every epoch the examples are shuffled (seeded), cut into
mega-batches of 50 steps, sorted by length inside each, cut into steps and the steps shuffled;
each micro-batch is right-padded to its longest row only (a multiple of 8). The rows of step
`it` are a pure function of (seed, it), so a resumed run sees the batches an uninterrupted one
would (and a global batch is the same rows whatever the number of ranks).

`TaskHooks` plugs this into `gptkit.train.train(cfg, hooks=...)`: the task batches replace the
token shards, LoRA adapters (peft) are injected before the optimizer is built, every evaluation
also scores the task on validation examples (greedy decoding: ROUGE-L for summarize, chrF for
translate), the best-scoring weights are kept in `best/`, and training stops early after
`patience` evaluations without improvement. Resume, atomic checkpoints, bf16 and torchrun are
the trainer's.
"""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptkit.engine.text import prompt_ids
from gptkit.errors import GptkitError

from .data import Example
from .templates import Template

IGNORE = -100
MEGA_STEPS = 50
PAD_MULTIPLE = 8
SCORE_METRIC = {"summarize": "rougeL", "translate": "chrf", "custom": "rougeL"}


# ---------------------------------------------------------------------------- encoding

@dataclass
class Encoded:
    ids: list[int]  # prompt + completion + end-of-text
    n_prompt: int  # the first n_prompt tokens are the prompt (no loss on predicting them)
    origin: str = ""
    mask: list[bool] | None = None  # which ids are learned, where not just those after n_prompt (chat turns)

    @property
    def n_learned(self) -> int:
        return sum(self.mask) if self.mask is not None else len(self.ids) - self.n_prompt


def encode_example(ex: Example, template: Template, tokenizer: Any, max_tokens: int, on_long: str = "error",
                   ) -> Encoded | None:
    """One example as token ids (see the module doc). A sequence longer than max_tokens + 1 is
    refused (on_long="error") or its source is cut from the end (on_long="truncate"); None when
    even an empty source leaves no room for the target (truncate mode: the example is skipped)."""
    if not ex.target:
        raise GptkitError(f"{ex.origin}: empty target: nothing to learn")
    prompt, completion = template.render_pair(ex.source, ex.target)
    p_ids, c_ids = prompt_ids(tokenizer, prompt), tokenizer.encode(completion) + [tokenizer.eot_id]
    limit = max_tokens + 1  # x and y are the sequence shifted by one
    if len(p_ids) + len(c_ids) > limit:
        if on_long == "error":
            raise GptkitError(f"{ex.origin}: prompt + target are {len(p_ids) + len(c_ids) - 1} tokens, more than "
                              f"--block-size {max_tokens}; pass --on-long truncate to cut long sources")
        src = tokenizer.encode(ex.source)
        keep = len(src) - (len(p_ids) + len(c_ids) - limit)
        while keep > 0:
            p_ids = prompt_ids(tokenizer, template.render(tokenizer.decode(src[:keep])))
            over = len(p_ids) + len(c_ids) - limit
            if over <= 0:
                break
            keep -= over
        if keep <= 0:
            return None
    return Encoded(p_ids + c_ids, len(p_ids), ex.origin)


def encode_examples(examples: Sequence[Example], template: Template, tokenizer: Any, max_tokens: int,
                    on_long: str = "error") -> tuple[list[Encoded], int, int]:
    """(encoded, number truncated, number skipped)."""
    out, cut, skipped = [], 0, 0
    for ex in examples:
        e = encode_example(ex, template, tokenizer, max_tokens, on_long)
        if e is None:
            skipped += 1
            continue
        p_len = len(prompt_ids(tokenizer, template.render(ex.source)))
        cut += e.n_prompt < p_len
        out.append(e)
    return out, cut, skipped


def make_xy(rows: Sequence[Encoded], pad: int, max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded inputs x and targets y (-100 on prompt positions and padding)."""
    T = max(len(r.ids) for r in rows) - 1
    T = -(-T // PAD_MULTIPLE) * PAD_MULTIPLE
    if max_len is not None:
        T = min(T, max_len)
    x = torch.full((len(rows), T), pad, dtype=torch.long)
    y = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    for i, r in enumerate(rows):
        ids = torch.tensor(r.ids[:T + 1], dtype=torch.long)
        n = len(ids) - 1
        x[i, :n] = ids[:-1]
        y[i, :n] = ids[1:]
        y[i, :max(r.n_prompt - 1, 0)] = IGNORE  # predicting prompt tokens: not learned
        if r.mask is not None:  # y[j] predicts ids[j + 1]: learned only where that id is
            y[i, :n][~torch.tensor(r.mask[1:n + 1], dtype=torch.bool)] = IGNORE
    return x, y


def _learned_bytes(r: Encoded, tokenizer: Any) -> int:
    """The bytes of the text a row learns, each end-of-text or control token counted as one."""
    ids = [t for j, t in enumerate(r.ids) if (r.mask[j] if r.mask is not None else j >= r.n_prompt)]
    text = [t for t in ids if t != tokenizer.eot_id and t not in getattr(tokenizer, "special_ids", {}).values()]
    return len(tokenizer.decode(text).encode()) + len(ids) - len(text)


class TaskBatches:
    """Task examples with the batch interface the trainer uses for token shards (see module doc)."""

    def __init__(self, rows: Sequence[Encoded], split: str, pad: int, seed: int = 0, rows_per_step: int = 1,
                 tokenizer: Any = None) -> None:
        if not rows:
            raise GptkitError(f"the {split} split has no examples")
        self.rows, self.split, self.pad, self.seed = list(rows), split, pad, seed
        self.data_dir = "task examples"  # named in the trainer's banner
        self.rows_per_step = rows_per_step
        self.num_tokens = sum(r.n_learned for r in self.rows)  # the tokens that are scored
        self.num_bytes = (sum(_learned_bytes(r, tokenizer) for r in self.rows)
                          if tokenizer is not None else self.num_tokens)
        self._epochs: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def _epoch(self, e: int, G: int) -> np.ndarray:
        """(steps, G) example indices of epoch e."""
        key = (e, G)
        if key not in self._epochs:
            rng = np.random.default_rng([self.seed, e, 7919])
            perm = rng.permutation(len(self.rows))
            lengths = np.array([len(r.ids) for r in self.rows])
            mega = MEGA_STEPS * G
            chunks = [perm[s:s + mega] for s in range(0, len(perm), mega)]
            order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
            steps = max(1, len(order) // G)
            if len(order) < G:  # fewer examples than one step: repeat them
                order = np.resize(order, G)
            grid = order[:steps * G].reshape(steps, G)
            self._epochs = {key: grid[rng.permutation(steps)]}  # keep one epoch cached
        return self._epochs[key]

    def step_rows(self, it: int, G: int) -> np.ndarray:
        steps = self._epoch(0, G).shape[0]
        return self._epoch(it // steps, G)[it % steps]

    def rank_batch(self, batch_size: int, block_size: int, seed: int, it: int, rt: Any,
                   micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's micro-batch of step `it` (the trainer's hook; seed is fixed at construction)."""
        world, rank = getattr(rt, "world_size", 1), getattr(rt, "rank", 0)
        G = max(self.rows_per_step, batch_size * world)
        rows = self.step_rows(it, G)
        first = (micro * world + rank) * batch_size
        return make_xy([self.rows[i] for i in rows[first:first + batch_size]], self.pad, block_size)

    def get_batch(self, batch_size: int, block_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.rows), (batch_size,), generator=generator).tolist()
        return make_xy([self.rows[i] for i in idx], self.pad, block_size)

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        """Every example once (the first max_batches batches), sorted by length."""
        order = sorted(range(len(self.rows)), key=lambda i: len(self.rows[i].ids))
        for b, s in enumerate(range(0, len(order), batch_size)):
            if max_batches is not None and b >= max_batches:
                return
            yield make_xy([self.rows[i] for i in order[s:s + batch_size]], self.pad, block_size)


# ---------------------------------------------------------------------------- LoRA

LORA_TARGETS = ("c_attn", "c_proj", "c_fc")


def add_lora(model: torch.nn.Module, r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
             targets: Sequence[str] = LORA_TARGETS, init: bool | str = True) -> Any:
    """Inject peft LoRA adapters into the model's Linear layers in place (the model object keeps
    working as before; only the adapters are trainable). Returns the peft wrapper."""
    import peft
    cfg = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets),
                          init_lora_weights=init, bias="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft.get_peft_model(model, cfg)


def merged_copy(peft_model: Any) -> torch.nn.Module:
    """A plain GPT with the adapters merged into its weights (the training model is untouched)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return copy.deepcopy(peft_model).merge_and_unload()


def lora_state(peft_model: Any) -> dict[str, torch.Tensor]:
    import peft
    return {k: v.detach().cpu().clone() for k, v in peft.get_peft_model_state_dict(peft_model).items()}


def load_lora_state(peft_model: Any, sd: dict[str, torch.Tensor]) -> None:
    import peft
    res = peft.set_peft_model_state_dict(peft_model, sd)
    bad = [k for k in getattr(res, "unexpected_keys", []) if "lora_" in k]
    if bad:
        raise GptkitError(f"checkpoint's LoRA state does not fit this model ({bad[0]} ...)")


def save_adapter(peft_model: Any, directory: Path, base: str | None) -> None:
    """adapter_model.safetensors + adapter_config.json in peft's layout."""
    from safetensors.torch import save_file
    cfg = peft_model.peft_config["default"].to_dict()
    cfg["base_model_name_or_path"] = base
    cfg = json.loads(json.dumps(cfg, default=lambda o: sorted(o) if isinstance(o, set) else str(o)))
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / ".adapter_model.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in lora_state(peft_model).items()}, str(tmp))
    os.replace(tmp, directory / "adapter_model.safetensors")
    tmpc = directory / ".adapter_config.json.tmp"
    tmpc.write_text(json.dumps(cfg, indent=1) + "\n")
    os.replace(tmpc, directory / "adapter_config.json")


# ---------------------------------------------------------------------------- trainer hooks

@dataclass
class TaskHooks:
    """What `train(cfg, hooks=...)` asks of a task (see the module doc)."""
    task: str
    template: Template
    tokenizer: Any
    train_rows: list[Encoded]
    val_rows: list[Encoded]
    val_examples: list[Example]
    seed: int = 0
    rows_per_step: int = 1
    lora: dict[str, Any] | None = None  # add_lora kwargs, None = full fine-tuning
    score_examples: int = 200
    score_batch_size: int = 32
    max_new_tokens: int = 64
    patience: int | None = None  # evaluations without a better score before stopping
    base: str | None = None
    source: str = "task examples"
    peft_model: Any = None
    best: dict[str, Any] = field(default_factory=lambda: {"score": None, "step": 0, "bad_evals": 0})
    stop: bool = False
    _improved: bool = False

    @property
    def metric(self) -> str:
        return SCORE_METRIC.get(self.task, "rougeL")

    def data(self, split: str) -> TaskBatches:
        rows = self.train_rows if split == "train" else self.val_rows
        batches = TaskBatches(rows, split, self.tokenizer.eot_id, self.seed, self.rows_per_step, self.tokenizer)
        batches.data_dir = self.source
        return batches

    def prepare_model(self, model: torch.nn.Module) -> None:
        if self.lora is not None:
            self.peft_model = add_lora(model, **self.lora)

    def saveable(self, model: torch.nn.Module) -> torch.nn.Module:
        return merged_copy(self.peft_model) if self.peft_model is not None else model

    def save_extra(self, directory: Path) -> None:
        """LoRA: the adapters in peft's layout beside the merged weights of each checkpoint."""
        if self.peft_model is not None:
            save_adapter(self.peft_model, Path(directory), self.base)

    def state(self) -> dict[str, Any]:
        st: dict[str, Any] = {"task_best": json.dumps(self.best)}
        if self.peft_model is not None:
            st["lora"] = lora_state(self.peft_model)
        return st

    def restore(self, model: torch.nn.Module, state: dict[str, Any]) -> bool:
        """Restore the hooks' part of a checkpoint; True when the weights were restored here (LoRA)."""
        if "task_best" in state:
            self.best = json.loads(state["task_best"])
        if self.peft_model is not None:
            if "lora" not in state:
                raise GptkitError("the checkpoint to resume has no LoRA state: it was trained without --lora")
            load_lora_state(self.peft_model, state["lora"])
            return True
        if "lora" in state:
            raise GptkitError("the checkpoint to resume was trained with --lora: pass --lora to resume it")
        return False

    @torch.no_grad()
    def task_score(self, model: torch.nn.Module) -> float:
        from gptkit.generate import generate_text

        from .score import score
        exs = self.val_examples[:self.score_examples]
        outs = []
        n_ctx = model.config.n_positions
        for s in range(0, len(exs), self.score_batch_size):
            batch = exs[s:s + self.score_batch_size]
            prompts = [self.template.render(e.source) for e in batch]
            res = generate_text(model, self.tokenizer, prompts, max_new_tokens=min(self.max_new_tokens, n_ctx - 1),
                                stop=list(self.template.stop) or None, context="truncate")
            outs += [r["text"].strip() for r in res]
        return score(outs, [e.target for e in exs], [self.metric])[self.metric]

    def after_eval(self, step: int, model: torch.nn.Module) -> dict[str, float]:
        """Score the task on validation examples; track the best; decide early stopping."""
        if self.score_examples == 0:  # --score-examples 0: no task score, no best checkpoint
            self._improved = False
            return {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncated prompts are counted by the task runner, not here
            value = self.task_score(model)
        best = self.best
        self._improved = best["score"] is None or value > best["score"]
        if self._improved:
            best.update(score=value, step=step, bad_evals=0)
        else:
            best["bad_evals"] += 1
        self.stop = self.patience is not None and best["bad_evals"] >= self.patience
        return {f"val_{self.metric}": value}

    def after_checkpoint(self, out: Path, step: int) -> None:
        """Keep the best-scoring model: this checkpoint's model files (hard links) in
        out/best-step-N, and the symlink out/best switched to it with one rename."""
        if not self._improved:
            return
        last = out / "checkpoints" / "last"
        final = out / f"best-step-{step:08d}"
        tmp = out / f".best-step-{step:08d}.tmp"
        for d in (tmp, final):
            if d.exists():
                shutil.rmtree(d)
        tmp.mkdir()
        for f in last.iterdir():
            if f.is_file() and not f.name.startswith("train_state"):
                os.link(f, tmp / f.name)
        (tmp / "best.json").write_text(json.dumps({"step": step, self.metric: self.best["score"]}) + "\n")
        os.replace(tmp, final)
        link = out / ".best.link"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(final.name, link)
        os.replace(link, out / "best")
        for old in out.glob("best-step-*"):
            if old != final:
                shutil.rmtree(old)


# ---------------------------------------------------------------------------- the driver

@dataclass
class FinetuneResult:
    out: Path
    train: Any
    best: dict[str, Any]
    metric: str
    merged: Path | None = None

    @property
    def summary(self) -> str:
        t, v = self.train, self.train.val
        lines = [(f"fine-tuned {t.step} steps ({t.stopped_by}), {t.tokens_per_s:,.0f} tokens/s; "
                 f"val loss {v.get('loss', float('nan')):.4f} (target tokens only)")]
        if self.best.get("score") is not None:
            lines.append(f"best val {self.metric} {self.best['score']:.2f} at step {self.best['step']}: "
                         f"{self.out / 'best'}")
        if self.merged is not None:
            lines.append(f"merged model (plain GPT-2 directory): {self.merged}")
        lines.append(f"run directory: {self.out}")
        return "\n".join(lines)


def check_lora(r: int, alpha: float, dropout: float) -> None:
    """LoRA's options, checked before anything is read (peft itself checks only some, with tracebacks)."""
    if r < 1:
        raise GptkitError(f"--lora-r must be >= 1, got {r}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise GptkitError(f"--lora-alpha must be > 0 (the adapters' scale is alpha / r), got {alpha}")
    if not 0 <= dropout < 1:
        raise GptkitError(f"--lora-dropout must be in [0, 1), got {dropout}")


def _base_model(init_from: str, lora_r: int | None) -> Path:
    """The directory of the model to fine-tune (a run, a GPT-2 directory or a Hub id), checked to
    be a model before its tokenizer is read; --lora-r no larger than its layers are wide."""
    from gptkit.hf import read_config
    from gptkit.hf.hub import resolve_model_dir
    try:
        directory = resolve_model_dir(init_from)
    except GptkitError as e:
        raise GptkitError(f"--init-from {e}") from None
    config = read_config(directory)
    if lora_r is not None and lora_r > config.n_embd:
        raise GptkitError(f"--lora-r {lora_r} is more than the model's width ({config.n_embd}): a rank above a "
                          f"layer's width adds weights and nothing else; use at most {config.n_embd}")
    return directory


def check_options(cfg: Any, *, lora: bool, lora_r: int, lora_alpha: float, lora_dropout: float, merge: bool,
                  patience: int | None, score_examples: int) -> None:
    """The fine-tuning options, checked before anything is read."""
    if not cfg.init_from:
        raise GptkitError("--init-from is required: the model to fine-tune")
    if merge and not lora:
        raise GptkitError("--merge merges LoRA adapters: it needs --lora (full fine-tuning writes plain weights)")
    check_lora(lora_r, lora_alpha, lora_dropout)
    if patience is not None and (patience < 1 or score_examples == 0):  # it counts evaluations without a better score
        raise GptkitError(f"--patience must be >= 1, with --score-examples >= 1; got {patience}")
    if score_examples < 0:
        raise GptkitError(f"--score-examples must be >= 0, got {score_examples}")
    cfg.validate()


def finetune(cfg: Any, *, template: Template, task: str = "custom", split: dict[str, Any] | None = None,
             fields: dict[str, Any] | None = None, on_long: str = "error", lora: bool = False, lora_r: int = 8,
             lora_alpha: float = 16.0, lora_dropout: float = 0.0, merge: bool = False, patience: int | None = None,
             score_examples: int = 200, score_max_new_tokens: int = 64) -> FinetuneResult | None:
    """Fine-tune cfg.init_from on the (source, target) file cfg.data with gptkit's trainer.

    The test split is never read; validation examples give the val loss and the task score.
    Returns None on ranks other than 0."""
    from gptkit import load_tokenizer

    from .data import read_examples, split_examples
    if on_long not in ("error", "truncate"):
        raise GptkitError(f"--on-long must be error or truncate, got {on_long!r}")
    check_options(cfg, lora=lora, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, merge=merge,
                  patience=patience, score_examples=score_examples)
    from gptkit.train.resume import check_run_dir
    check_run_dir(Path(cfg.out), cfg.resume, [cfg.data, cfg.init_from])  # before any example is read
    split = {"val_fraction": 0.05, "test_fraction": 0.05, "seed": 0, **(split or {})}
    examples = read_examples(cfg.data, **(fields or {}))
    splits = split_examples(examples, split["val_fraction"], split["test_fraction"], split["seed"])
    if not splits["val"]:
        raise GptkitError(f"{cfg.data}: the validation split is empty (raise --val-fraction or give more examples)")
    base_dir = _base_model(cfg.init_from, lora_r if lora else None)
    tokenizer = load_tokenizer(base_dir)
    train_rows, cut, skipped = encode_examples(splits["train"], template, tokenizer, cfg.block_size, on_long)
    val_rows, vcut, vskipped = encode_examples(splits["val"], template, tokenizer, cfg.block_size, on_long)
    rank = int(os.environ.get("RANK", "0"))
    if (cut or skipped or vcut or vskipped) and rank == 0:
        print(f"gptkit: warning: {cut + vcut} source(s) cut to fit --block-size {cfg.block_size}, "
              f"{skipped + vskipped} example(s) skipped (their target alone does not fit)", file=sys.stderr)
    hooks = TaskHooks(task=task, template=template, tokenizer=tokenizer, train_rows=train_rows, val_rows=val_rows,
                      val_examples=splits["val"], **hook_options(cfg, lora, lora_r, lora_alpha, lora_dropout),
                      score_examples=score_examples, max_new_tokens=score_max_new_tokens, patience=patience,
                      source=f"{cfg.data} ({len(train_rows):,} train / {len(val_rows):,} val examples)")
    return run_finetune(cfg, hooks, merge)


def hook_options(cfg: Any, lora: bool, lora_r: int, lora_alpha: float, lora_dropout: float) -> dict[str, Any]:
    """TaskHooks' fields that come from the trainer's config and the LoRA flags."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return dict(seed=cfg.seed, rows_per_step=cfg.batch_size * cfg.grad_accum * world, base=str(cfg.init_from),
                lora=dict(r=lora_r, alpha=lora_alpha, dropout=lora_dropout) if lora else None)


def run_finetune(cfg: Any, hooks: TaskHooks, merge: bool) -> FinetuneResult | None:
    """Train with the hooks; with merge, copy the best (else last) merged model to out/merged."""
    from gptkit.train import train
    result = train(cfg, hooks=hooks)
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    out = Path(cfg.out)
    merged = None
    if merge:
        src = out / "best" if (out / "best").exists() else out
        merged = out / "merged"
        tmp = out / ".merged.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for f in src.iterdir():
            if f.is_file() and not f.name.startswith(("adapter_", "best.json", "train_state", "metrics", "loss")):
                shutil.copy2(f, tmp / f.name)
        if merged.exists():
            shutil.rmtree(merged)
        os.replace(tmp, merged)
    return FinetuneResult(out, result, dict(hooks.best), hooks.metric, merged)
