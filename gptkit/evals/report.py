"""The report card: REPORT.md and report.json for one model — bits per byte on the given data, each
task's accuracy with its standard error, a centred-accuracy aggregate, and published figures for
GPT-2 124M to compare against.

Centred accuracy is (acc - chance) / (1 - chance): 0 is guessing, 1 is every answer right, so tasks
with 2 and 4 choices can be averaged (nanochat's CORE metric averages it the same way). The metric
centred is acc_norm where a task has it (the usual figure for HellaSwag-style completions), else acc.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..files import atomic_path, finite

# Published zero-shot figures for GPT-2 124M, with where they come from.
REFERENCES = [
    {"model": "GPT-2 124M", "task": "hellaswag", "acc": 0.2892, "acc_norm": 0.3114,
     "source": "lm-evaluation-harness (multiple-choice style), as quoted in llm.c dev/data/hellaswag.py"},
    {"model": "GPT-2 124M", "task": "hellaswag", "acc": 0.2859, "acc_norm": 0.2955,
     "source": "llm.c dev/data/hellaswag.py (completion style, 10,042 validation items)"},
]


def centred(result: dict[str, float]) -> float | None:
    """(acc - chance) / (1 - chance) of the task's headline metric; None where chance is unknown."""
    chance = result.get("chance", 0.0)
    acc = result.get("acc_norm", result.get("acc"))
    if acc is None or chance >= 1:
        return None
    return (acc - chance) / (1 - chance)


def build_report(model: str, results: dict[str, dict[str, float]], loss: dict[str, Any] | None = None,
                 settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """report.json's content: settings, the data figures (if any), per-task results with their
    centred accuracy, the aggregate (mean centred accuracy over tasks) and the references."""
    tasks = {name: {**r, "centred": centred(r)} for name, r in results.items()}
    scores = [t["centred"] for t in tasks.values() if t["centred"] is not None]
    return {"model": model, "settings": settings or {}, "data": loss, "tasks": tasks,
            "centred_accuracy": sum(scores) / len(scores) if scores else None,
            "references": REFERENCES}


def _num(v: Any, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Report card: {report['model']}", ""]
    s = report["settings"]
    if s:
        lines += ["Settings: " + ", ".join(f"{k} {v}" for k, v in s.items()), ""]
    d = report["data"]
    if d:
        lines += [(f"Data: {d['data']} ({d['split']} split, {d['eval_tokens']:,} tokens): loss {_num(d['loss'])} "
                  f"nats/token, perplexity {_num(d['perplexity'], 2)}, **{_num(d['bits_per_byte'])} bits per byte**"), ""]
    lines += ["| task | n | acc | acc_norm | chance | centred |", "|---|---:|---:|---:|---:|---:|"]
    for name, t in report["tasks"].items():
        acc = f"{_num(t.get('acc'))} ± {_num(t.get('acc_stderr'))}" if "acc" in t else "-"
        norm = f"{_num(t.get('acc_norm'))} ± {_num(t.get('acc_norm_stderr'))}" if "acc_norm" in t else "-"
        lines.append(f"| {name} | {int(t.get('n', 0))} | {acc} | {norm} | {_num(t.get('chance'), 3)} "
                     f"| {_num(t['centred'], 3)} |")
    lines += ["", f"Centred accuracy (mean over tasks, 0 = chance, 1 = perfect): **{_num(report['centred_accuracy'], 3)}**",
              "", "## Published figures for comparison", "", "| model | task | acc | acc_norm | source |",
              "|---|---|---:|---:|---|"]
    lines += [f"| {r['model']} | {r['task']} | {r['acc']:.4f} | {r['acc_norm']:.4f} | {r['source']} |"
              for r in report["references"]]
    return "\n".join(lines) + "\n"


def write_report(directory: str | Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """REPORT.md and report.json in `directory` (created), each written atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    md, js = directory / "REPORT.md", directory / "report.json"
    with atomic_path(js) as tmp:
        tmp.write_text(json.dumps(finite(report), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    with atomic_path(md) as tmp:
        tmp.write_text(markdown(report), encoding="utf-8")
    return md, js
