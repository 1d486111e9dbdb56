"""`gptkit score`: a system's outputs (and optionally another's, and the baselines) scored
against the references, with a paired-bootstrap interval for every comparison."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gptkit.errors import GptkitError

from .run import read_outputs
from .score import MAX_BOOTSTRAP, TASK_METRICS, paired_bootstrap, score, signatures
from .score import baselines as make_baselines


def _name(path: str | Path) -> str:
    n = Path(path).name
    return n[:-6] if n.endswith(".jsonl") else n


def _refs(rows: list[dict[str, Any]], path: str | Path) -> list[str]:
    for r in rows:
        if not isinstance(r.get("target"), str) or not r["target"].strip():
            raise GptkitError(f"{path}: example {r.get('index')} has no target: scoring needs references "
                              "(run the task on --data with a target field)")
    return [r["target"] for r in rows]


def score_report(outputs: str | Path, task: str = "custom", against: str | Path | None = None,
                 baselines: bool = False, metrics: Sequence[str] | None = None, lead_words: int = 10,
                 n_samples: int = 1000, seed: int = 12345) -> dict[str, Any]:
    if not 1 <= n_samples <= MAX_BOOTSTRAP:
        raise GptkitError(f"--bootstrap must be in 1..{MAX_BOOTSTRAP}, got {n_samples}")
    if lead_words < 1:
        raise GptkitError(f"--lead-words must be >= 1, got {lead_words}")
    metrics = list(metrics or TASK_METRICS.get(task, TASK_METRICS["custom"]))
    rows = read_outputs(outputs)
    refs = _refs(rows, outputs)
    main = _name(outputs)
    systems: dict[str, list[str]] = {main: [r["output"] for r in rows]}
    if against is not None:
        other = read_outputs(against)
        if [(r.get("index"), r.get("source")) for r in other] != [(r.get("index"), r.get("source")) for r in rows]:
            raise GptkitError(f"--against {against}: not the same examples as {outputs} (compare runs on one input)")
        name = _name(against)
        systems[name if name != main else f"{name} (against)"] = [r["output"] for r in other]
    if baselines:
        systems.update(make_baselines([r["source"] for r in rows], task, lead_words))
    scores = {name: score(hyps, refs, metrics) for name, hyps in systems.items()}
    comparisons = []
    for name, hyps in systems.items():
        if name == main:
            continue
        comparisons.append({"system": main, "vs": name,
                            **{m: paired_bootstrap(m, hyps, systems[main], refs, n_samples, seed) for m in metrics}})
    return {"outputs": str(outputs), "task": task, "n": len(rows), "metrics": metrics, "systems": scores,
            "comparisons": comparisons, "signatures": signatures(metrics),
            "bootstrap": {"samples": n_samples, "seed": seed, "interval": "95% of the paired difference"}}


def format_report(report: dict[str, Any]) -> str:
    m = report["metrics"]
    width = max(len(s) for s in report["systems"]) + 2
    lines = [f"{report['n']} examples, task {report['task']}", "",
             "system".ljust(width) + "".join(f"{x:>10}" for x in m)]
    for name, s in report["systems"].items():
        lines.append(name.ljust(width) + "".join(f"{s[x]:10.2f}" for x in m))
    if report["comparisons"]:
        lines += ["", f"paired bootstrap ({report['bootstrap']['samples']} resamples): difference, 95% interval"]
        for c in report["comparisons"]:
            for x in m:
                b = c[x]
                verdict = "better" if b["lo"] > 0 else "worse" if b["hi"] < 0 else "no significant difference"
                lines.append(f"  {c['system']} - {c['vs']}: {x} {b['diff']:+.2f} [{b['lo']:+.2f}, {b['hi']:+.2f}] "
                             f"p={b['p']:.3f} ({verdict})")
    lines += [""] + [f"{k} signature: {v}" for k, v in report["signatures"].items()]
    return "\n".join(lines)
