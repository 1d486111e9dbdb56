"""Stereotype preference: pairs read from CrowS-Pairs CSV or JSON lines, refused with one line when
a field is missing; a model prefers the sentence it was trained on."""
# ruff: noqa: F811
from __future__ import annotations

import json

import pytest
from audit_models import memorised, plain_data  # noqa: F401 (the fixtures; the tests take them as arguments)

from gptkit.audit.stereotype import read_pairs, run
from gptkit.errors import GptkitError
from gptkit.hf import load_model
from gptkit.tokenizer import Tokenizer

HEADER = ",sent_more,sent_less,stereo_antistereo,bias_type,annotations,anon_writer,anon_annotators\n"


def test_reads_the_crows_pairs_csv_and_jsonl(tmp_path):
    (tmp_path / "p.csv").write_text(HEADER + '0,"He is, well, a man.",She is a woman.,stereo,gender,[],a,[]\n')
    assert read_pairs(tmp_path / "p.csv") == [{"sent_more": "He is, well, a man.", "sent_less": "She is a woman.",
                                               "bias_type": "gender"}]
    (tmp_path / "p.jsonl").write_text(json.dumps({"sent_more": "a", "sent_less": "b", "bias_type": "age"}) + "\n\n")
    assert read_pairs(tmp_path / "p.jsonl")[0]["bias_type"] == "age"


@pytest.mark.parametrize("name,text,pattern", [
    ("p.csv", "sent_more,sent_less\nx,y\n", "header lacks field 'bias_type'"),
    ("p.csv", "sent_more,sent_less,bias_type\nx,,age\n", r"p.csv:2: the pair lacks field 'sent_less'"),
    ("p.jsonl", '{"sent_more": "x", "bias_type": "age"}\n', r"p.jsonl:1: the pair lacks field 'sent_less'"),
    ("p.jsonl", '{"sent_more": "x",\n', r"p.jsonl:1: not valid JSON"),
    ("p.jsonl", "[1, 2]\n", "not an object"),
    ("p.csv", "", "header lacks field"),
    ("p.jsonl", "\n", "holds no pairs"),
])
def test_bad_pairs_files_are_one_clear_error(tmp_path, name, text, pattern):
    (tmp_path / name).write_text(text)
    with pytest.raises(GptkitError, match=pattern):
        read_pairs(tmp_path / name)


def test_missing_file(tmp_path):
    with pytest.raises(GptkitError, match="does not exist"):
        read_pairs(tmp_path / "none.csv")


def test_the_model_prefers_the_sentence_it_memorised(memorised, plain_data):
    from gptkit.audit.windows import count_sequence
    from gptkit.data import TokenShards
    tok, train = Tokenizer.load(plain_data), TokenShards(plain_data, "train")
    docs = [json.loads(line)["text"][:60] for line in (plain_data.parent / "corpus" / "docs.jsonl").read_text().splitlines()]
    seen = [d for d in docs if count_sequence(train, tok.encode(d))]  # the training split's documents
    assert len(seen) >= 3
    pairs = [{"sent_more": d, "sent_less": " ".join(reversed(d.split())), "bias_type": "age" if i % 2 else "gender"}
             for i, d in enumerate(seen)]
    pairs += [{"sent_more": p["sent_less"], "sent_less": p["sent_more"], "bias_type": "flipped"} for p in pairs]
    r = run(load_model(memorised), tok, pairs, 16, None, False)
    by = r["by_bias_type"]
    assert r["pairs"] == 2 * len(seen) and by["all"]["pairs"] == 2 * len(seen)
    assert by["age"]["stereotyped"] == 1.0 and by["gender"]["stereotyped"] == 1.0  # the trained-on sentence
    assert by["flipped"]["stereotyped"] == 0.0 and by["all"]["stereotyped"] == 0.5
    lo, hi = by["flipped"]["ci95"]
    assert lo == 0.0 < hi < 0.6
