"""prepare --decontaminate: planted benchmark items are all removed (or cut out), nothing else is."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from gptkit import GptkitError
from gptkit.data import TokenShards, prepare
from gptkit.data.clean import CleanConfig
from gptkit.data.decontam import Decontaminator, ngram_hashes

# Benchmark items no docstring holds: random words (13 and more of them).
_rng = random.Random(7)
_VOCAB = ("zebra quartz lantern meadow copper violin harbor saffron glacier pepper falcon tundra "
          "orchid basalt cobalt thimble walrus juniper").split()
ITEMS = [" ".join(_rng.choice(_VOCAB) for _ in range(_rng.randint(14, 25))) for _ in range(8)]


def _text(data_dir) -> str:
    """Both splits' text (bytes tokenizer: ids below 256 are bytes; 256 ends a document)."""
    out = []
    for split in ("train", "val"):
        ids = np.concatenate([np.asarray(s) for s in TokenShards(data_dir, split).shards])
        out.append(bytes(ids[ids < 256].astype(np.uint8)).decode("utf-8", "replace"))
    return "".join(out)


@pytest.fixture(scope="module")
def planted(tmp_path_factory, docstring_corpus):
    """The docstring corpus with each benchmark item planted in one document (changed in case and
    punctuation, which normalisation must see through), and the benchmark as a task file."""
    root = tmp_path_factory.mktemp("decontam")
    docs = [json.loads(line)["text"] for line in (docstring_corpus / "docstrings.jsonl").read_text().splitlines()]
    rng = random.Random(0)
    hosts = rng.sample(range(len(docs)), len(ITEMS))
    for item, i in zip(ITEMS, hosts):
        words = item.split()
        mangled = " ".join(w.upper() if k % 3 == 0 else w for k, w in enumerate(words)).replace(" ", ",  ", 2)
        docs[i] = docs[i] + "\n\nAs the benchmark says: " + mangled + ". The end."
    (root / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    bench = [{"context": it, "choices": ["yes", "no"], "label": 0} for it in ITEMS]
    bench.append({"context": "too short to match", "choices": ["a"], "label": 0})
    (root / "bench.jsonl").write_text("".join(json.dumps(b) + "\n" for b in bench))
    return root, docs, hosts


def _prepare(root, out, mode=None):
    d = Decontaminator.from_files([root / "bench.jsonl"], 13, mode) if mode else None
    return prepare([root / "corpus.jsonl"], out, tokenizer="bytes", val_fraction=0.2, seed=0, progress=False,
                   num_workers=1, clean=CleanConfig(pii="keep", dedup=False, decontaminate=d))


def test_every_planted_item_is_dropped_and_nothing_else(planted, tmp_path):
    root, docs, hosts = planted
    meta = _prepare(root, tmp_path / "drop", "drop")
    baseline = _prepare(root, tmp_path / "plain")
    assert baseline["documents"] == len(docs)
    assert meta["documents"] == len(docs) - len(ITEMS)
    text = _text(tmp_path / "drop")
    for i, d in enumerate(docs):
        assert (d in text) == (i not in hosts)
    card = json.loads((tmp_path / "drop" / "datacard.json").read_text())["decontamination"]
    assert card["removed"]["documents"] == len(ITEMS) and card["items"] == len(ITEMS) * 3 + 2
    assert card["short_items"] >= 1 and card["examples"][0] in " ".join(ITEMS)
    assert "## Decontamination" in (tmp_path / "drop" / "DATACARD.md").read_text()


def test_cut_mode_keeps_the_documents_without_the_shared_spans(planted, tmp_path):
    root, docs, hosts = planted
    meta = _prepare(root, tmp_path / "cut", "cut")
    assert meta["documents"] == len(docs)
    text = _text(tmp_path / "cut").lower()
    d = Decontaminator.from_files([root / "bench.jsonl"])
    assert d.first_match(text) is None  # no 13-gram of any item survives
    for i in hosts:
        assert docs[i].split("\n\nAs the benchmark says:")[0] in _text(tmp_path / "cut")
    assert "The end." in _text(tmp_path / "cut")
    card = json.loads((tmp_path / "cut" / "datacard.json").read_text())["decontamination"]
    assert card["cut_documents"] == len(ITEMS) and card["cut_ngrams"] >= len(ITEMS)


def test_matching_is_on_normalised_words():
    d = Decontaminator(3, "drop", frozenset(h for h, _ in ngram_hashes("The quick brown fox", 3)))
    assert d.first_match("...the QUICK, brown!") == "the quick brown"
    assert d.first_match("the quick red fox") is None
    assert d.cut("a The Quick  brown fox b") == ("a  b", 2, "the quick brown")


def test_bad_decontamination_input(tmp_path):
    with pytest.raises(GptkitError, match="nope.jsonl not found"):
        Decontaminator.from_files([tmp_path / "nope.jsonl"])
    (tmp_path / "short.txt").write_text("only five words in here\n")
    with pytest.raises(GptkitError, match="no item .* has 13 words or more"):
        Decontaminator.from_files([tmp_path / "short.txt"])
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(GptkitError, match=r"bad\.jsonl:2: not valid JSON"):
        Decontaminator.from_files([tmp_path / "bad.jsonl"])
    r = subprocess.run([sys.executable, "-m", "gptkit", "prepare", str(tmp_path / "short.txt"), "--out", str(tmp_path / "o"),
                        "--tokenizer", "bytes", "--decontaminate", str(tmp_path / "nope.jsonl")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("gptkit: error: --decontaminate:")
    assert not (tmp_path / "o").exists()
