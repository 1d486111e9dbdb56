"""Learning-rate schedules that know the budget: iterations, minutes, or both.

A schedule maps the run's *progress* to a learning rate. Progress is how much of the budget is
spent: `step / horizon_iters` for an iteration budget, `elapsed / budget_seconds` for a time
budget (`--max-minutes`), and the larger of the two when both are set, so that whichever limit
comes first, warm-up and decay are complete when it does. Elapsed time is the run's own training
time, kept in its checkpoints, so a resumed run continues the curve where it stopped.

Shapes (peak `lr`, floor `min_lr`):
- cosine: linear warm-up over `warmup_iters` steps, then cosine decay to min_lr at progress 1.
  With an iteration budget alone this is exactly GPT-2's / nanoGPT's schedule.
- wsd (warmup-stable-decay, "trapezoidal"): warm-up, then flat at lr, then a linear decay to
  min_lr over the last `cooldown` fraction of the budget. Extending a run is natural: while the
  decay has not begun, a longer budget only lengthens the flat part.
- constant: warm-up, then lr (for lr-find and tests).

Warm-up is counted in steps (a warm-up is about optimizer statistics, which steps build); decay
starts where warm-up ended, at progress p_w, and covers (p - p_w) / (1 - p_w) of the rest.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import GptkitError
from .config import TrainConfig

KINDS = ("cosine", "wsd", "constant")
EXTEND = ("auto", "keep", "stretch", "rewarm")


@dataclass
class Schedule:
    kind: str = "cosine"
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_iters: int = 30
    horizon_iters: int | None = 600  # None: no iteration budget (time alone)
    budget_s: float | None = None  # None: no time budget
    cooldown: float = 0.2  # wsd: the decaying fraction of the budget
    start_iter: int = 0  # a deliberate re-warm (--extend rewarm) starts a new schedule here ...
    start_s: float = 0.0  # ... at this elapsed time
    warmup_end: float | None = None  # progress at the end of warm-up, once reached (recorded)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise GptkitError(f"unknown --schedule {self.kind!r} (choose from {', '.join(KINDS)})")
        for name in ("lr", "min_lr", "cooldown"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise GptkitError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v}")
        if self.lr <= 0:
            raise GptkitError(f"--lr must be > 0, got {self.lr}")
        if self.min_lr > self.lr:
            raise GptkitError(f"--min-lr {self.min_lr:g} is larger than --lr {self.lr:g}")
        if not 0 < self.cooldown <= 1:
            raise GptkitError(f"--cooldown must be in (0, 1], got {self.cooldown}")
        if self.horizon_iters is None and self.budget_s is None:
            raise GptkitError("a schedule needs an iteration or a time budget")
        if self.horizon_iters is not None and self.horizon_iters < 1:
            raise GptkitError(f"the schedule's horizon must be >= 1 step, got {self.horizon_iters}")
        if self.budget_s is not None and not (math.isfinite(self.budget_s) and self.budget_s > 0):
            raise GptkitError(f"the time budget must be > 0 seconds, got {self.budget_s}")

    # ------------------------------------------------------------------ progress

    def progress(self, it: int, elapsed_s: float = 0.0) -> float:
        """The fraction of the budget spent before step `it` (0-based) after `elapsed_s` seconds."""
        p = 0.0
        if self.horizon_iters is not None:
            p = (it - self.start_iter) / max(1, self.horizon_iters - self.start_iter)
        if self.budget_s is not None:
            p = max(p, (elapsed_s - self.start_s) / max(1e-9, self.budget_s - self.start_s))
        return max(0.0, p)

    def lr_at(self, it: int, elapsed_s: float = 0.0) -> float:
        """The learning rate of step `it`. Records where warm-up ended (call it in step order)."""
        k = it - self.start_iter
        if k < self.warmup_iters:
            return self.lr * (k + 1) / (self.warmup_iters + 1)
        p = self.progress(it, elapsed_s)
        if self.warmup_end is None:
            self.warmup_end = self._warmup_progress(p)
        return self.lr_at_progress(p)

    def _warmup_progress(self, p_now: float) -> float:
        if self.budget_s is None:  # iterations alone: exactly w / horizon, as GPT-2's schedule
            return min(1.0, self.warmup_iters / max(1, self.horizon_iters - self.start_iter))
        return min(p_now, 1.0)

    def lr_at_progress(self, p: float) -> float:
        if self.kind == "constant":
            return self.lr
        pw = self.warmup_end if self.warmup_end is not None else 0.0
        if p >= 1.0:
            return self.min_lr
        if self.kind == "cosine":
            ratio = (p - pw) / max(1e-12, 1.0 - pw)
            ratio = min(max(ratio, 0.0), 1.0)
            return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (self.lr - self.min_lr)
        start = max(pw, 1.0 - self.cooldown)  # wsd: flat, then linear to min_lr
        if p <= start:
            return self.lr
        return self.lr + (self.min_lr - self.lr) * (p - start) / max(1e-12, 1.0 - start)

    def decaying(self, p: float) -> bool:
        """Whether the lr has left its peak at progress p (cosine: at once; wsd: in its cool-down)."""
        if self.kind == "constant":
            return False
        if self.kind == "cosine":
            return p > (self.warmup_end or 0.0)
        return p > max(self.warmup_end or 0.0, 1.0 - self.cooldown)

    def state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Schedule:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def extend(old: Schedule, new: Schedule, step: int, elapsed_s: float, how: str = "auto") -> tuple[Schedule, str]:
    """The schedule a resumed run follows, and one line saying what happens to the lr.

    `old` is the checkpoint's schedule, `new` the one the flags give now. When the budget is
    unchanged the old schedule continues exactly. When it changed (a larger --max-iters, say):
    - keep: the old horizon stays; the lr follows the old curve and stays at min_lr after it.
    - stretch: the new budget replaces the old, as if the run had had it from the start (for
      wsd before its cool-down this is seamless: the flat part is longer).
    - rewarm: a fresh warm-up from this step and a full decay over the rest of the new budget.
    - auto: stretch where that leaves the lr where it is (wsd before cool-down), keep otherwise.
    """
    if how not in EXTEND:
        raise GptkitError(f"unknown --extend {how!r} (choose from {', '.join(EXTEND)})")
    same_budget = (old.horizon_iters, old.budget_s) == (new.horizon_iters, new.budget_s)
    same_shape = (old.kind, old.lr, old.min_lr, old.warmup_iters, old.cooldown) == (
        new.kind, new.lr, new.min_lr, new.warmup_iters, new.cooldown)
    lr_now = Schedule.from_state(old.state()).lr_at(step, elapsed_s) if step > 0 else old.lr_at(0)
    if same_budget and same_shape and how in ("auto", "keep"):
        return old, f"the {old.kind} schedule continues exactly (lr {lr_now:.3g})"
    if how == "auto":
        stretched = Schedule.from_state({**new.state(), "start_iter": old.start_iter, "start_s": old.start_s,
                                         "warmup_end": old.warmup_end})
        p = stretched.progress(step, elapsed_s)
        if same_shape and new.kind == "wsd" and not old.decaying(old.progress(step, elapsed_s)) \
                and not stretched.decaying(p):
            how = "stretch"
        else:
            how = "keep"
    budget = _budget_words(new)
    if how == "keep":
        kept = Schedule.from_state({**new.state(), "horizon_iters": old.horizon_iters, "budget_s": old.budget_s,
                                    "start_iter": old.start_iter, "start_s": old.start_s,
                                    "warmup_end": old.warmup_end})
        return kept, (f"the {kept.kind} schedule keeps its horizon of {_budget_words(old)} (lr now {lr_now:.3g}, "
                      f"{kept.min_lr:.3g} after it) although the budget is now {budget}; "
                      "--extend stretch spreads it over the new budget, --extend rewarm warms up again")
    if how == "stretch":
        s = Schedule.from_state({**new.state(), "start_iter": old.start_iter, "start_s": old.start_s,
                                 "warmup_end": old.warmup_end})
        lr_new = Schedule.from_state(s.state()).lr_at(step, elapsed_s)
        return s, (f"the {s.kind} schedule is stretched over the new budget of {budget}: the lr goes from "
                   f"{lr_now:.3g} to {lr_new:.3g} at this step")
    s = Schedule.from_state({**new.state(), "start_iter": step, "start_s": elapsed_s, "warmup_end": None})
    return s, (f"re-warming: the lr ramps up again over {s.warmup_iters} steps to {s.lr:.3g} and decays "
               f"({s.kind}) over the rest of the budget of {budget}")


def _budget_words(s: Schedule) -> str:
    parts = []
    if s.horizon_iters is not None:
        parts.append(f"{s.horizon_iters} steps")
    if s.budget_s is not None:
        parts.append(f"{s.budget_s / 60:g} minutes")
    return " or ".join(parts)

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
    """GPT-2's schedule on iterations alone: linear warm-up to cfg.lr, then cosine decay to min_lr
    at lr_decay_iters, then flat (what Schedule gives for an iteration budget, written out)."""
    min_lr = cfg.lr / 10 if cfg.min_lr is None else cfg.min_lr
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    if it >= decay_iters:
        return min_lr
    ratio = (it - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - min_lr)


def fit_warmup(cfg: TrainConfig) -> str | None:
    """A warm-up as long as the iteration budget or longer would never end (the lr would never reach
    its peak, let alone decay): shorten it to a tenth of the budget, and say so (None: it fits)."""
    horizon = cfg.lr_decay_iters or cfg.max_iters
    if cfg.warmup_iters < horizon:
        return None
    old, cfg.warmup_iters = cfg.warmup_iters, horizon // 10
    budget = f"--lr-decay-iters {horizon}" if cfg.lr_decay_iters else f"--max-iters {horizon}"
    return (f"--warmup-iters {old} does not fit in {budget}: warming up over {cfg.warmup_iters} steps instead, "
            "so that warm-up and decay complete inside the budget")


def schedule_for(cfg: TrainConfig) -> Schedule:
    """The schedule the flags ask for (cfg.lr already resolved, see with_default_lr)."""
    min_lr = cfg.lr / 10 if cfg.min_lr is None else cfg.min_lr
    horizon = cfg.lr_decay_iters or cfg.max_iters
    budget = cfg.max_minutes * 60 if cfg.max_minutes is not None else None
    return Schedule(kind=cfg.schedule, lr=cfg.lr, min_lr=min_lr, warmup_iters=cfg.warmup_iters,
                    horizon_iters=horizon, budget_s=budget, cooldown=cfg.cooldown)
