"""`gptkit prepare --tokenizer DIR` with a family's tokenizer.json (gptkit/tokenizer_json.py): each document is
transformers' tokenizer(text) (Llama's BOS first) and the end-of-text separator, ids past 65535 in uint32
shards, a one-document corpus split as with gptkit's own tokenizers; tiny tokenizers trained in the test."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from family_tokenizers import build

from gptkit.cli import main
from gptkit.data import prepare
from gptkit.data.clean import CleanConfig
from gptkit.tokenizer import load_tokenizer

transformers = pytest.importorskip("transformers")
DOCS = ["Hello world, it's 1,234.56 dollars.", "naïve café 日本語 😀\n  def f(x):\n\treturn x", "Third one here."]
KEEP = CleanConfig(pii="keep", dedup=False)


def _tokens(out: Path, split: str) -> list[int]:
    meta = json.loads((out / "meta.json").read_text())
    return [int(i) for s in meta["splits"][split]["shards"] for i in np.fromfile(out / s["file"], dtype=meta["dtype"])]


def _corpus(tmp_path: Path, docs: list[str]) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["llama3", "qwen2", "llama2", "mistral"])
def test_each_document_is_transformers_ids_then_the_separator(tmp_path, kind):
    tok_dir = build(kind, tmp_path / "tok")
    out = tmp_path / "data"
    meta = prepare([_corpus(tmp_path, DOCS)], out, tokenizer=tok_dir, val_fraction=0, clean=KEEP, progress=False)
    hf = transformers.AutoTokenizer.from_pretrained(tok_dir)
    tok = load_tokenizer(tok_dir)
    want = [i for d in DOCS for i in [*hf(d).input_ids, tok.eot_id]]
    assert _tokens(out, "train") == want
    assert meta["dtype"] == "uint16" and meta["eot_id"] == hf.convert_tokens_to_ids(hf.eos_token)
    assert meta["splits"]["train"]["bytes"] == sum(len(d.encode()) for d in DOCS)
    assert (kind in ("llama3", "llama2", "mistral")) == (want[0] == hf.bos_token_id)  # Qwen adds no BOS


def test_a_one_document_corpus_splits_its_tokens_and_counts_its_bytes(tmp_path):
    tok_dir = build("llama2", tmp_path / "tok")
    text = " ".join(DOCS * 40)
    out = tmp_path / "data"
    meta = prepare([_corpus(tmp_path, [text])], out, tokenizer=tok_dir, val_fraction=0.25, clean=KEEP, progress=False)
    hf = transformers.AutoTokenizer.from_pretrained(tok_dir)
    assert _tokens(out, "train") + _tokens(out, "val") == [*hf(text).input_ids, hf.eos_token_id]
    splits = meta["splits"]
    assert splits["train"]["bytes"] + splits["val"]["bytes"] == len(text.encode()) and splits["val"]["bytes"] > 0


def _wide(directory: Path) -> Path:
    """A Qwen-style tokenizer whose vocabulary runs past 65535: unused pieces, then "Ze" at 70000."""
    build("qwen2", directory)
    path = directory / "tokenizer.json"
    d = json.loads(path.read_text())
    vocab = d["model"]["vocab"]
    n = max(vocab.values()) + 1
    vocab.update({f"<unused{i}>": i for i in range(n, 70_000)})
    vocab["Ze"] = 70_000
    d["model"]["merges"].insert(0, ["Z", "e"])
    path.write_text(json.dumps(d, ensure_ascii=False))
    return directory


def test_ids_past_65535_are_written_as_uint32(tmp_path, capsys):
    tok_dir = _wide(tmp_path / "tok")
    docs = ["Zebra and Zeta", *DOCS]
    out = tmp_path / "data"
    assert main(["prepare", str(_corpus(tmp_path, docs)), "--tokenizer", str(tok_dir), "--out", str(out),
                 "--val-fraction", "0", "--keep-duplicates", "--pii", "keep", "--workers", "1"]) == 0, capsys.readouterr().err
    meta = json.loads((out / "meta.json").read_text())
    hf = transformers.AutoTokenizer.from_pretrained(tok_dir)
    ids = _tokens(out, "train")
    assert meta["dtype"] == "uint32" and meta["vocab_size"] == 70_001 and 70_000 in ids
    assert ids == [i for d in docs for i in [*hf(d).input_ids, hf.convert_tokens_to_ids(hf.eos_token)]]


@pytest.mark.parametrize("kind", ["llama2", "qwen2"])
def test_a_long_document_read_in_pieces_is_tokenized_whole(tmp_path, monkeypatch, kind):
    """A text file longer than corpus.PIECE_CHARS is read in pieces cut where GPT-2's regex splits; a
    SentencePiece-style tokenizer's tokens cross such cuts (and it prefixes "▁"), so its documents are
    encoded whole; a byte-level one's pieces give the whole text's ids as they are."""
    import gptkit.data.corpus as corpus
    monkeypatch.setattr(corpus, "PIECE_CHARS", 64)
    tok_dir = build(kind, tmp_path / "tok")
    text = "This is a test of words and more words.\nIt goes on; we've paid 42 dollars " * 4
    (tmp_path / "doc.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "data"
    prepare([tmp_path / "doc.txt"], out, tokenizer=tok_dir, val_fraction=0, clean=KEEP, progress=False)
    hf = transformers.AutoTokenizer.from_pretrained(tok_dir)
    assert _tokens(out, "train") == [*hf(text).input_ids, load_tokenizer(tok_dir).eot_id]
