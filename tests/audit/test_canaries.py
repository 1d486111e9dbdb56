"""Canaries: planted by prepare where only meta.json records them; exposure exact on a small space,
estimated by sampling on a large one, near the maximum for a model that memorised them and near
chance for one that never learned anything."""
# ruff: noqa: F811
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from audit_models import canary_data, canary_model, untrained, write_corpus  # noqa: F401 (the fixtures; the tests take them as arguments)

from gptkit.audit import canaries as exposure
from gptkit.data import TokenShards, prepare, read_meta
from gptkit.data import canaries as planted
from gptkit.data.clean import CleanConfig
from gptkit.hf import load_model
from gptkit.tokenizer import Tokenizer

pytestmark = pytest.mark.filterwarnings("ignore:the validation split")


def _exposures(model_dir, data, **kw):
    model, tok = load_model(model_dir), Tokenizer.load(data)
    record = planted.read(read_meta(data), str(data))
    opts = {"exact_limit": 10_000, "samples": 300, "batch_size": 256, "amp": None, "seed": 0, "progress": False, **kw}
    return exposure.run(model, tok, record, TokenShards(data, "train"), **opts)


def test_make_draws_secrets_of_the_format_with_the_repeat_cycle():
    record = planted.make(6, digits=4, seed=3)
    assert record["space"] == 10_000 and record["length"] == 4
    assert [c["repeats"] for c in record["items"]] == [1, 4, 16, 64, 1, 4]
    assert all(len(c["secret"]) == 4 and c["secret"].isdigit() for c in record["items"])
    assert len({c["prefix"] for c in record["items"]}) == 6  # one account number each
    assert planted.make(6, digits=4, seed=3) == record
    assert planted.make(6, digits=4)["items"] != planted.make(6, digits=4)["items"]  # system randomness


def test_canaries_go_to_train_only_and_are_counted_there(canary_data):
    meta, tok = read_meta(canary_data), Tokenizer.load(canary_data)
    train, val = TokenShards(canary_data, "train"), TokenShards(canary_data, "val")
    from gptkit.audit.windows import count_sequence
    for c in meta["canaries"]["items"]:
        ids = tok.encode(planted.text(c))
        assert count_sequence(train, ids) == c["repeats"]
        assert count_sequence(val, ids) == 0


def test_deduplication_keeps_one_copy_of_each(tmp_path):
    corpus = write_corpus(tmp_path / "c", 6, 20)
    prepare([corpus], tmp_path / "d", tokenizer="bytes", progress=False, num_workers=1, canaries=4, canary_digits=3,
            canary_seed=1)
    meta, tok = read_meta(tmp_path / "d"), Tokenizer.load(tmp_path / "d")
    from gptkit.audit.windows import count_sequence
    train = TokenShards(tmp_path / "d", "train")
    assert [count_sequence(train, tok.encode(planted.text(c))) for c in meta["canaries"]["items"]] == [1, 1, 1, 1]
    assert meta["cleaning"]["stats"]["removed"]["exact_duplicate"]["documents"] == 81  # 85 copies - 4


def test_secrets_never_reach_the_data_card_nor_a_trained_vocabulary(tmp_path):
    corpus = write_corpus(tmp_path / "c", 30, 40)
    kw = dict(tokenizer="bpe", vocab_size=400, progress=False, num_workers=1, clean=CleanConfig(pii="keep", dedup=False))
    prepare([corpus], tmp_path / "with", canaries=8, canary_digits=6, **kw)
    prepare([corpus], tmp_path / "without", **kw)
    meta = read_meta(tmp_path / "with")
    assert len(meta["canaries"]["items"]) == 8
    card = json.loads((tmp_path / "with" / "datacard.json").read_text())
    assert card["canaries"] == {"planted": 8, "copies": 2 * (1 + 4 + 16 + 64), "space": 10**6}
    texts = [(tmp_path / "with" / f).read_text() for f in ("DATACARD.md", "datacard.json", "vocab.json", "merges.txt")]
    for c in meta["canaries"]["items"]:
        for t in texts:
            assert c["secret"] not in t and c["prefix"] not in t
    # the BPE was trained on the inputs alone: the same vocabulary as without canaries
    assert Tokenizer.load(tmp_path / "with").fingerprint == Tokenizer.load(tmp_path / "without").fingerprint


def test_estimate_exact_rank_and_sampled_share():
    lps = np.array([-1.0, -2.0, -3.0, -4.0])
    e = exposure.estimate(-2.5, lps, space=5, exact=True)
    assert e["rank"] == 3 and e["exposure"] == pytest.approx(math.log2(5 / 3))
    rng = np.random.default_rng(0)
    cands = rng.normal(size=4000)
    s = exposure.estimate(0.0, cands, space=10**6, exact=False)
    assert s["method"] == "sampled" and s["rank"] == pytest.approx(1 + (10**6 - 1) * (cands > 0).mean())
    assert s["interval"][0] <= s["exposure"] <= s["interval"][1]
    far = exposure.estimate(5.0, cands, space=10**6, exact=False)  # none above it: the normal's tail
    assert far["method"] == "sampled, normal tail" and far["better"] == 0
    assert far["interval"][0] < far["exposure"] <= far["interval"][1] == pytest.approx(math.log2(10**6))


def test_memorised_canaries_score_near_the_maximum(canary_model, canary_data):
    r = _exposures(canary_model, canary_data)
    assert r["method"] == "exact" and r["max_exposure"] == pytest.approx(math.log2(1000))
    by = {c["repeats"]: c for c in r["canaries"]}
    assert by[64]["exposure"] >= 0.9 * r["max_exposure"] and by[16]["exposure"] >= 0.9 * r["max_exposure"]
    assert by[64]["copies_in_train"] == 64


def test_an_untrained_model_scores_near_chance(untrained, canary_data):
    r = _exposures(untrained, canary_data)
    assert np.mean([c["exposure"] for c in r["canaries"]]) < 3.5  # chance: about 1.4 bits on average
    assert not any(c["greedy"] for c in r["canaries"])


def test_exact_exposure_is_inside_the_sampled_estimates_interval(untrained, canary_data):
    exact = _exposures(untrained, canary_data)
    sampled = _exposures(untrained, canary_data, exact_limit=10, samples=400, z=3.0)
    assert sampled["method"] == "sampled" and exact["method"] == "exact"
    for e, s in zip(exact["canaries"], sampled["canaries"]):
        lo, hi = s["interval"]
        assert lo - 1e-9 <= e["exposure"] <= hi + 1e-9, (e, s)
        assert abs(e["exposure"] - s["exposure"]) < 1.5
