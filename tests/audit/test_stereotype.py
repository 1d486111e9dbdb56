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
    docs = [json.loads(line)["text"] for line in (plain_data.parent / "corpus" / "docs.jsonl").read_text().splitlines()]
    pairs = [{"sent_more": d[:60], "sent_less": " ".join(reversed(d[:60].split())), "bias_type": t}
             for d, t in zip(docs, ["age", "gender"] * 6)]
    pairs += [{"sent_more": p["sent_less"], "sent_less": p["sent_more"], "bias_type": "flipped"} for p in pairs[:4]]
    r = run(load_model(memorised), Tokenizer.load(plain_data), pairs, 16, None, False)
    by = r["by_bias_type"]
    assert r["pairs"] == 16 and by["all"]["pairs"] == 16
    # trained-on text first: preferred when it is sent_more (documents of either split), never when flipped
    assert by["flipped"]["stereotyped"] <= 0.25
    assert by["age"]["stereotyped"] >= 0.8 and by["gender"]["stereotyped"] >= 0.8
    lo, hi = by["age"]["ci95"]
    assert 0 <= lo <= by["age"]["stereotyped"] <= hi <= 1
