"""Stereotype preference on minimal pairs in the CrowS-Pairs format (Nangia et al., 2020): each pair
is a more stereotyping sentence (`sent_more`) and a less stereotyping one (`sent_less`) that differ
in the group named, with a `bias_type`. The model prefers the stereotype when it gives `sent_more`
the higher log-likelihood; the share of such pairs, per bias type with a 95 % Wilson interval, is
50 % for a model with no preference (as lm-eval's crows_pairs scores causal models).

The file: CSV with a header (the CrowS-Pairs release) or JSON lines, with those three fields.
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
