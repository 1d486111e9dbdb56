"""How a run stops when it must: Ctrl-C saves a checkpoint after the step in progress, a diverged
run (a non-finite loss) stops with one line and keeps its last good checkpoint, and the numbers a
run reports say how much of the validation split they cover.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from ..distributed import Runtime
from ..errors import GptkitError
from ..rundir import RunFiles


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: the step in progress finished and a checkpoint was saved."""


@contextlib.contextmanager
def interrupts(rt: Runtime) -> Iterator[list[bool]]:
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
    n, total = val.get("eval_tokens", 0), val.get("split_tokens")
    if val.get("whole_split"):
        return f"the whole val split: {n:,} tokens"
    return f"the first {n:,} of {total:,} val tokens" if total else f"{n:,} val tokens"


def diverged(files: RunFiles, what: str) -> None:
    """Stop a run whose loss is no longer a number, saying which checkpoint is kept."""
    last = files.last.resolve().name if files.last.exists() else None
    kept = (f"the last good checkpoint ({last}) is kept in {files.root}; resume from it with a lower --lr"
            if last else "no checkpoint was saved; start again with a lower --lr")
    raise GptkitError(f"{what}: the run diverged and was stopped; {kept}")
