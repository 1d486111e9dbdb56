"""Multiple-choice accuracy at every evaluation of a training run (`gptkit train --eval-tasks`).

The task files are read, checked and tokenised once, before step 1; each evaluation then scores
them all and returns metrics named task/<name>/acc, task/<name>/acc_norm (metrics.jsonl,
TensorBoard, the accuracy panel of loss.png) and task_s, the seconds the scoring took.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from .loglik import loglikelihood
from .mc import Task, accuracy, check_fits, load_tasks, task_requests

PREFIX = "task/"


class TaskScorer:
    def __init__(self, tasks: list[Task], tokenizer: Any, n_positions: int, batch_size: int = 32) -> None:
        self.tasks = tasks
        self.batch_size = batch_size
        self.requests = [task_requests(t, tokenizer) for t in tasks]
        for task, reqs in zip(tasks, self.requests):
            check_fits(task, reqs, n_positions)

    @classmethod
    def open(cls, spec: str | None, tokenizer: Any, n_positions: int, batch_size: int = 32) -> TaskScorer | None:
        """The scorer of a comma-separated list of task files; None for no tasks."""
        if not spec:
            return None
        return cls(load_tasks(spec), tokenizer, n_positions, batch_size)

    def __call__(self, model: torch.nn.Module, amp: torch.dtype | None = None) -> dict[str, float]:
        t0 = time.perf_counter()
        out: dict[str, float] = {}
        for task, reqs in zip(self.tasks, self.requests):
            r = accuracy(task, [x.logprob for x in loglikelihood(model, reqs, self.batch_size, amp)])
            out[f"{PREFIX}{task.name}/acc"] = r["acc"]
            out[f"{PREFIX}{task.name}/acc_norm"] = r["acc_norm"]
        out["task_s"] = time.perf_counter() - t0
        return out
