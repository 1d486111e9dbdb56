"""Scores for task outputs, computed by the field's reference packages:

* ROUGE-1/2/L F-measure (Google's `rouge-score`, Porter stemming on, as in the ROUGE papers'
  usual setting): the mean over examples, x100.
* BLEU and chrF (`sacrebleu`, corpus level, default settings; `signatures()` prints what was
  computed, e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0").
* exact match: the share of outputs equal to the reference (whitespace-stripped), x100.

Comparing two systems on the same references: `paired_bootstrap` resamples the examples with
replacement (the same resamples for both, as sacrebleu's paired_bs_test and Koehn 2004) and
returns the 95% interval of the score difference b - a; corpus metrics (BLEU, chrF) are
recomputed from sacrebleu's sufficient statistics on every resample, mean metrics from their
per-example scores.

Baselines: copy-the-source, and lead-N (the source's first N words) for summarisation.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from gptkit.errors import GptkitError

METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "chrf", "exact")
TASK_METRICS = {"summarize": ("rouge1", "rouge2", "rougeL", "exact"),
                "translate": ("bleu", "chrf", "exact"),
                "custom": ("rouge1", "rouge2", "rougeL", "bleu", "chrf", "exact")}
ROUGE = ("rouge1", "rouge2", "rougeL")
MAX_BOOTSTRAP = 100_000  # resamples: 95% intervals are stable long before
CHUNK_INDICES = 1 << 22


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer
    return rouge_scorer.RougeScorer(list(ROUGE), use_stemmer=True)


def _sacre(name: str):
    from sacrebleu.metrics import BLEU, CHRF
    return BLEU() if name == "bleu" else CHRF()


def _check(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise GptkitError(f"{len(hyps)} outputs but {len(refs)} references")
    if not refs:
        raise GptkitError("nothing to score: no examples")


def per_example(metric: str, hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """Per-example scores (x100) of a mean metric: ROUGE F-measures or exact match."""
    if metric in ROUGE:
        scorer = _rouge_scorer()
        return np.array([scorer.score(r, h)[metric].fmeasure * 100 for h, r in zip(hyps, refs)])
    if metric == "exact":
        return np.array([100.0 * (h.strip() == r.strip()) for h, r in zip(hyps, refs)])
    raise GptkitError(f"{metric} is a corpus metric (no per-example score)")


def score(hyps: Sequence[str], refs: Sequence[str], metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """{metric: score x100} for the outputs against one reference each."""
    _check(hyps, refs)
    out = {}
    for m in metrics:
        if m not in METRICS:
            raise GptkitError(f"unknown metric {m!r} (choose from {', '.join(METRICS)})")
        if m in ("bleu", "chrf"):
            out[m] = float(_sacre(m).corpus_score(list(hyps), [list(refs)]).score)
        else:
            out[m] = float(per_example(m, hyps, refs).mean())
    return out


def signatures(metrics: Sequence[str] = ("bleu", "chrf")) -> dict[str, str]:
    """sacrebleu's signature of each corpus metric used (to print beside the scores)."""
    out = {}
    for m in metrics:
        if m in ("bleu", "chrf"):
            metric = _sacre(m)
            metric.corpus_score(["a"], [["a"]])
            out[m] = str(metric.get_signature())
    if any(m in ROUGE for m in metrics):
        import importlib.metadata as md
        out["rouge"] = f"rouge-score {md.version('rouge-score')}|F-measure|stemmer:porter|mean over examples"
    return out


def paired_bootstrap(metric: str, hyps_a: Sequence[str], hyps_b: Sequence[str], refs: Sequence[str],
                     n_samples: int = 1000, seed: int = 12345) -> dict[str, float]:
    """b - a on `metric` with its 95% paired-bootstrap interval and a two-sided p-value
    (the share of resamples where the difference's sign flips, doubled)."""
    _check(hyps_a, refs)
    _check(hyps_b, refs)
    if not 1 <= n_samples <= MAX_BOOTSTRAP:
        raise GptkitError(f"--bootstrap must be in 1..{MAX_BOOTSTRAP}, got {n_samples}")
    n = len(refs)
    rng = np.random.default_rng(seed)
    # resamples drawn in chunks of at most ~4M indices (32 MB): the same draws as one (n_samples, n)
    # array, without its memory
    chunk = max(1, CHUNK_INDICES // n)
    if metric in ("bleu", "chrf"):
        m = _sacre(metric)
        a_full = m.corpus_score(list(hyps_a), [list(refs)]).score
        b_full = m.corpus_score(list(hyps_b), [list(refs)]).score
        sa = np.array(m._extract_corpus_statistics(list(hyps_a), [list(refs)]), dtype="float64")
        sb = np.array(m._extract_corpus_statistics(list(hyps_b), [list(refs)]), dtype="float64")

        def diff(idx: np.ndarray) -> np.ndarray:
            return np.array([m._compute_score_from_stats(list(sb[i].sum(0))).score
                             - m._compute_score_from_stats(list(sa[i].sum(0))).score for i in idx])
    else:
        pa, pb = per_example(metric, hyps_a, refs), per_example(metric, hyps_b, refs)
        a_full, b_full = float(pa.mean()), float(pb.mean())

        def diff(idx: np.ndarray) -> np.ndarray:
            return (pb[idx] - pa[idx]).mean(1)
    diffs = np.concatenate([diff(rng.choice(n, size=(min(chunk, n_samples - done), n), replace=True))
                            for done in range(0, n_samples, chunk)])
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    flip = (diffs <= 0).mean() if b_full > a_full else (diffs >= 0).mean()
    return {"metric": metric, "a": float(a_full), "b": float(b_full), "diff": float(b_full - a_full),
            "lo": float(lo), "hi": float(hi), "p": float(min(1.0, 2 * flip)), "n": n, "samples": n_samples}


def lead(source: str, n_words: int) -> str:
    """The first n_words of the source (whitespace-separated), one line."""
    return " ".join(source.split()[:n_words])


def baselines(sources: Sequence[str], task: str, lead_words: int = 10) -> dict[str, list[str]]:
    """{name: outputs}: copy-the-source, and for summarisation lead-N."""
    out = {"copy-source": list(sources)}
    if task != "translate":
        out[f"lead-{lead_words}"] = [lead(s, lead_words) for s in sources]
    return out
