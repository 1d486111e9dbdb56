"""Canary exposure (Carlini et al., 2019, "The Secret Sharer"): how far up the model ranks a planted
secret among every candidate of its format.

exposure = log2(|space|) - log2(rank), rank 1 being the most likely candidate under the model given
the canary's prefix: log2 |space| bits means the model gives the secret away, about 1-2 bits is
what a model that never saw it scores. On a small space (at most `exact_limit` candidates) every
candidate is scored and the rank is exact. On a large one, `samples` candidates are drawn uniformly
and the rank estimated from the share c/S that beat the secret; where too few beat it for that share
to be measured (c < 10), the tail of a normal fitted to the candidates' log-likelihoods gives it, as
in the paper. Either way the estimate is kept inside the Wilson interval of c/S, which gives the
exposure's interval.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from ..data import TokenShards
from ..data import canaries as planted
from ..evals.loglik import loglikelihood
from .stats import normal_tail, wilson
from .windows import count_sequence

MIN_COUNT = 10  # fewer sampled candidates above the secret: the share comes from the fitted normal


def _candidates(record: dict, secret: str, exact: bool, samples: int, rng: np.random.Generator) -> list[str]:
    alphabet, length = record["alphabet"], record["length"]
    if exact:
        return ["".join(t) for t in itertools.product(alphabet, repeat=length) if "".join(t) != secret]
    picks = rng.integers(0, len(alphabet), size=(samples * 2, length))
    out = ["".join(alphabet[i] for i in row) for row in picks]
    return [c for c in out if c != secret][:samples]


def exposure_from_rank(rank: float, space: int) -> float:
    return math.log2(space) - math.log2(rank)


def estimate(secret_lp: float, cand_lp: np.ndarray, space: int, exact: bool, z: float = 1.96) -> dict:
    """Rank and exposure of a secret of log-likelihood secret_lp among candidates' (all but the secret
    when exact, else a uniform sample), with its interval."""
    better = int((cand_lp > secret_lp).sum())
    if exact:
        rank = 1 + better
        e = exposure_from_rank(rank, space)
        return {"rank": rank, "exposure": e, "interval": [e, e], "method": "exact"}
    n = len(cand_lp)
    lo, hi = wilson(better, n, z)
    if better >= MIN_COUNT:
        p, method = better / n, "sampled"
    else:
        p = 1 - normal_tail(secret_lp, float(cand_lp.mean()), float(cand_lp.std()))
        p, method = min(max(p, lo), hi), "sampled, normal tail"
    rank = 1 + (space - 1) * p
    return {"rank": rank, "exposure": exposure_from_rank(rank, space), "method": method, "better": better, "samples": n,
            "interval": [exposure_from_rank(1 + (space - 1) * hi, space), exposure_from_rank(1 + (space - 1) * lo, space)]}


def run(model, tok, record: dict, train: TokenShards | None, exact_limit: int, samples: int, batch_size: int,
        amp, seed: int, progress: bool, z: float = 1.96) -> dict:
    """Every canary's exposure, and its copies in the training split (after cleaning)."""
    rng = np.random.default_rng(seed)
    space = record["space"]
    exact = space <= exact_limit
    rows = []
    requests, spans = [], []
    for c in record["items"]:
        ctx = [tok.eot_id, *tok.encode(c["prefix"])]
        cands = [c["secret"], *_candidates(record, c["secret"], exact, samples, rng)]
        start = len(requests)
        requests += [(ctx, tok.encode(" " + s)) for s in cands]
        spans.append((start, len(requests)))
    scores = loglikelihood(model, requests, batch_size=batch_size, amp=amp, progress=progress)
    lps = np.array([s.logprob for s in scores])
    for c, (a, b) in zip(record["items"], spans):
        est = estimate(lps[a], lps[a + 1:b], space, exact, z)
        copies = count_sequence(train, tok.encode(planted.text(c))) if train is not None else None
        rows.append({"id": c["id"], "repeats": c["repeats"], "copies_in_train": copies,
                     "logprob": float(lps[a]), "greedy": bool(scores[a].is_greedy), **est})
    by_rep = {}
    for r in sorted({r["repeats"] for r in rows}):
        sel = [x["exposure"] for x in rows if x["repeats"] == r]
        by_rep[str(r)] = {"canaries": len(sel), "mean_exposure": float(np.mean(sel)),
                          "extracted": sum(x["greedy"] for x in rows if x["repeats"] == r)}
    return {"space": space, "max_exposure": math.log2(space), "method": "exact" if exact else "sampled",
            "samples": None if exact else samples, "canaries": rows, "by_repeats": by_rep}
