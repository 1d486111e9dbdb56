"""Whether a command may write an output path: the one place the writing rules live.

Every command that writes (prepare, train, finetune, sweep, lr-find --plot, summarize/translate
--out, score --out, export) asks here first, before any work, and writes only where it says:

- never one of the command's own inputs (the same path after symlinks, or the same file through a
  hard link), nor a directory that holds one;
- never a file or directory holding something gptkit did not write (`ours` says what the command
  itself writes there); --overwrite replaces only what gptkit made;
- never through a dangling symlink, under a path whose part is a file, nor into a directory that
  does not exist (a file's parent must exist; a directory output may be created);
- a symlink to an existing file or directory is followed: the target is written and the link kept.

Each check returns the path to write to (the link's target where `path` is a link).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import OptionError
from .files import check_parent_dirs

PathLike = str | os.PathLike


def _common(path: PathLike, option: str) -> Path:
    """Not empty, not a dangling link, no file above it; a link followed to what it points at."""
    if not str(path):
        raise OptionError(option, "is empty; name the path to write")
    p = Path(path)
    if p.is_symlink():
        if not p.exists():
            raise OptionError(option, f"{p} is a symlink to {os.readlink(p)}, which does not exist: gptkit does "
                              "not write through a dangling link; remove it or choose another path")
        p = p.resolve()
    check_parent_dirs(p, option)
    return p


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def input_clash(out: Path, inputs: Iterable[PathLike | None]) -> str | None:
    """The input that `out` is, or (a directory) holds; None when it is none of them."""
    target = out.resolve()
    for item in inputs:
        if item is None or not str(item):
            continue
        src = Path(item)
        if not (src.exists() or src.is_symlink()):
            continue
        if _same(out, src) or target in src.resolve().parents:
            return str(item)
    return None


def _refuse_input(out: Path, option: str, inputs: Iterable[PathLike | None], shown: PathLike) -> None:
    clash = input_clash(out, inputs)
    if clash is not None:
        what = "is" if _same(out, Path(clash)) else "holds"
        raise OptionError(option, f"{shown} {what} the input {clash}: gptkit never writes over its inputs, "
                          f"--overwrite or not; choose another --{option.replace('_', '-')}")


def output_file(path: PathLike, option: str, *, inputs: Iterable[PathLike | None] = (),
                ours: Callable[[Path], bool] | None = None, overwrite: bool = True, what: str = "file") -> Path:
    """A file output: returns the path to write (a link's target). Refused: an input, a directory, a
    missing parent directory, an existing file that `ours` does not recognise as this command's own
    (any existing file when ours is None), and an existing file of ours without `overwrite`."""
    p = _common(path, option)
    flag = f"--{option.replace('_', '-')}"
    if p.is_dir():
        raise OptionError(option, f"{path} is a directory; name the {what} to write")
    if not p.parent.is_dir():
        raise OptionError(option, f"{path}: the directory {p.parent} does not exist; create it first or choose "
                          "another path")
    _refuse_input(p, option, inputs, path)
    if p.exists():
        if ours is None or not _recognised(ours, p):
            raise OptionError(option, f"{path} exists and gptkit did not write it: gptkit replaces only its own "
                              f"{what}s; move it away or choose another {flag}")
        if not overwrite:
            raise OptionError(option, f"{path} exists; pass --overwrite to replace it")
    return p


def output_dir(path: PathLike, option: str, *, inputs: Iterable[PathLike | None] = (),
               ours: Callable[[Path], bool] = lambda p: False, what: str = "directory", whole: bool = False) -> Path:
    """A directory output: returns the path to write (a link's target). Refused: a file, an input or
    a directory holding one, an existing directory holding any entry `ours` does not recognise as
    this command's own, and (whole: the command replaces the directory itself) the current
    directory or one holding it."""
    p = _common(path, option)
    flag = f"--{option.replace('_', '-')}"
    if p.exists() and not p.is_dir():
        raise OptionError(option, f"{path} exists and is not a directory")
    here, target = Path.cwd().resolve(), p.resolve()
    if whole and (target == here or target in here.parents):
        raise OptionError(option, f"{path} is the current directory (or holds it); write the {what} to a new "
                          "directory")
    _refuse_input(p, option, inputs, path)
    if p.is_dir():
        foreign = sorted(e.name for e in p.iterdir() if not _recognised(ours, e))
        if foreign:
            more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
            raise OptionError(option, f"{path} already holds {foreign[0]}{more}, which gptkit did not write there: "
                              f"choose a new {flag} (gptkit writes only into new, empty or its own directories)")
    return p


def _recognised(ours: Callable[[Path], bool], p: Path) -> bool:
    try:
        return bool(ours(p))
    except (OSError, ValueError, RecursionError):
        return False


# ---------------------------------------------------------------------------- what is ours

PNG_SOFTWARE = "gptkit"


def png_metadata() -> dict[str, str]:
    """savefig(metadata=...) for a plot gptkit writes: its PNG says so (a later run may replace it)."""
    return {"Software": PNG_SOFTWARE}


def is_gptkit_png(p: Path) -> bool:
    """A PNG whose tEXt Software chunk is gptkit's (only the head of the file is read)."""
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        head = f.read(4096)
    return head.startswith(b"\x89PNG\r\n\x1a\n") and b"tEXtSoftware\x00" + PNG_SOFTWARE.encode() in head


def is_json_with(p: Path, *keys: str) -> bool:
    """A JSON object file holding every one of `keys` (what gptkit writes as a report)."""
    import json
    if not p.is_file() or p.stat().st_size > 64 << 20:
        return False
    d = json.loads(p.read_text(encoding="utf-8"))
    return isinstance(d, dict) and all(k in d for k in keys)
