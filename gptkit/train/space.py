"""The search space of `gptkit sweep`: read, checked whole before trial 1, and sampled by Optuna.

A space maps training options to a dimension: `choices = [...]`, or `low`/`high` (with
`log = true` for a log scale). Every dimension is checked up front, naming its key: an unknown
option or key, choices together with a range, an empty space or dimension, a non-finite bound, a
fractional bound of a whole-number option, and any value (each choice, each bound) that the
trainer would refuse with the other options, saving format included. Otherwise a bad space would
show as trials pruned one after another, the reason only inside study.db.

The built-in space searches what the user did not fix: options given as flags or in --config,
and the shape a --preset sets, stay as given.
"""
from __future__ import annotations

import math
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import GptkitError
from .config import RECIPES, TrainConfig

DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "lr": {"low": 3e-4, "high": 1e-2, "log": True},
    "n_layer": {"low": 2, "high": 6},
    "n_embd": {"choices": [64, 128, 192, 256]},
    "batch_size": {"choices": [8, 16, 32]},
    "warmup_iters": {"low": 10, "high": 100, "log": True},
}
RANGE_KEYS = {"low", "high", "log"}
SET_BY_SWEEP = ("data", "out", "resume", "progress", "max_minutes", "init_from")  # per trial, or the study's


def _kind(name: str) -> type:
    """int, float, bool or str: the option's declared type (without None)."""
    hint = typing.get_type_hints(TrainConfig)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return next((t for t in (bool, int, float, str) if t in args), str)


def preset_shape(preset: str | None) -> set[str]:
    """The options a --preset sets (a model size: its shape; a budget recipe: everything it sets)."""
    from ..model import PRESETS
    return set(PRESETS.get(preset or "", {})) | set(RECIPES.get(preset or "", {}))


def load_space(path: str | None, base: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(the space, the built-in dimensions left out because the user fixed them)."""
    if path is None:
        fixed = set(base) | preset_shape(base.get("preset"))
        space = {k: v for k, v in DEFAULT_SPACE.items() if k not in fixed}
        if not space:
            raise GptkitError("every option of the built-in search space is fixed by the flags, --config or "
                              "--preset: nothing to search; give a --space file")
        return space, [k for k in DEFAULT_SPACE if k in fixed]
    from ..cli.args import load_config_file
    space = load_config_file(path, flag="--space")
    if not space:
        raise GptkitError(f"--space {path}: the space is empty: name at least one option to search")
    for name in space:
        if name in base and name not in SET_BY_SWEEP:  # those check_space refuses, saying why
            raise GptkitError(f"--space {path}: {name} is searched, but the flags or --config fix it to "
                              f"{base[name]!r}: drop one")
    return space, []


def check_space(space: dict[str, Any], base: dict[str, Any], source: str) -> None:
    """Every dimension, and every value it can take at its ends, checked (see the module doc)."""
    known = {f.name for f in fields(TrainConfig)}
    for name, spec in space.items():
        where = f"{source}: {name}"
        if name not in known:
            raise GptkitError(f"{where} is not a training option")
        if name in SET_BY_SWEEP:
            raise GptkitError(f"{where} cannot be searched (the sweep sets it)")
        if not isinstance(spec, dict) or not spec:
            raise GptkitError(f"{where} needs choices = [...] or low and high")
        unknown = sorted(set(spec) - RANGE_KEYS - {"choices"})
        if unknown:
            raise GptkitError(f"{where}: unknown key(s) {', '.join(unknown)} (choices, or low, high, log)")
        if "choices" in spec:
            if set(spec) & RANGE_KEYS:
                raise GptkitError(f"{where}: choices cannot be given together with low/high/log")
            values = _choices(spec["choices"], where)
        else:
            values = _bounds(spec, name, where)
        for v in values:
            _check_value(base, name, v, where)


def _choices(choices: Any, where: str) -> list[Any]:
    if not isinstance(choices, list) or not choices:
        raise GptkitError(f"{where}: choices must be a non-empty list")
    for c in choices:
        if not (c is None or isinstance(c, (bool, int, float, str))):
            raise GptkitError(f"{where}: choice {c!r} is not a number, string or boolean")
    if len({repr(c) for c in choices}) < len(choices):
        raise GptkitError(f"{where}: choices {choices} repeat a value")
    return choices


def _bounds(spec: dict[str, Any], name: str, where: str) -> list[Any]:
    kind = _kind(name)
    if kind not in (int, float):
        raise GptkitError(f"{where} is not a number: give choices = [...]")
    if "low" not in spec or "high" not in spec:
        raise GptkitError(f"{where} needs both low and high (or choices = [...])")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    for key, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise GptkitError(f"{where}: {key} must be a finite number, got {v!r}")
        if kind is int and not isinstance(v, int):
            raise GptkitError(f"{where} is a whole number: {key} = {v!r} must be one too")
    if not isinstance(log, bool):
        raise GptkitError(f"{where}: log must be true or false, got {log!r}")
    if not low < high:
        raise GptkitError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise GptkitError(f"{where}: log = true needs low > 0, got {low}")
    return [kind(low), kind(high)]


def _check_value(base: dict[str, Any], name: str, value: Any, where: str) -> None:
    """The trainer's own checks (and the saving format's) for the base options with name = value."""
    from ..hf import check_saveable
    from .config import model_config
    try:
        cfg = TrainConfig.from_dict({**base, name: value}, "the space")
        cfg.validate()
        vocab = _vocab(base.get("data"))
        if vocab is not None and not cfg.init_from:
            check_saveable(model_config(cfg, *vocab))
    except GptkitError as e:
        raise GptkitError(f"{where} = {value!r} cannot train with the other options: {e}") from None


def _vocab(data: str | None) -> tuple[int, int] | None:
    """(vocab_size, eot_id) of a prepared data directory, for the model checks; None if not one."""
    import json
    meta = Path(data) / "meta.json" if data else None
    if meta is None or not meta.is_file():
        return None
    try:
        m = json.loads(meta.read_text())
        return int(m["vocab_size"]), int(m["eot_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # train reports a broken data directory itself


def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One trial's parameters: categorical, int (whole-number options) or float dimensions."""
    params = {}
    for name, spec in space.items():
        if "choices" in spec:
            params[name] = trial.suggest_categorical(name, spec["choices"])
        elif _kind(name) is int:
            params[name] = trial.suggest_int(name, spec["low"], spec["high"], log=bool(spec.get("log")))
        else:
            params[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
    return params
