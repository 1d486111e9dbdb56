"""Command-line flags from a dataclass: one source of truth for options, their help and defaults.

Each field is `field(default=..., metadata={"help": "what it does (unit)"})`; `add_dataclass_args`
turns every field into a `--flag-name` whose --help line shows that text and the default, and
`from_args` builds the dataclass back from the parsed flags (plus an optional config file).
Flags left unset on the command line are SUPPRESSed, so a config file's values are not
overridden by defaults: only flags the user typed win.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

from ..errors import GptkitError


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(the type without Optional, whether None is allowed)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return tp, False


def _help(f: dataclasses.Field) -> str:
    text = f.metadata.get("help", "")
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        default = f.default_factory()  # type: ignore[misc]
    else:
        return text
    shown = "none" if default is None else default
    return f"{text} (default: {shown})" if text else f"(default: {shown})"


def finite_float(text: str) -> float:
    """argparse type: a float that is a real number (inf and nan are refused)."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return x


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """A --flag per field of `cls` (a dataclass), typed from its annotation, with its help and default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        flag = "--" + f.name.replace("_", "-")
        tp, _ = _base_type(hints[f.name])
        kw: dict[str, Any] = {"default": argparse.SUPPRESS, "help": _help(f)}
        choices = f.metadata.get("choices")
        if choices:
            kw["choices"] = list(choices)
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif tp in (int, float):
            parser.add_argument(flag, type=int if tp is int else finite_float, metavar=f.metadata.get("metavar", "N" if tp is int else "X"), **kw)
        else:
            parser.add_argument(flag, metavar=None if choices else f.metadata.get("metavar", "S"), **kw)


def from_args(cls: type, args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The field values of `cls` found in `args` (flags given on the command line), over `base`."""
    values = dict(base or {})
    names = {f.name for f in dataclasses.fields(cls)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return values


def load_config_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise GptkitError(f"--config {p}: config file not found")
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".toml":
            import tomllib
            d = tomllib.loads(text)
        else:
            d = json.loads(text)
    except RecursionError:
        raise GptkitError(f"--config {p}: nested too deeply to be a config file") from None
    except Exception as e:
        raise GptkitError(f"--config {p}: cannot parse ({e})") from None
    if not isinstance(d, dict):
        raise GptkitError(f"--config {p}: expected an object of option names and values, got a {type(d).__name__}")
    return d
