"""Hyperparameter search with Optuna: TPE sampling, pruning of hopeless trials from their
intermediate val loss, every trial a normal run directory, results as a table, a plot, TensorBoard
hparams and the best config as a file that `gptkit train --config` accepts.

The study lives in `<out>/study.db` (Optuna's RDB storage on SQLite), so a sweep that is killed
resumes where it stopped: rerun the same command. A trial that was running when its process died
is marked failed and queued again with the same parameters; the new trial continues the dead
one's run directory from its last checkpoint (the time-budget schedule resumes exactly). Several
processes may run the same command at once: they share the study and stop at --trials in all.

Trials are compared at equal budget fractions: intermediate values are reported at the schedule's
progress (0-1000 per mille of the budget), which is what the median pruner compares across trials.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GptkitError
from ..files import atomic_path, write_json
from ..outputs import png_metadata
from .config import TrainConfig
from .space import check_space, load_space, suggest

STUDY = "gptkit-sweep"


@dataclass
class SweepResult:
    table: str
    best_trial: int
    best_value: float
    best_config: Path
    plot: Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _requeue_dead_trials(study: Any) -> None:
    """RUNNING trials whose process is gone (a killed sweep): fail them and queue their params
    again, pointing the new trial at the old run directory so it resumes from its checkpoint."""
    from optuna.trial import TrialState
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid, host = t.user_attrs.get("pid"), t.user_attrs.get("host")
        if host != socket.gethostname() or not isinstance(pid, int) or _alive(pid):
            continue
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"resume_dir": t.user_attrs.get("run_dir", ""),
                                                  "requeued_from": t.number})


# What a sweep directory holds: all of it written by the sweep (sweep.json first, before any trial).
SWEEP_FILES = {"sweep.json", "study.db", "study.db-journal", "study.db-wal", "study.db-shm", "results.csv",
               "sweep.png", "best.toml", "tb"}
_TRIAL = re.compile(r"trial-\d{3,}")
_TEMP = re.compile(r"\.(results\.csv|sweep\.png|best\.toml|sweep\.json)\..*\.tmp")


def check_sweep_out(out: str | Path, inputs: list[Any] = ()) -> Path:
    """--out: a new or empty directory, or a sweep's (its sweep.json and nothing but what the sweep
    writes): never a directory of the user's files, an input, nor a training run."""
    from ..outputs import output_dir
    root = Path(out)

    def ours(p: Path) -> bool:
        if not (root / "sweep.json").is_file():
            return False
        return p.name in SWEEP_FILES or bool(_TRIAL.fullmatch(p.name) and p.is_dir()) or bool(_TEMP.fullmatch(p.name))
    return output_dir(out, "out", inputs=inputs, ours=ours, what="sweep")


def sweep(base: dict[str, Any], out: str | Path, budget_minutes: float, trials: int, space_file: str | None = None,
          seed: int = 0, progress: bool = True, config_source: str = "flags") -> SweepResult:
    import optuna

    from .loop import train
    if not (math.isfinite(budget_minutes) and budget_minutes > 0):
        raise GptkitError(f"--budget-minutes must be > 0, got {budget_minutes}")
    if trials < 1:
        raise GptkitError(f"--trials must be >= 1, got {trials}")
    out = Path(out)
    base = {k: v for k, v in base.items() if k not in ("out", "resume", "progress")}
    space, fixed = load_space(space_file, base)
    base.setdefault("max_iters", 1_000_000_000)
    TrainConfig.from_dict({**base, "max_minutes": budget_minutes}, config_source).validate()  # fail before trial 1
    check_space(space, {**base, "max_minutes": budget_minutes},
                f"--space {space_file}" if space_file else "the built-in space")
    if fixed and progress:
        print(f"sweep: {', '.join(fixed)} fixed by the flags (not searched)", flush=True)
    settings = {"base": base, "budget_minutes": budget_minutes, "space": space}
    out = check_sweep_out(out, [base.get("data"), base.get("init_from"), space_file])
    out.mkdir(parents=True, exist_ok=True)
    settings_file = out / "sweep.json"
    if settings_file.is_file():
        try:
            before = json.loads(settings_file.read_text(encoding="utf-8"))
        except (ValueError, RecursionError):
            before = None
        if before != json.loads(json.dumps(settings)):
            raise GptkitError(f"{out} holds a sweep started with other options (see {settings_file}); "
                              "rerun it with the same ones to resume it, or choose another --out")
    else:
        write_json(settings_file, settings)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=STUDY, storage=f"sqlite:///{out / 'study.db'}", load_if_exists=True, direction="minimize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=250))
    # A rerun (of a killed sweep, or with more --trials) draws on from where the study is, not from
    # the seed's first draw again: that would repeat the configurations already tried.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.get_trials(deepcopy=False)),
                                               n_startup_trials=min(5, trials))
    _requeue_dead_trials(study)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    tb = _writer(out)

    def refused(trial: Any, e: GptkitError) -> float:
        """A combination of values the trainer refuses (each value alone was checked): said, then pruned."""
        import sys
        trial.set_user_attr("error", str(e))
        print(f"sweep: trial {trial.number} pruned: {e}", file=sys.stderr, flush=True)
        raise optuna.TrialPruned(str(e))

    def objective(trial: Any) -> float:
        params = suggest(trial, space)
        resume_dir = trial.user_attrs.get("resume_dir")
        run_dir = Path(resume_dir) if resume_dir else out / f"trial-{trial.number:03d}"
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("run_dir", str(run_dir))
        resume = (run_dir / "checkpoints" / "last").exists()
        try:
            cfg = TrainConfig.from_dict({**base, **params, "out": str(run_dir), "max_minutes": budget_minutes,
                                         "resume": resume, "progress": False}, config_source)
        except GptkitError as e:
            return refused(trial, e)
        if progress:
            print(f"sweep: trial {trial.number} ({'resuming ' + str(run_dir) if resume else run_dir}): "
                  + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()), flush=True)

        def on_eval(step: int, val: dict[str, float], p: float) -> bool:
            trial.report(val["loss"], step=min(1000, int(round(p * 1000))))
            return trial.should_prune()
        try:
            result = train(cfg, on_eval=on_eval)
        except GptkitError as e:  # a combination the trainer refuses (before its first step)
            return refused(trial, e)
        value = result.val.get("loss", math.nan)
        if tb is not None:
            tb.add_scalar("sweep/val_loss", value, trial.number)
            tb.add_hparams({k: v for k, v in params.items()}, {"hparam/val_loss": value},
                           run_name=f"trial-{trial.number:03d}")
            tb.flush()
        if result.stopped_by == "on_eval":
            raise optuna.TrialPruned(f"pruned at step {result.step}")
        if not math.isfinite(value):
            raise optuna.TrialPruned("non-finite val loss")
        return value

    done = sum(t.state in finished for t in study.get_trials(deepcopy=False))
    if done < trials:
        study.optimize(objective, n_trials=trials - done, catch=(),
                       callbacks=[optuna.study.MaxTrialsCallback(trials, states=finished)])
    if tb is not None:
        tb.close()
    return _report(study, out, base, budget_minutes)


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _writer(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tb"))


def _report(study: Any, out: Path, base: dict[str, Any], budget_minutes: float) -> SweepResult:
    from optuna.trial import TrialState
    trials = study.get_trials(deepcopy=False)
    names = sorted({k for t in trials for k in t.params})
    header = ["trial", "state", "val_loss", *names, "minutes"]
    rows = []
    for t in trials:
        minutes = (t.datetime_complete - t.datetime_start).total_seconds() / 60 if t.datetime_complete and \
            t.datetime_start else float("nan")
        value = t.value if t.value is not None else (t.intermediate_values[max(t.intermediate_values)]
                                                     if t.intermediate_values else float("nan"))
        rows.append([t.number, t.state.name.lower(), value, *[t.params.get(n, "") for n in names], minutes])
    with atomic_path(out / "results.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    widths = [max(len(str(h)), *(len(_cell(r[i])) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(_cell(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise GptkitError(f"no trial of the sweep in {out} completed (all were pruned or failed); see results.csv")
    best = min(complete, key=lambda t: t.value)
    best_cfg = {**base, **best.params, "max_minutes": budget_minutes}
    best_file = out / "best.toml"
    with atomic_path(best_file) as tmp:
        tmp.write_text(f"# gptkit sweep: best of {len(complete)} complete trials, trial {best.number}, "
                       f"val loss {best.value:.4f}\n# gptkit train --config {best_file}\n" + _toml(best_cfg))
    plot = _plot(trials, out / "sweep.png")
    return SweepResult("\n".join(lines), best.number, best.value, best_file, plot)


def _cell(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _toml(d: dict[str, Any]) -> str:
    lines = []
    for k, v in sorted(d.items()):
        if v is None:
            continue
        lines.append(f"{k} = {json.dumps(v) if not isinstance(v, float) else repr(v)}")
    return "\n".join(lines) + "\n"


def _plot(trials: list[Any], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    fig, ax = plt.subplots(figsize=(7, 4))
    done = [(t.number, t.value) for t in trials if t.state == TrialState.COMPLETE]
    pruned = [(t.number, t.intermediate_values[max(t.intermediate_values)]) for t in trials
              if t.state == TrialState.PRUNED and t.intermediate_values]
    if done:
        ax.plot(*zip(*done), "o", label="complete")
        best, line = math.inf, []
        for n, v in sorted(done):
            best = min(best, v)
            line.append((n, best))
        ax.step(*zip(*line), where="post", label="best so far")
    if pruned:
        ax.plot(*zip(*pruned), "x", color="C3", label="pruned (last value)")
    ax.set_xlabel("trial")
    ax.set_ylabel("val loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata=png_metadata())
    plt.close(fig)
    return path
