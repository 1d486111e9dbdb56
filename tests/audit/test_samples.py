"""Personal data in samples: prepare's detector finds it, the report masks it, and a finding that is
in the training text, or a sample that repeats a training span, is said to be."""
# ruff: noqa: F811
from __future__ import annotations

import numpy as np
from audit_models import memorised, plain_data  # noqa: F401 (the fixtures; the tests take them as arguments)

from gptkit.audit import samples
from gptkit.audit.windows import NgramIndex
from gptkit.data import TokenShards
from gptkit.data.pii import find, scan
from gptkit.hf import load_model
from gptkit.tokenizer import Tokenizer


def test_find_is_what_scan_replaces():
    text = "mail bob@example.com or call +44 20 7946 0958, not 127.0.0.1"
    found = find(text)
    assert [(k, text[a:b]) for a, b, _, k in found] == [("EMAIL", "bob@example.com"), ("PHONE", "+44 20 7946 0958")]
    assert scan(text)[0] == "mail <EMAIL> or call <PHONE>, not 127.0.0.1"


def test_mask():
    assert samples.mask("bob@example.com") == "bo" + "*" * 13


def test_findings_counted_masked_and_traced_to_training_text(memorised, plain_data, monkeypatch):
    tok, train = Tokenizer.load(plain_data), TokenShards(plain_data, "train")
    words = tok.decode(np.asarray(train.shards[0][:40]))
    fake = [tok.encode("write to alice@example.org today"), tok.encode(words), tok.encode("nothing here at all")]
    monkeypatch.setattr(samples, "draw", lambda model, rows, *a, **k: [np.array(f) for f in fake[:len(rows)]])
    r = samples.run(load_model(memorised), tok, {"unconditional": np.zeros((3, 1), np.int64)}, 40, 8, None, 0, train,
                    NgramIndex(train, 16), False)
    assert r["samples"] == 3 and r["by_kind"]["EMAIL"] == 1 and r["findings"] == 1
    assert r["examples"][0]["masked"] == "al" + "*" * 15 and r["findings_in_training_text"] == 0
    assert "alice" not in str(r)
    assert r["reproducing"]["samples"] == 1 and r["reproducing"]["examples"][0]["sample"] == 1


def test_real_samples_of_a_memorised_model(memorised, plain_data):
    tok, train = Tokenizer.load(plain_data), TokenShards(plain_data, "train")
    prompts = np.asarray(train.shards[0][:8], dtype=np.int64)[None].repeat(4, 0)
    r = samples.run(load_model(memorised), tok, {"prompted": prompts}, 32, 4, None, 0, train, NgramIndex(train, 16),
                    False)
    assert r["samples"] == 4 and r["findings"] == 0  # random words hold no personal data
    assert r["reproducing"]["samples"] >= 1  # its samples continue its training text
