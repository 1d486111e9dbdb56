"""Continuous batching: the scheduler behind `gptkit serve`, over gptkit's one engine.

One thread owns the model and the engine (gptkit/engine: KV cache, prefix cache, sampler, stop
strings, detokenising). Requests are queued (bounded); between two decode steps the scheduler
admits queued sequences into free rows (the engine prefills each prompt once, its cached prefix
copied from the prefix cache, and copies it to its other samples when n > 1), runs one decode step
for every running row together, and retires the rows that finished or whose client went away. So a
request joins and leaves the running batch at step boundaries: nobody waits for a batch to fill or
for another request to end. The same request with the same seed gives the same tokens here as
from model.generate and `gptkit generate` (the engine's sampler, sample j seeded with seed + j).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from ..engine import Engine as Core
from ..engine import Event, PrefixCache, SamplingParams, Seq, TokenInfo
from ..errors import GptkitError

log = logging.getLogger("gptkit.serve")

__all__ = ["Engine", "Event", "QueueFull", "Request", "SamplingParams", "TokenInfo"]


class Request:
    """A submitted request: its sequences (one per prompt and sample) and how to reach its caller."""

    def __init__(self, prompts: list[list[int]], params: SamplingParams, n: int,
                 emit: Callable[[Event], None], token_text: Any) -> None:
        self.prompts, self.params, self.n, self.emit = prompts, params, n, emit
        self.cancelled = False
        self.created = time.monotonic()
        self.pending = [Seq(p, params, token_text, index=i * n + j, sample=j, emit=emit, owner=self)
                        for i, p in enumerate(prompts) for j in range(n)]

    def cancel(self) -> None:
        """Stop generating (the client left or timed out); the engine frees the rows at its next step."""
        self.cancelled = True
        for s in self.pending:
            s.cancelled = True


class QueueFull(Exception):
    pass


class Engine:
    """The batching scheduler. submit() from any thread; a background thread does the work."""

    def __init__(self, model: Any, tokenizer: Any, max_batch: int = 16, max_queue: int = 64,
                 prefix_cache_bytes: int = 256 << 20) -> None:
        if max_batch < 1 or max_queue < 1:
            raise GptkitError("max_batch and max_queue must be >= 1")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_batch, self.max_queue = max_batch, max_queue
        prefix = PrefixCache(model, prefix_cache_bytes) if prefix_cache_bytes else None
        self.core = Core(model, tokenizer, max_rows=max_batch, prefix_cache=prefix)
        self.queue: collections.deque[Request] = collections.deque()
        self.cv = threading.Condition()
        self.stopping = False
        self.thread: threading.Thread | None = None
        self.external = False  # run() is called by the owner (serve's main thread): start() spawns nothing
        self.looping = False

    # ------------------------------------------------------------------ public
    def start(self) -> None:
        """Run the loop on a thread of its own, unless the owner runs it (external)."""
        if not self.external:
            self.looping = True  # alive from here: a /health right after start-up must not see a 503
            self.thread = threading.Thread(target=self.run, name="gptkit-engine", daemon=True)
            self.thread.start()

    def stop(self) -> None:
        with self.cv:
            self.stopping = True
            self.cv.notify_all()
        if self.thread is not None:
            self.thread.join(timeout=30)

    @property
    def queued(self) -> int:
        return len(self.queue)

    @property
    def running(self) -> int:
        return len(self.core.rows)

    @property
    def steps(self) -> int:
        return self.core.steps

    @property
    def tokens_generated(self) -> int:
        return self.core.tokens_generated

    def alive(self) -> bool:
        return self.looping

    def submit(self, prompts: list[list[int]], params: SamplingParams, n: int,
               emit: Callable[[Event], None]) -> Request:
        """Queue a request (prompts already checked against the context); QueueFull when the
        queue holds max_queue requests already."""
        req = Request(prompts, params, n, emit, self.core.token_text)
        with self.cv:
            if len(self.queue) >= self.max_queue:
                raise QueueFull(f"the server's queue is full ({self.max_queue} requests waiting)")
            self.queue.append(req)
            self.cv.notify_all()
        return req

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        """The scheduler's loop, until stop(). On whichever thread calls it: `gptkit serve` calls it
        on the main thread (a decode step measured ~2x slower on a thread that is not the main one
        on a 2-core CPU, oneDNN and OpenMP underneath), tests and other hosts through start()."""
        self.looping = True
        try:
            self._loop()
        finally:
            self.looping = False

    def _loop(self) -> None:
        grad = torch.is_grad_enabled()
        torch.set_grad_enabled(False)  # thread-local: this thread infers while the loop runs
        try:
            self._steps()
        finally:
            torch.set_grad_enabled(grad)
        self._fail_all("the server is shutting down", include_queue=True)

    def _steps(self) -> None:
        with torch.inference_mode():
            while True:
                with self.cv:
                    while not self.stopping and not self.core.rows and not self.queue:
                        self.cv.wait(timeout=1.0)
                    if self.stopping:
                        break
                try:
                    self._admit()
                    self._retire()
                    if self.core.rows:
                        self._step()
                        self._retire()
                except Exception as e:  # a bug or out-of-memory: fail who is in flight, keep serving
                    log.exception("engine step failed")
                    self._fail_all(f"internal error while generating: {type(e).__name__}: {e}")

    def _step(self) -> None:
        self.core.step()

    def _retire(self) -> None:
        for s in self.core.rows:
            if s.owner.cancelled:
                s.cancelled = True
        self.core.retire()

    def _fail_all(self, message: str, include_queue: bool = False) -> None:
        reqs = {id(s.owner): s.owner for s in self.core.rows}
        self.core.rows = []
        if include_queue:
            with self.cv:
                reqs.update({id(r): r for r in self.queue})
                self.queue.clear()
        for r in reqs.values():
            r.emit(Event("error", message=message))

    def _admit(self) -> None:
        core = self.core
        while core.free:
            with self.cv:
                while self.queue and self.queue[0].cancelled:
                    self.queue.popleft()
                if not self.queue:
                    return
                req = self.queue[0]
                group = [req.pending[0]]
                for s in req.pending[1:core.free]:  # the following samples of the same prompt share a prefill
                    if s.prompt is not group[0].prompt:
                        break
                    group.append(s)
                del req.pending[:len(group)]
                if not req.pending:
                    self.queue.popleft()
            core.add(group)
