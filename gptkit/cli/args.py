"""Command-line flags from a dataclass: one source of truth for options, their help and defaults.

Each field carries its help text, and optionally how the command line spells it:

    top_k: int | None = field(default=50, metadata={"help": "keep the k most likely tokens (0: off)"})
    stop: ... = field(default=None, metadata={"help": "...", "cli": {"append": True}})

`cli` may hold: "default" (the command line's default where it differs from the API's), "choices",
"type" (a parser for the string), "parse" (applied after the choices are checked), "append" (a repeatable flag), "flags" (extra spellings, e.g.
"-n"; a field's `aliases` metadata, its older names, are spelled after its own), "positional" (nargs for a positional argument; True for exactly one), "metavar", "required".

`add_dataclass_args` turns every field into a --flag-name whose --help line shows that text and
its default; `from_args` reads the fields back from the parsed flags. With suppress=True, flags
not typed are absent from the result (so that a config file's values are not overridden by
defaults: only flags the user typed win).
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

# --dtype of eval and generate: the same choices, and auto means the same in both
DTYPE_CHOICES = ["auto", "float32", "bfloat16", "float16"]
DTYPE_HELP = ("precision of the computation; auto: the fastest this hardware has natively (bfloat16 on CUDA "
              "and on CPUs with AVX512-BF16 or AMX, else float32)")


def option(value: Any, text: str, /, **cli: Any) -> Any:
    """A dataclass field with its help text and, as keywords, how the command line differs."""
    return dataclasses.field(default=value, metadata={"help": text, **({"cli": cli} if cli else {})})


def _base_type(tp: Any) -> Any:
    """The annotation without None; str where it is a union of several types."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _default(f: dataclasses.Field) -> Any:
    cli = f.metadata.get("cli", {})
    if "default" in cli:
        return cli["default"]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def help_text(f: dataclasses.Field) -> str:
    """The field's help with its default: "what it does (unit) (default: X)"."""
    text = f.metadata.get("help", "")
    cli = f.metadata.get("cli", {})
    if cli.get("required") or cli.get("positional") in ("+", True):
        return text
    d = _default(f)
    shown = cli.get("default_text") or ("none" if d is None else str(d).lower() if isinstance(d, bool) else d)
    return f"{text} (default: {shown})"


def finite_float(text: str) -> float:
    """argparse type: a float that is a real number (inf and nan are refused)."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return x


def json_object(text: str) -> dict[str, Any]:
    """argparse type: a JSON object ('{"rope_type": "linear", "factor": 2.0}')."""
    try:
        d = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r}") from None
    if not isinstance(d, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}")
    return d


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                       suppress: bool = False) -> None:
    """A flag per field of the dataclass `cls`, typed from its annotation, with its help and default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        if "help" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} has no help text (metadata={{'help': ...}})")
        cli = f.metadata.get("cli", {})
        tp = _base_type(hints[f.name])
        kw: dict[str, Any] = {"help": help_text(f)}
        if cli.get("positional"):
            nargs = None if cli["positional"] is True else cli["positional"]
            parser.add_argument(f.name, nargs=nargs, metavar=cli.get("metavar", f.name.upper()), **kw)
            continue
        flags = [*cli.get("flags", ()), *("--" + n.replace("_", "-") for n in (f.name, *f.metadata.get("aliases", ())))]
        kw["default"] = argparse.SUPPRESS if suppress else _default(f)
        if cli.get("required"):
            kw["required"] = True
        if "choices" in cli:
            kw["choices"] = list(cli["choices"])
        if tp is bool and "type" not in cli:
            parser.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction, **kw)
            continue
        if typing.get_origin(tp) is dict:
            tp = dict
        kw["type"] = cli.get("type", {int: int, float: finite_float, dict: json_object}.get(tp, str))
        if cli.get("append"):
            kw["action"] = "append"
        if "choices" not in cli:
            kw["metavar"] = cli.get("metavar", {int: "N", float: "X", dict: "JSON"}.get(tp, "S"))
        parser.add_argument(*flags, dest=f.name, **kw)


def override_default(parser: argparse.ArgumentParser, dest: str, value: Any) -> None:
    """A flag's default changed for one command, in its --help line too (set_defaults alone would
    leave the help naming the dataclass's default)."""
    for action in parser._actions:
        if action.dest == dest:
            action.default = value
            if action.help:
                action.help = action.help.rsplit(" (default: ", 1)[0] + f" (default: {value})"
            return
    raise KeyError(dest)


def from_args(cls: type, args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The field values of `cls` found in `args` (the parsed flags), over `base`."""
    values = dict(base or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k, v in vars(args).items():
        if k in fields:
            parse = fields[k].metadata.get("cli", {}).get("parse")
            values[k] = parse(v) if parse is not None and isinstance(v, str) else v
    return values


def load_config_file(path: str, flag: str = "--config") -> dict[str, Any]:
    """A JSON or TOML file of options (flag: the command-line name the errors give it)."""
    p = Path(path)
    if p.is_dir():
        raise GptkitError(f"{flag} {p}: a directory, not a JSON or TOML file")
    if not p.is_file():
        raise GptkitError(f"{flag} {p}: {'config ' if flag == '--config' else ''}file not found")
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".toml":
            import tomllib
            d = tomllib.loads(text)
        else:
            d = json.loads(text)
    except RecursionError:
        raise GptkitError(f"{flag} {p}: nested too deeply to be a config file") from None
    except Exception as e:
        raise GptkitError(f"{flag} {p}: cannot parse ({e})") from None
    if not isinstance(d, dict):
        raise GptkitError(f"{flag} {p}: expected an object of option names and values, got a {type(d).__name__}")
    return d


def command_options(cls: type, args: argparse.Namespace, base: dict[str, Any], source: str) -> None:
    """A command's own options (cls: its dataclass, added with suppress=True) onto `args`: the flag
    where the user typed one, else the --config file's value (taken out of `base`, type-checked), else
    the default. A config file so takes every name the command's flags take."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "config":
            if f.name in base:
                raise GptkitError(f"{source}: config cannot name another config file")
            setattr(args, f.name, getattr(args, f.name, None))
            continue
        if f.name in base:
            value = base.pop(f.name)
            if f.name not in vars(args):
                _check_type(f.name, value, hints[f.name], source)
                setattr(args, f.name, value)
        elif f.name not in vars(args):
            setattr(args, f.name, _default(f))


def _check_type(name: str, value: Any, tp: Any, source: str) -> None:
    optional = typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)
    base = _base_type(tp)
    if value is None and optional:
        return
    ok = isinstance(value, base) and not (base is int and isinstance(value, bool))
    if not ok:
        want = {int: "a whole number", bool: "true or false", str: "a string", float: "a number"}.get(base, base.__name__)
        raise GptkitError(f"{source}: {name} must be {want}, got {value!r}")
