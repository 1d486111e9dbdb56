"""Membership inference and its statistics: AUC near 1 on a model that memorised its training
windows, near 0.5 on an untrained one; the AUC, TPR at low FPR and Wilson interval on known inputs."""
# ruff: noqa: F811
from __future__ import annotations

import numpy as np
import pytest
from audit_models import canary_data, make_data, memorised, plain_data, untrained  # noqa: F401 (the fixtures; the tests take them as arguments)

from gptkit.audit import membership
from gptkit.audit.stats import auc_stderr, roc_auc, tpr_at_fpr, wilson
from gptkit.audit.windows import sample_windows
from gptkit.data import TokenShards
from gptkit.hf import load_model
from gptkit.tokenizer import Tokenizer


def _run(model_dir, data, n=128):
    rng = np.random.default_rng(1)
    w = {s: sample_windows(TokenShards(data, s), 48, n, rng) for s in ("train", "val")}
    return membership.run(load_model(model_dir), Tokenizer.load(data), w, 64, None, False)


def test_roc_auc_and_tpr_on_known_scores():
    assert roc_auc([3, 4], [1, 2]) == 1.0 and roc_auc([1, 2], [3, 4]) == 0.0
    assert roc_auc([1, 3], [2, 2]) == 0.5 and roc_auc([1], [1]) == 0.5  # ties count half
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 20000), rng.normal(0, 1, 20000)
    assert roc_auc(pos, neg) == pytest.approx(0.760, abs=0.01)  # Phi(1 / sqrt(2))
    assert 0 < auc_stderr(0.76, 20000, 20000) < 0.01
    assert tpr_at_fpr(pos, neg, 0.01) == pytest.approx(0.092, abs=0.01)  # 1 - Phi(2.326 - 1)
    assert tpr_at_fpr([5, 6], list(range(100)), 0.01) == 0.0 and tpr_at_fpr([200], list(range(100)), 0.01) == 1.0


def test_wilson_interval():
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0


def test_a_memorised_model_gives_its_members_away(memorised, plain_data):
    r = _run(memorised, plain_data)
    assert r["loss"]["auc"] >= 0.95 and r["zlib"]["auc"] >= 0.95
    assert r["loss"]["tpr_at_0.01_fpr"] >= 0.5
    assert r["mean_loss"]["train"] < r["mean_loss"]["val"]


def test_an_untrained_model_is_a_coin_toss(untrained, tmp_path):
    data = make_data(tmp_path, docs=60, words=30)  # validation windows that barely overlap
    r = _run(untrained, data)
    assert abs(r["loss"]["auc"] - 0.5) < 0.15 and abs(r["zlib"]["auc"] - 0.5) < 0.15
