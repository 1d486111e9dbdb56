"""Run benchmark tasks on a model: gptkit's own multiple-choice files (.jsonl, no lm-eval needed)
and lm-evaluation-harness tasks (a registered name, or a local .yaml task file), one result shape.

A result per task: acc and its standard error (and acc_norm where the task has it), the number of
questions and the accuracy of guessing (`chance`, 0 for tasks that are not multiple choice).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GptkitError
from . import mc


@dataclass(frozen=True)
class TaskSpec:
    """One --tasks entry: what the user wrote, its kind ("jsonl" | "yaml" | "lm_eval") and, for
    lm-eval tasks, the name lm-eval knows it by."""
    given: str
    kind: str
    name: str
    path: Path | None = None


def parse_tasks(tasks: str) -> list[TaskSpec]:
    """Comma-separated names or files; a file must exist, a name is checked against lm-eval later."""
    specs = []
    for item in (t.strip() for t in tasks.split(",")):
        if not item:
            continue
        suffix = Path(item).suffix.lower()
        if suffix in (".jsonl", ".yaml", ".yml"):
            path = Path(item)
            if not path.is_file():
                raise GptkitError(f"task file {item} not found")
            kind = "jsonl" if suffix == ".jsonl" else "yaml"
            specs.append(TaskSpec(item, kind, _yaml_task_name(path) if kind == "yaml" else path.stem, path))
        else:
            specs.append(TaskSpec(item, "lm_eval", item))
    if not specs:
        raise GptkitError("--tasks is empty: give task names or files, comma-separated")
    names = [s.name for s in specs]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise GptkitError(f"two tasks are named {dup!r}: their results would share one name")
    return specs


def _yaml_task_name(path: Path) -> str:
    import yaml

    class TaskLoader(yaml.SafeLoader):
        """Safe YAML that reads lm-eval's `!function module.name` tags as plain strings (only the
        task's name is read here; lm-eval resolves the functions itself)."""
    TaskLoader.add_multi_constructor("!", lambda loader, tag, node: None)
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=TaskLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as e:
        raise GptkitError(f"{path}: not a readable YAML task file ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("task"), str):
        raise GptkitError(f"{path}: an lm-eval task file needs a 'task: NAME' line")
    return doc["task"]


def task_manager(specs: list[TaskSpec]) -> Any:
    """lm-eval's TaskManager over the YAML files' folders, with lm-eval's own tasks indexed only
    when a task is given by name (indexing them takes about 10 s); unknown names are refused."""
    from lm_eval.tasks import TaskManager
    folders = sorted({str(s.path.resolve().parent) for s in specs if s.kind == "yaml"})
    by_name = [s for s in specs if s.kind == "lm_eval"]
    tm = TaskManager(include_path=folders or None, include_defaults=bool(by_name))
    known = set(tm.all_tasks)
    for s in specs:
        if s.kind != "jsonl" and s.name not in known:
            where = f"{s.path} names task {s.name!r}, which lm-eval could not load" if s.path else \
                f"unknown task {s.name!r}: not an lm-eval task (`lm_eval ls tasks` lists them) nor a .jsonl/.yaml file"
            raise GptkitError(where)
    return tm


def run_tasks(model: Any, tokenizer: Any, specs: list[TaskSpec], batch_size: int = 32, dtype: str = "auto",
              limit: int | None = None, num_fewshot: int | None = None,
              debug: bool = False) -> dict[str, dict[str, float]]:
    """Each task's result (see module docstring), in the order given. Task files are all read, and
    lm-eval's task names checked, before anything is scored."""
    from ..device import autocast_dtype
    jsonl = {s.name: mc.load_task(s.path) for s in specs if s.kind == "jsonl"}
    harness = [s for s in specs if s.kind != "jsonl"]
    tm = task_manager(harness) if harness else None
    amp = autocast_dtype(dtype, model.device)
    out: dict[str, dict[str, float]] = {}
    for name, task in jsonl.items():
        if limit is not None:
            task = mc.Task(task.name, task.path, task.questions[:limit])
        out[name] = mc.score_task(model, task, tokenizer, batch_size=batch_size, amp=amp)
    if harness:
        from .harness import GptkitLM
        lm = GptkitLM(model=model, tokenizer=tokenizer, batch_size=batch_size, dtype=dtype)
        out.update(_run_lm_eval(lm, harness, tm, limit, num_fewshot, debug))
    return {s.name: out[s.name] for s in specs}


def _run_lm_eval(lm: Any, specs: list[TaskSpec], tm: Any, limit: int | None, num_fewshot: int | None,
                 debug: bool) -> dict[str, dict[str, float]]:
    from lm_eval import simple_evaluate
    if not debug:
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
    r = simple_evaluate(model=lm, tasks=[s.name for s in specs], num_fewshot=num_fewshot, limit=limit,
                        task_manager=tm, log_samples=True, verbosity="ERROR" if not debug else None)
    return {s.name: _lm_eval_result(r["results"].get(s.name, {}), r["samples"].get(s.name, []))
            for s in specs}


def _lm_eval_result(metrics: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, float]:
    res: dict[str, float] = {}
    for key, value in metrics.items():
        name, _, filt = key.partition(",")
        if filt and isinstance(value, (int, float)) and not isinstance(value, bool):
            res.setdefault(name, float(value))
    mcq = [s for s in samples if len(s.get("resps", [])) > 1]
    res["n"] = len(samples)
    res["chance"] = sum(1 / len(s["resps"]) for s in mcq) / len(samples) if mcq and len(mcq) == len(samples) else 0.0
    return res


def table(results: dict[str, dict[str, float]]) -> str:
    """A plain-text table: task, n, acc ± se, acc_norm ± se, chance."""
    rows = [("task", "n", "acc", "acc_norm", "chance")]
    for name, r in results.items():
        rows.append((name, str(int(r.get("n", 0))), _pm(r, "acc"), _pm(r, "acc_norm"), f"{r.get('chance', 0):.3f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def _pm(r: dict[str, float], key: str) -> str:
    if key not in r:
        return "-"
    se = r.get(f"{key}_stderr")
    return f"{r[key]:.4f} ± {se:.4f}" if isinstance(se, float) and se == se else f"{r[key]:.4f}"
