"""Multiple-choice tasks without lm-eval: a JSONL of {"context", "choices", "label"} per question.

Each choice is scored as the continuation " " + choice after the context (the delimiter lm-eval
uses), by its summed log-likelihood (acc) and by that sum per character of the choice (acc_norm,
lm-eval's length normalisation, so that longer answers are not penalised for being long).
`convert_hellaswag` turns HellaSwag's own JSONL (ctx, endings, label) into this format.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import GptkitError
from .loglik import loglikelihood

DELIMITER = " "


@dataclass(frozen=True)
class Question:
    context: str
    choices: tuple[str, ...]
    label: int


@dataclass(frozen=True)
class Task:
    name: str  # the file's stem: the metric names in metrics.jsonl and TensorBoard
    path: Path
    questions: tuple[Question, ...]

    @property
    def chance(self) -> float:
        """The accuracy of guessing: mean of 1 / number of choices."""
        return sum(1 / len(q.choices) for q in self.questions) / len(self.questions)


def _question(obj: Any, where: str) -> Question:
    if not isinstance(obj, dict):
        raise GptkitError(f"{where}: expected a JSON object with context, choices and label")
    ctx, choices, label = obj.get("context"), obj.get("choices"), obj.get("label")
    if not isinstance(ctx, str):
        raise GptkitError(f"{where}: 'context' must be a string")
    if not isinstance(choices, list) or not choices:
        raise GptkitError(f"{where}: 'choices' must be a non-empty list of strings (this question has no choices)")
    if not all(isinstance(c, str) and c for c in choices):
        raise GptkitError(f"{where}: every choice must be a non-empty string")
    if isinstance(label, bool) or not isinstance(label, int):
        raise GptkitError(f"{where}: 'label' must be an integer index into choices, got {label!r}")
    if not 0 <= label < len(choices):
        raise GptkitError(f"{where}: label {label} is out of range for {len(choices)} choices (0..{len(choices) - 1})")
    return Question(ctx, tuple(choices), label)


def load_task(path: str | os.PathLike) -> Task:
    """A task file, every line checked: bad JSON, no choices or a label out of range is one error
    naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise GptkitError(f"{path}: no such task file (a JSONL of {{context, choices, label}})")
    questions = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as e:
                raise GptkitError(f"{path}:{n}: not valid JSON ({e})") from None
            questions.append(_question(obj, f"{path}:{n}"))
    if not questions:
        raise GptkitError(f"{path}: no questions")
    return Task(path.stem, path, tuple(questions))


def load_tasks(paths: str | Sequence[str | os.PathLike]) -> list[Task]:
    """Task files from a list or a comma-separated string; two tasks may not share a name."""
    if isinstance(paths, str):
        paths = [p for p in paths.split(",") if p.strip()]
    tasks = [load_task(p) for p in paths]
    names = [t.name for t in tasks]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise GptkitError(f"two task files are named {dup!r}: their scores would share one name; rename one")
    return tasks


def task_requests(task: Task, tokenizer: Any) -> list[tuple[list[int], list[int]]]:
    """(context ids, choice ids) per choice of every question, in order. An empty context becomes
    the end-of-text token (the model's start of a document)."""
    reqs = []
    for q in task.questions:
        ctx = tokenizer.encode(q.context) or [tokenizer.eot_id]
        reqs += [(ctx, tokenizer.encode(DELIMITER + c)) for c in q.choices]
    return reqs


def check_fits(task: Task, requests: Sequence[tuple[list[int], list[int]]], n_positions: int) -> None:
    """Every choice of every question fits the model's context (checked before any scoring)."""
    i = 0
    for n, q in enumerate(task.questions, 1):
        for ctx, cont in requests[i:i + len(q.choices)]:
            if len(ctx) + len(cont) - 1 > n_positions:
                raise GptkitError(f"{task.path}: question {n} needs {len(ctx) + len(cont) - 1} tokens (context and "
                                  f"choice) but the model's context is {n_positions} tokens")
        i += len(q.choices)


def stderr(acc: float, n: int) -> float:
    """Standard error of a mean of n 0/1 outcomes (the sample standard deviation, as lm-eval)."""
    return math.sqrt(acc * (1 - acc) / (n - 1)) if n > 1 else math.nan


def accuracy(task: Task, logprobs: Sequence[float]) -> dict[str, float]:
    """acc (highest summed log-likelihood), acc_norm (highest per character of the choice), each
    with its standard error, the task's chance accuracy and its size; logprobs per choice, in order."""
    hits = hits_norm = i = 0
    for q in task.questions:
        lps = logprobs[i:i + len(q.choices)]
        norm = [lp / len(c) for lp, c in zip(lps, q.choices)]
        hits += max(range(len(lps)), key=lps.__getitem__) == q.label
        hits_norm += max(range(len(norm)), key=norm.__getitem__) == q.label
        i += len(q.choices)
    n = len(task.questions)
    acc, acc_norm = hits / n, hits_norm / n
    return {"acc": acc, "acc_stderr": stderr(acc, n), "acc_norm": acc_norm,
            "acc_norm_stderr": stderr(acc_norm, n), "chance": task.chance, "n": n}


def score_task(model: torch.nn.Module, task: Task, tokenizer: Any, batch_size: int = 32,
               amp: torch.dtype | None = None) -> dict[str, float]:
    """The task's accuracy (see `accuracy`) under a model and its tokenizer."""
    reqs = task_requests(task, tokenizer)
    check_fits(task, reqs, model.config.n_positions)
    results = loglikelihood(model, reqs, batch_size=batch_size, amp=amp)
    return accuracy(task, [r.logprob for r in results])


def convert_hellaswag(src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """HellaSwag's JSONL (ctx, endings, label; the label as int or string) -> this format, written
    atomically. Returns the number of questions."""
    from ..files import atomic_path
    rows = []
    with open(src, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ex = json.loads(line)
                row = {"context": ex["ctx"], "choices": list(ex["endings"]), "label": int(ex["label"])}
            except (ValueError, KeyError, TypeError) as e:
                raise GptkitError(f"{src}:{n}: not a HellaSwag example (needs ctx, endings, label): {e}") from None
            _question(row, f"{src}:{n}")
            rows.append(row)
    with atomic_path(Path(dst)) as tmp, open(tmp, "w", encoding="utf-8") as out:
        out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return len(rows)
