"""Extraction: a model that memorised its training windows gives their suffixes back from a short
prompt, never the validation windows'; an untrained model gives back nothing."""
# ruff: noqa: F811
from __future__ import annotations

import numpy as np
from audit_models import canary_data, memorised, plain_data, untrained  # noqa: F401 (the fixtures; the tests take them as arguments)

from gptkit.audit import extraction
from gptkit.audit.windows import NgramIndex, sample_windows
from gptkit.data import TokenShards
from gptkit.hf import load_model


def _run(model_dir, data, n=64):
    rng = np.random.default_rng(0)
    train, val = TokenShards(data, "train"), TokenShards(data, "val")
    w = {"train": sample_windows(train, 32, n, rng), "val": sample_windows(val, 32, n, rng)}
    counts = NgramIndex(train, 16).count(w["train"][:, 16:])
    return extraction.run(load_model(model_dir), w, [4, 16], 16, 32, None, counts, False)


def test_common_prefix():
    a = np.array([[1, 2, 3], [1, 2, 3], [9, 9, 9]])
    b = np.array([[1, 2, 3], [1, 5, 3], [1, 2, 3]])
    assert extraction.common_prefix(a, b).tolist() == [3, 1, 0]


def test_a_memorised_model_reproduces_training_windows_only(memorised, plain_data):
    r = _run(memorised, plain_data)
    train, val = r["splits"]["train"], r["splits"]["val"]
    assert train["16"]["exact"] >= 0.9 and train["16"]["prefix_share"] >= 0.95
    assert val["16"]["exact"] <= 0.05  # random words: the control cannot be predicted
    assert train["4"]["exact"] <= train["16"]["exact"]  # a longer prompt pins the window down better
    assert sum(b["windows"] for b in r["by_duplicates"]) == 64
    assert r["by_duplicates"][0]["occurrences"] == "1"  # every training suffix occurs at least once


def test_an_untrained_model_reproduces_nothing(untrained, canary_data):
    r = _run(untrained, canary_data)
    assert r["splits"]["train"]["16"]["exact"] == 0.0 and r["splits"]["train"]["16"]["prefix_share"] < 0.2


def test_greedy_runs_past_end_of_text(untrained):
    model = load_model(untrained)
    out = extraction.greedy(model, np.full((3, 2), 256, dtype=np.int64), 5, 2, None)
    assert out.shape == (3, 5)
