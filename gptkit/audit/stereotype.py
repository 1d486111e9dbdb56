"""Stereotype preference on minimal pairs in the CrowS-Pairs format (Nangia et al., 2020): each pair
is a more stereotyping sentence (`sent_more`) and a less stereotyping one (`sent_less`) that differ
in the group named, with a `bias_type`. The model prefers the stereotype when it gives `sent_more`
the higher log-likelihood; the share of such pairs, per bias type with a 95 % Wilson interval, is
50 % for a model with no preference (as lm-eval's crows_pairs scores causal models).

The pairs: a CSV file with a header (the CrowS-Pairs release) or JSON lines, with those three
fields; or an lm-evaluation-harness task, by name (`crows_pairs_english`, `crows_pairs_english_gender`,
... fetched by `datasets` where there is a network) or as a local .yaml task file, whose test documents
are read through lm-eval's own task loading (its filters included), so the pairs are the ones lm-eval's
`pct_stereotype` scores.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import GptkitError
from ..evals.loglik import loglikelihood
from .stats import wilson

FIELDS = ("sent_more", "sent_less", "bias_type")
MAX_BYTES = 100_000_000


PAIR_FILES = (".csv", ".jsonl", ".json")


def load_pairs(spec: str | Path) -> list[dict]:
    """The pairs of a CrowS-Pairs file, or of an lm-eval task name or .yaml task file."""
    path = Path(spec)
    if path.suffix.lower() in PAIR_FILES or (path.is_file() and path.suffix.lower() not in (".yaml", ".yml")):
        return read_pairs(path)
    return lm_eval_pairs(str(spec))


def lm_eval_pairs(spec: str) -> list[dict]:
    """The test documents of one lm-eval task (CrowS-Pairs' fields), loaded by lm-eval itself."""
    from ..evals.run import parse_tasks, task_manager
    (task_spec,) = parse_tasks(spec)
    tm = task_manager([task_spec])
    try:
        tasks = tm.load(task_spec.name)["tasks"]
    except Exception as e:  # datasets raises many types for "offline", "not found", "no such split"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GptkitError(f"lm-eval task {task_spec.name!r}: cannot load its documents ({type(e).__name__}: {msg})") from None
    if list(tasks) != [task_spec.name]:
        raise GptkitError(f"lm-eval task {task_spec.name!r} is a group of {len(tasks)} tasks: give one task "
                          "(e.g. crows_pairs_english or crows_pairs_english_gender)")
    task = tasks[task_spec.name]
    docs = task.test_docs() if task.has_test_docs() else task.validation_docs()
    if docs is None:
        raise GptkitError(f"lm-eval task {task_spec.name!r} has no test or validation documents")
    rows = [_check(Path(task_spec.name), i, dict(d)) for i, d in enumerate(docs, 1)]
    if not rows:
        raise GptkitError(f"lm-eval task {task_spec.name!r} holds no pairs")
    return rows


def read_pairs(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise GptkitError(f"pairs file {path} does not exist")
    if path.stat().st_size > MAX_BYTES:
        raise GptkitError(f"pairs file {path} is over {MAX_BYTES:,} bytes: not a CrowS-Pairs file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise GptkitError(f"pairs file {path} is not UTF-8 text") from None
    rows = _jsonl(path, text) if path.suffix in (".jsonl", ".json") else _csv(path, text)
    if not rows:
        raise GptkitError(f"pairs file {path} holds no pairs (it needs {', '.join(FIELDS)})")
    return rows


def _check(path: Path, line: int, row) -> dict:
    if not isinstance(row, dict):
        raise GptkitError(f"{path}:{line}: not an object with {', '.join(FIELDS)}")
    for f in FIELDS:
        if not isinstance(row.get(f), str) or not row[f].strip():
            raise GptkitError(f"{path}:{line}: the pair lacks field {f!r} (a CrowS-Pairs file has "
                              f"{', '.join(FIELDS)})")
    return {f: row[f] for f in FIELDS}


def _jsonl(path: Path, text: str) -> list[dict]:
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise GptkitError(f"{path}:{i}: not valid JSON") from None
        out.append(_check(path, i, row))
    return out


def _csv(path: Path, text: str) -> list[dict]:
    try:
        reader = csv.DictReader(text.splitlines())
        missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise GptkitError(f"{path}: the header lacks field {missing[0]!r} (a CrowS-Pairs file has "
                              f"{', '.join(FIELDS)})")
        return [_check(path, i, row) for i, row in enumerate(reader, 2)]
    except csv.Error as e:
        raise GptkitError(f"{path}: not a valid CSV file ({e})") from None


def run(model, tok, pairs: list[dict], batch_size: int, amp, progress: bool) -> dict:
    reqs = []
    for p in pairs:
        for f in ("sent_more", "sent_less"):
            ids = tok.encode(p[f])
            reqs.append(([tok.eot_id], ids[: model.config.n_positions]))
    scores = loglikelihood(model, reqs, batch_size=batch_size, amp=amp, progress=progress)
    prefer = [scores[2 * i].logprob > scores[2 * i + 1].logprob for i in range(len(pairs))]
    groups: dict[str, list[bool]] = {}
    for p, yes in zip(pairs, prefer):
        groups.setdefault(p["bias_type"], []).append(yes)
    groups["all"] = prefer

    def share(v: list[bool]) -> dict:
        lo, hi = wilson(sum(v), len(v))
        return {"pairs": len(v), "stereotyped": sum(v) / len(v), "ci95": [lo, hi]}

    return {"pairs": len(pairs), "by_bias_type": {k: share(v) for k, v in sorted(groups.items())}}
