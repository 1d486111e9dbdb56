"""Scores equal the reference packages' on fixed inputs; bootstrap; baselines."""
import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from gptkit.errors import GptkitError
from gptkit.tasks.score import baselines, lead, paired_bootstrap, per_example, score, signatures

HYPS = ["the cat sat on the mat", "Return the list of files.", "ein kleiner Test", "Open the file", ""]
REFS = ["a cat sat on the mat", "Return a list of the files in a directory.", "ein kleiner Test", "Open file", "x"]


def test_metrics_equal_reference_packages():
    s = score(HYPS, REFS)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for m in ("rouge1", "rouge2", "rougeL"):
        ref = np.mean([scorer.score(r, h)[m].fmeasure for h, r in zip(HYPS, REFS)]) * 100
        assert s[m] == pytest.approx(ref, abs=1e-9)
    assert s["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score, abs=1e-9)
    assert s["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score, abs=1e-9)
    assert s["exact"] == pytest.approx(20.0)


def test_signatures_printed():
    sig = signatures(("bleu", "chrf", "rougeL"))
    assert sig["bleu"].startswith("nrefs:1|") and f"version:{sacrebleu.__version__}" in sig["bleu"]
    assert "chrF2" in sig["chrf"] or "nc:6" in sig["chrf"]
    assert "rouge-score" in sig["rouge"]


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    refs = [" ".join(rng.choice(list("abcdefgh"), 8)) for _ in range(200)]
    good = [r if i % 3 else "z" for i, r in enumerate(refs)]
    bad = [r if i % 2 else "z" for i, r in enumerate(refs)]
    for m in ("chrf", "bleu", "rougeL"):
        r = paired_bootstrap(m, bad, good, refs, n_samples=300)
        assert r["diff"] > 0 and 0 < r["lo"] <= r["diff"] <= r["hi"] and r["p"] < 0.01
        assert r["b"] == pytest.approx(score(good, refs, [m])[m])
    same = paired_bootstrap("chrf", good, good, refs, n_samples=100)
    assert same["diff"] == 0 and same["lo"] == 0 == same["hi"]
    # deterministic
    assert paired_bootstrap("rougeL", bad, good, refs, n_samples=50) == paired_bootstrap("rougeL", bad, good, refs, n_samples=50)


def test_baselines_and_errors():
    b = baselines(["one two three four", "five"], "summarize", lead_words=2)
    assert b == {"copy-source": ["one two three four", "five"], "lead-2": ["one two", "five"]}
    assert list(baselines(["a"], "translate")) == ["copy-source"]
    assert lead("a\nb  c d", 3) == "a b c"
    with pytest.raises(GptkitError, match="2 outputs but 1 references"):
        score(["a", "b"], ["a"])
    with pytest.raises(GptkitError, match="unknown metric"):
        score(["a"], ["a"], ["meteor"])
    assert per_example("exact", [" a "], ["a"]).tolist() == [100.0]
