"""The statistics of the audit: ROC AUC with its standard error, the true-positive rate at a fixed
false-positive rate, and Wilson intervals for shares."""
from __future__ import annotations

import math

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of x, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half (Mann-Whitney U / n_pos n_neg)."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if not len(pos) or not len(neg):
        return float("nan")
    r = _ranks(np.concatenate([pos, neg]))[: len(pos)]
    return float((r.sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def auc_stderr(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982)'s standard error of an AUC."""
    if not n_pos or not n_neg or math.isnan(auc):
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float = 0.01) -> float:
    """The share of positives above the threshold that at most `fpr` of the negatives exceed."""
    pos, neg = np.asarray(pos, np.float64), np.sort(np.asarray(neg, np.float64))
    if not len(pos) or not len(neg):
        return float("nan")
    allowed = int(math.floor(fpr * len(neg)))  # negatives allowed above the threshold
    threshold = neg[len(neg) - allowed - 1] if allowed < len(neg) else -np.inf
    return float((pos > threshold).mean())


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial share (z = 1.96: 95 %)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def normal_tail(x: float, mean: float, std: float) -> float:
    """P(X < x) for X ~ N(mean, std^2)."""
    if std <= 0:
        return 1.0 if x > mean else 0.0
    return 0.5 * math.erfc((mean - x) / (std * math.sqrt(2)))
