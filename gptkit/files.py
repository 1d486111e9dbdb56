"""Atomic writes: a file is written under a temporary name in its own directory, flushed to disk
and renamed over the target, so readers (and a run killed at any moment) see the old file or the
new one, never half of one."""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_umask = os.umask(0)
os.umask(_umask)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name: a later run can tell a dead writer's leftovers (remove_stale).
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        try:
            yield Path(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        except OSError as e:  # a full disk, say: the line names the file, not a temporary or nothing
            if e.filename is not None and e.filename != tmp:
                raise
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        except RuntimeError as e:  # torch.save reports a failed write so
            if "write" not in str(e):
                raise
            raise OSError(errno.EIO, f"cannot write ({e}; is the disk full?)", str(path)) from None
        os.chmod(tmp, 0o666 & ~_umask)  # mkstemp makes 0600 files; models are shared like any file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def finite(x: Any) -> Any:
    """x with NaN and infinities as None, through dicts, lists and tuples: strict JSON has neither."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def check_parent_dirs(path: str | os.PathLike, option: str) -> None:
    """A path that can become a directory: no existing part of it above it is a file."""
    from .errors import OptionError
    for parent in Path(path).absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise OptionError(option, f"{path}: {parent} is a file, not a directory")
            return


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


_PID = re.compile(r"(\d+)(?:\.|$)")


def remove_stale(directory: str | os.PathLike, *prefixes: str) -> list[Path]:
    """Remove what a killed gptkit left in `directory`: entries named `prefix...` whose writer (the pid
    in the name: `.x.tmp-PID`, `.x.old-PID`, `.x.PID.abc.tmp`) is no longer running. Returns them."""
    import shutil
    directory = Path(directory)
    removed = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for p in entries:
        if not p.name.startswith(prefixes):
            continue
        m = _PID.match(p.name[len(next(x for x in prefixes if p.name.startswith(x))):])
        if m is None or int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))):
            continue
        try:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed
