import gzip
import importlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gptkit.data import (
    ReadStats,
    TokenShards,
    corpus,
    format_summary,
    iter_documents,
    prepare,
    stdlib_corpus_files,
    unigram_entropy,
)
from gptkit.data.clean import CleanConfig
from gptkit.errors import GptkitError
from gptkit.tokenizer import Tokenizer, bytes_tokenizer, gpt2_tokenizer

from conftest import SAMPLE_TEXT

prepare_module = importlib.import_module("gptkit.data.prepare")  # the module (the package exports the function)

B = bytes_tokenizer()


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        content = content.encode() if isinstance(content, str) else content
        with gzip.open(path, "wb") as f:
            f.write(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def split_tokens(out: Path, split: str) -> np.ndarray:
    meta = json.loads((out / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"])
    parts = [np.fromfile(out / s["file"], dtype=dtype) for s in meta["splits"][split]["shards"]]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def expected(tok: Tokenizer, docs: list[str]) -> list[int]:
    return [i for d in docs for i in tok.encode(d) + [tok.eot_id]]


def docs_corpus(tmp_path: Path, n: int) -> tuple[Path, list[str]]:
    texts = [f"document {i}: " + "word " * (i % 7 + 1) + "\n" for i in range(n)]
    for i, t in enumerate(texts):
        write(tmp_path / "in" / f"d{i:03d}.txt", t)
    return tmp_path / "in", texts


NO_CLEANING = CleanConfig(pii="keep", dedup=False)  # these tests are about reading and encoding


def run(inputs, out, **kw):
    kw = {"tokenizer": "bytes", "progress": False, "num_workers": 1, "clean": NO_CLEANING} | kw
    return prepare(inputs, out, **kw)


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


# -- reading documents ---------------------------------------------------------------------


def test_directory_walk_is_sorted_and_skips_hidden_and_binary(tmp_path):
    write(tmp_path / "b.txt", "bee")
    write(tmp_path / "a" / "z.md", "zed")
    write(tmp_path / "a" / "y.py", "why = 1")
    write(tmp_path / ".hidden" / "h.txt", "hidden")
    write(tmp_path / ".dotfile", "dot")
    write(tmp_path / "img.png", b"\x89PNG not text")
    write(tmp_path / "blob.data", b"abc\x00def")  # NUL sniffed
    write(tmp_path / "empty.txt", "")
    stats = ReadStats()
    docs = list(iter_documents([tmp_path], stats=stats))
    assert [(Path(d.source).relative_to(tmp_path).as_posix(), d.text) for d in docs] == [("a/y.py", "why = 1"), ("a/z.md", "zed"), ("b.txt", "bee")]
    assert (stats.binary_files, stats.empty_documents) == (1, 1)


def test_jsonl_and_gz(tmp_path):
    write(tmp_path / "a.jsonl", '{"text": "one"}\n\n{"text": "two", "id": 2}\n')
    write(tmp_path / "b.jsonl.gz", '{"text": "three"}\n')
    write(tmp_path / "c.txt.gz", "four\n")
    docs = list(iter_documents([tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz", tmp_path / "c.txt.gz"]))
    assert [d.text for d in docs] == ["one", "two", "three", "four\n"]
    assert docs[1].source.endswith("a.jsonl:3")


def test_jsonl_field(tmp_path):
    write(tmp_path / "a.jsonl", '{"body": "hello", "text": 1}\n')
    assert [d.text for d in iter_documents([tmp_path / "a.jsonl"], field="body")] == ["hello"]
    with pytest.raises(GptkitError, match=r"a.jsonl:1: field 'text' is a int, not a string"):
        list(iter_documents([tmp_path / "a.jsonl"]))


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"text": "ok"}\n{"text": oops}\n', r"bad.jsonl:2: invalid JSON"),
        ('{"text": "ok"}\n{"other": "x"}\n', r"bad.jsonl:2: no field 'text'.*--field"),
        ('["text"]\n', r"bad.jsonl:1: no field 'text'"),
    ],
)
def test_bad_jsonl_names_file_and_line(tmp_path, content, message):
    write(tmp_path / "bad.jsonl", content)
    with pytest.raises(GptkitError, match=message):
        list(iter_documents([tmp_path / "bad.jsonl"]))


def test_missing_input(tmp_path):
    with pytest.raises(GptkitError, match="nope.txt does not exist"):
        list(iter_documents([tmp_path / "nope.txt"]))


def test_decode_error_policies(tmp_path):
    write(tmp_path / "good.txt", "fine")
    write(tmp_path / "bad.txt", b"caf\xe9 au lait")
    write(tmp_path / "bad.jsonl", b'{"text": "x\xff"}\n{"text": "lone \\udc80"}\n{"text": "ok"}\n')
    stats = ReadStats()
    docs = list(iter_documents([tmp_path], on_decode_error="replace", stats=stats))
    assert [d.text for d in docs] == ["x\ufffd", "lone \ufffd", "ok", "caf\ufffd au lait", "fine"]  # sorted names
    assert (stats.replaced_documents, stats.skipped_documents) == (3, 0)
    stats = ReadStats()
    docs = list(iter_documents([tmp_path], on_decode_error="skip", stats=stats))
    assert [d.text for d in docs] == ["ok", "fine"] and stats.skipped_documents == 3
    with pytest.raises(GptkitError, match=r"bad.jsonl:1: invalid UTF-8"):
        list(iter_documents([tmp_path], on_decode_error="error"))
    with pytest.raises(GptkitError, match=r"bad.txt: invalid UTF-8 at byte 3"):
        list(iter_documents([tmp_path / "bad.txt"], on_decode_error="error"))
    with pytest.raises(GptkitError, match="on_decode_error must be one of"):
        list(iter_documents([tmp_path], on_decode_error="ignore"))


def test_bad_gzip(tmp_path):
    (tmp_path / "cut.txt.gz").write_bytes(gzip.compress(b"hello world" * 100)[:-12])
    with pytest.raises(GptkitError, match="cut.txt.gz: not a readable gzip file"):
        list(iter_documents([tmp_path / "cut.txt.gz"]))
    (tmp_path / "x.txt.gz").write_bytes(b"not gzip at all")
    with pytest.raises(GptkitError, match="x.txt.gz: not a readable gzip file"):
        list(iter_documents([tmp_path / "x.txt.gz"]))


@pytest.fixture
def tiny_pieces(monkeypatch):
    """Make documents over ~300 characters flow in pieces, as multi-megabyte ones do."""
    monkeypatch.setattr(corpus, "PIECE_CHARS", 300)
    monkeypatch.setattr(corpus, "BLOCK_BYTES", 64)
    monkeypatch.setattr(prepare_module, "BATCH_CHARS", 500)


def test_long_documents_stream_in_pieces_with_identical_tokens(tmp_path, tiny_pieces):
    text = ("def f(x):\n    return x  # café\n\nclass C:\n  pass\n" * 40) + "\n\n\n   end  \n"
    write(tmp_path / "big.py", text)
    write(tmp_path / "big.py.gz", text)
    pieces = list(corpus._iter_pieces([(tmp_path / "big.py", False)], "text", ReadStats()))
    assert len(pieces) > 3 and [p[2] for p in pieces] == [False] * (len(pieces) - 1) + [True]
    assert "".join(p[0] for p in pieces) == text
    gpt2 = gpt2_tokenizer()
    assert [i for p in pieces for i in gpt2.encode(p[0])] == gpt2.encode(text)
    assert [d.text for d in iter_documents([tmp_path])] == [text, text]
    meta = run([tmp_path / "big.py"], tmp_path / "out", tokenizer=gpt2, val_fraction=0)
    assert split_tokens(tmp_path / "out", "train").tolist() == gpt2.encode(text) + [gpt2.eot_id]
    assert meta["splits"]["train"]["bytes"] == len(text.encode()) and meta["documents"] == 1


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab Z\n\r\t.,'s日é1_-\u00a0\u3000", max_size=200))
def test_safe_cuts_never_change_tokens(text):
    gpt2 = gpt2_tokenizer()
    cuts = [0] + [m.end() for m in corpus._SAFE_CUT.finditer(text)] + [len(text)]
    assert [i for a, b in zip(cuts, cuts[1:]) for i in gpt2.encode(text[a:b])] == gpt2.encode(text)


def test_long_single_line_prose_streams_too(tmp_path, tiny_pieces):
    text = "The cat sat on the mat, and the dog ran far away. " * 40
    write(tmp_path / "prose.txt", text)
    pieces = list(corpus._iter_pieces([(tmp_path / "prose.txt", False)], "text", ReadStats()))
    assert len(pieces) > 3 and "".join(p[0] for p in pieces) == text
    gpt2 = gpt2_tokenizer()
    assert [i for p in pieces for i in gpt2.encode(p[0])] == gpt2.encode(text)


def test_long_document_skip_policy_checks_before_streaming(tmp_path, tiny_pieces):
    write(tmp_path / "big.txt", ("line\n" * 200).encode() + b"\xff tail\n")
    stats = ReadStats()
    assert list(iter_documents([tmp_path], on_decode_error="skip", stats=stats)) == []
    assert stats.skipped_documents == 1


# -- prepare -------------------------------------------------------------------------------


def test_prepare_text_files(tmp_path):
    src, texts = docs_corpus(tmp_path, 30)
    meta = run([src], tmp_path / "out", val_fraction=0.2, seed=1)
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["DATACARD.md", "datacard.json", "merges.txt", "meta.json", "special_tokens_map.json", "tokenizer_config.json", "train_000000.bin", "val_000000.bin", "vocab.json"]
    assert meta == json.loads((out / "meta.json").read_text())
    assert (meta["format"], meta["dtype"], meta["vocab_size"], meta["eot_id"], meta["tokenizer"]) == ("gptkit-shards-v1", "uint16", 257, 256, "bytes")
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    assert train["documents"] + val["documents"] == meta["documents"] == 30 and val["documents"] > 0
    # each split is its documents' tokens + eot, in corpus order, and every count adds up
    in_val = [prepare_module._is_val(1, i, 0, 0.2) for i in range(30)]  # source i, its document 0
    for name, split, want in (("train", train, False), ("val", val, True)):
        docs = [t for t, v in zip(texts, in_val) if v == want]
        assert split_tokens(out, name).tolist() == expected(B, docs)
        assert split["tokens"] == sum(s["tokens"] for s in split["shards"]) == len(split_tokens(out, name))
        assert split["bytes"] == sum(len(d.encode()) for d in docs)
        assert split["documents"] == len(docs)
    assert meta["sources"] == [str(src.resolve())] and meta["decode_errors"]["replaced_documents"] == 0
    assert "30 documents" in format_summary(meta, 2.0) and "MB/s" in format_summary(meta, 2.0)


def test_prepare_jsonl_gz_with_field_and_gpt2(tmp_path):
    rows = [{"body": f"row {i}: {SAMPLE_TEXT}"} for i in range(5)]
    write(tmp_path / "rows.jsonl.gz", "".join(json.dumps(r) + "\n" for r in rows))
    meta = run([tmp_path / "rows.jsonl.gz"], tmp_path / "out", tokenizer="gpt2", field="body", val_fraction=0)
    gpt2 = gpt2_tokenizer()
    assert split_tokens(tmp_path / "out", "train").tolist() == expected(gpt2, [r["body"] for r in rows])
    assert meta["tokenizer"] == "gpt2" and meta["vocab_size"] == 50257 and meta["splits"]["val"]["tokens"] == 0
    assert meta["splits"]["val"]["shards"] == []


def test_workers_give_identical_output(tmp_path, tiny_pieces):
    src, _ = docs_corpus(tmp_path, 40)
    write(src / "long.txt", "word salad\n" * 100)
    m1 = run([src], tmp_path / "one", num_workers=1, val_fraction=0.1)
    m2 = run([src], tmp_path / "two", num_workers=2, val_fraction=0.1)
    for name in ("train", "val"):
        assert split_tokens(tmp_path / "one", name).tolist() == split_tokens(tmp_path / "two", name).tolist()
    assert m1["splits"] == m2["splits"]


def test_split_is_deterministic_by_seed(tmp_path):
    src, _ = docs_corpus(tmp_path, 40)
    a, b, c = (run([src], tmp_path / n, val_fraction=0.3, seed=s) for n, s in (("a", 5), ("b", 5), ("c", 6)))
    assert (tmp_path / "a" / "train_000000.bin").read_bytes() == (tmp_path / "b" / "train_000000.bin").read_bytes()
    assert (tmp_path / "a" / "val_000000.bin").read_bytes() == (tmp_path / "b" / "val_000000.bin").read_bytes()
    assert a["splits"] == b["splits"]
    assert split_tokens(tmp_path / "a", "val").tolist() != split_tokens(tmp_path / "c", "val").tolist()


def test_val_gets_the_last_document_when_none_drew_it(tmp_path):
    src, texts = docs_corpus(tmp_path, 5)
    meta = run([src], tmp_path / "out", val_fraction=1e-12, shard_tokens=7)
    assert split_tokens(tmp_path / "out", "val").tolist() == expected(B, texts[-1:])
    assert split_tokens(tmp_path / "out", "train").tolist() == expected(B, texts[:-1])
    assert (meta["splits"]["train"]["documents"], meta["splits"]["val"]["documents"]) == (4, 1)
    assert meta["splits"]["val"]["bytes"] == len(texts[-1].encode())
    assert all(0 < s["tokens"] <= 7 for sp in meta["splits"].values() for s in sp["shards"])
    TokenShards(tmp_path / "out", "train")  # shard sizes still match meta after the move


def test_single_document_is_split_by_tokens(tmp_path):
    text = "only one document here, café. " * 20
    write(tmp_path / "one.txt", text)
    meta = run([tmp_path / "one.txt"], tmp_path / "out", val_fraction=0.1, shard_tokens=50)
    train, val = split_tokens(tmp_path / "out", "train"), split_tokens(tmp_path / "out", "val")
    n = len(text.encode()) + 1
    assert len(val) == round(n * 0.1) and train.tolist() + val.tolist() == expected(B, [text])
    assert meta["splits"]["train"]["bytes"] + meta["splits"]["val"]["bytes"] == len(text.encode())
    assert meta["splits"]["val"]["bytes"] == len(val) - 1  # bytes tokenizer: one token per byte, plus eot
    assert "val_note" in meta


def test_val_fraction_zero_and_validation(tmp_path):
    src, texts = docs_corpus(tmp_path, 3)
    meta = run([src], tmp_path / "out", val_fraction=0)
    assert meta["splits"]["val"] == {"tokens": 0, "bytes": 0, "documents": 0, "shards": []}
    for kw, msg in (({"val_fraction": 1.0}, "val_fraction"), ({"shard_tokens": 0}, "shard_tokens"), ({"on_decode_error": "x"}, "on_decode_error")):
        with pytest.raises(GptkitError, match=msg):
            run([src], tmp_path / "bad", **kw)
    with pytest.raises(GptkitError, match="needs a vocab_size"):
        run([src], tmp_path / "bad", tokenizer="bpe")
    with pytest.raises(GptkitError, match="vocab_size applies only"):
        run([src], tmp_path / "bad", vocab_size=300)
    assert not (tmp_path / "bad").exists() and leftovers(tmp_path) == []


def test_dtype_rule(tmp_path):
    def wide(n: int) -> Tokenizer:  # 256 bytes + two-byte tokens, n ids in all
        ranks = {bytes([b]): b for b in range(256)}
        pairs = [bytes([a, b]) for a in range(256) for b in range(256)][: n - 257]
        ranks |= {p: 256 + i for i, p in enumerate(pairs)}
        return Tokenizer("bpe", ranks, [(p[:1], p[1:]) for p in pairs])

    write(tmp_path / "a.txt", "abc" * 10)
    for n, dtype in ((65536, "uint16"), (65537, "uint32")):
        t = wide(n)
        meta = run([tmp_path / "a.txt"], tmp_path / f"out{n}", tokenizer=t, val_fraction=0)
        assert meta["dtype"] == dtype and meta["vocab_size"] == n
        assert split_tokens(tmp_path / f"out{n}", "train").tolist() == expected(t, ["abc" * 10])
        assert os.path.getsize(tmp_path / f"out{n}" / "train_000000.bin") == meta["splits"]["train"]["tokens"] * np.dtype(dtype).itemsize
    x, y = TokenShards(tmp_path / "out65537", "train").get_batch(8, 4, torch.Generator().manual_seed(0))
    assert x.dtype == torch.long and int(torch.cat([x, y]).max()) > 65535  # ids past uint16 survive


def test_prepare_bpe_trains_then_encodes(tmp_path):
    src = tmp_path / "src"
    for i in range(6):
        write(src / f"{i}.txt", SAMPLE_TEXT * 3 + f"file {i}\n")
    meta = run([src], tmp_path / "out", tokenizer="bpe", vocab_size=400, num_workers=2)
    tok = Tokenizer.load(tmp_path / "out")
    assert tok.kind == meta["tokenizer"] == "bpe" and tok.vocab_size == meta["vocab_size"] <= 400
    docs = [d.text for d in iter_documents([src])]
    both = split_tokens(tmp_path / "out", "train").tolist() + split_tokens(tmp_path / "out", "val").tolist()
    assert sorted(both) == sorted(expected(tok, docs))
    assert meta["splits"]["train"]["tokens"] < 0.8 * sum(len(d.encode()) for d in docs)


def test_decode_errors_are_reported_in_meta(tmp_path):
    write(tmp_path / "in" / "bad.txt", b"caf\xe9")
    write(tmp_path / "in" / "good.txt", "good")
    meta = run([tmp_path / "in"], tmp_path / "out", val_fraction=0)
    assert meta["decode_errors"] == {"policy": "replace", "replaced_documents": 1, "skipped_documents": 0}
    meta = run([tmp_path / "in"], tmp_path / "out2", val_fraction=0, on_decode_error="skip")
    assert meta["decode_errors"]["skipped_documents"] == 1 and meta["documents"] == 1


# -- failures leave nothing behind ----------------------------------------------------------


def test_missing_and_empty_inputs(tmp_path):
    with pytest.raises(GptkitError, match="nope does not exist"):
        run([tmp_path / "nope"], tmp_path / "out")
    write(tmp_path / "e" / "empty.txt", "")
    write(tmp_path / "e" / "blank.jsonl", "\n\n")
    for tokenizer, kw in (("bytes", {}), ("bpe", {"vocab_size": 300})):
        with pytest.raises(GptkitError, match="no documents with text"):
            run([tmp_path / "e"], tmp_path / "out", tokenizer=tokenizer, **kw)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(GptkitError, match="no readable files"):
        run([tmp_path / "nothing"], tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("num_workers", [1, 2])
def test_error_midway_leaves_nothing(tmp_path, num_workers, tiny_pieces):
    src, _ = docs_corpus(tmp_path, 20)
    write(src / "zz.jsonl", '{"text": "fine"}\n{"text": broken\n')
    with pytest.raises(GptkitError, match=r"zz.jsonl:2: invalid JSON"):
        run([src], tmp_path / "out", num_workers=num_workers)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_existing_output_needs_overwrite(tmp_path):
    src, texts = docs_corpus(tmp_path, 3)
    out = tmp_path / "out"
    write(out / "keep.txt", "old")
    with pytest.raises(GptkitError, match="already exists and is not empty.*overwrite"):
        run([src], out)
    assert (out / "keep.txt").exists()
    # a failing overwrite keeps the old data
    with pytest.raises(GptkitError):
        run([src, tmp_path / "missing"], out, overwrite=True)
    assert (out / "keep.txt").exists()
    run([src], out, overwrite=True, val_fraction=0)
    assert not (out / "keep.txt").exists() and split_tokens(out, "train").tolist() == expected(B, texts)
    assert leftovers(tmp_path) == []
    (tmp_path / "empty").mkdir()
    run([src], tmp_path / "empty")  # an empty directory is fine to fill


def test_output_inside_input_is_not_read(tmp_path):
    src, texts = docs_corpus(tmp_path, 3)
    run([src], src / "prepared", val_fraction=0)
    meta = run([src], src / "prepared", val_fraction=0, overwrite=True)
    assert meta["documents"] == 3


# -- TokenShards ---------------------------------------------------------------------------


def fake_data(root: Path, sizes: list[int], split: str = "train", dtype: str = "uint16") -> Path:
    """Shard k holds k*1000, k*1000+1, ...: any window that straddles shards shows a jump."""
    root.mkdir(parents=True, exist_ok=True)
    shards = []
    for k, n in enumerate(sizes):
        (k * 1000 + np.arange(n)).astype(dtype).tofile(root / f"{split}_{k:06d}.bin")
        shards.append({"file": f"{split}_{k:06d}.bin", "tokens": n})
    splits = {split: {"tokens": sum(sizes), "bytes": 3 * sum(sizes), "documents": 1, "shards": shards}}
    meta = {"format": "gptkit-shards-v1", "dtype": dtype, "vocab_size": 1000 * len(sizes), "eot_id": 0, "tokenizer": "bytes", "splits": splits}
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def test_get_batch_windows(tmp_path):
    ds = TokenShards(fake_data(tmp_path, [12, 5, 20, 9]), "train")
    assert (ds.num_tokens, ds.num_bytes) == (46, 138)
    T = 8
    starts = set()
    for step in range(40):
        x, y = ds.get_batch(16, T, torch.Generator().manual_seed(step))
        assert x.shape == y.shape == (16, T) and x.dtype == y.dtype == torch.long
        assert torch.equal(x[:, 1:], y[:, :-1])
        assert torch.equal(y - x, torch.ones_like(x))  # consecutive: never crosses a shard boundary
        starts |= set(x[:, 0].tolist())
    # every valid start appears: 0..3 of shard 0, none of shard 1 (too short), 2000..2011, 3000
    assert starts == {*range(0, 4), *range(2000, 2012), 3000}


def test_get_batch_uses_only_the_generator(tmp_path):
    ds = TokenShards(fake_data(tmp_path, [100]), "train")
    torch.manual_seed(0)
    a = ds.get_batch(4, 8, torch.Generator().manual_seed(7))
    torch.manual_seed(1)
    b = ds.get_batch(4, 8, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_get_batch_on_prepared_data(tmp_path):
    src, _ = docs_corpus(tmp_path, 30)
    run([src], tmp_path / "out", shard_tokens=40, val_fraction=0)
    ds = TokenShards(tmp_path / "out", "train")
    tokens = split_tokens(tmp_path / "out", "train")
    assert len(ds.shards) > 5 and ds.num_tokens == len(tokens)
    x, y = ds.get_batch(32, 16, torch.Generator().manual_seed(0))
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        assert row_x[1:] == row_y[:-1]
        assert all(t < 257 for t in row_x + row_y)


def test_iter_eval_batches(tmp_path):
    ds = TokenShards(fake_data(tmp_path, [25, 3, 17]), "train")
    batches = list(ds.iter_eval_batches(batch_size=3, block_size=4))
    rows = torch.cat([x for x, _ in batches])
    # windows start at 0,4,...,20 in shard 0 (20+5 <= 25), none in shard 1, 2000..2012 in shard 2
    assert rows[:, 0].tolist() == [0, 4, 8, 12, 16, 20, 2000, 2004, 2008, 2012]
    assert [len(x) for x, _ in batches] == [3, 3, 3, 1]
    assert all(torch.equal(y - x, torch.ones_like(x)) for x, y in batches)
    assert len(list(ds.iter_eval_batches(3, 4, max_batches=2))) == 2
    assert [x.tolist() for x, _ in ds.iter_eval_batches(3, 4)] == [x.tolist() for x, _ in batches]


def test_too_short_split(tmp_path):
    ds = TokenShards(fake_data(tmp_path, [10]), "train")
    with pytest.raises(GptkitError, match=r"split 'train' of .* has 10 tokens, fewer than block_size\+1 = 11; use a smaller --block-size or more data"):
        ds.get_batch(1, 10, torch.Generator())
    with pytest.raises(GptkitError, match="fewer than block_size"):
        next(ds.iter_eval_batches(1, 10))
    ds.get_batch(1, 9, torch.Generator())
    ds = TokenShards(fake_data(tmp_path / "b", [6, 6]), "train")
    with pytest.raises(GptkitError, match="no shard of split 'train'"):
        ds.get_batch(1, 8, torch.Generator())


def test_bad_data_dirs(tmp_path):
    with pytest.raises(GptkitError, match="meta.json is missing"):
        TokenShards(tmp_path, "train")
    root = fake_data(tmp_path / "d", [10])
    with pytest.raises(GptkitError, match="has no split 'val'"):
        TokenShards(root, "val")
    with open(root / "train_000000.bin", "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(GptkitError, match=r"train_000000.bin has 22 bytes, meta.json says 10 tokens"):
        TokenShards(root, "train")
    (root / "train_000000.bin").unlink()
    with pytest.raises(GptkitError, match="train_000000.bin is missing"):
        TokenShards(root, "train")
    (root / "meta.json").write_text("{")
    with pytest.raises(GptkitError, match="meta.json is not valid JSON"):
        TokenShards(root, "train")
    (root / "meta.json").write_text('{"format": "something-else"}')
    with pytest.raises(GptkitError, match="not a gptkit-shards-v1 meta file"):
        TokenShards(root, "train")
    (root / "meta.json").write_text('{"format": "gptkit-shards-v1", "dtype": "float32"}')
    with pytest.raises(GptkitError, match="missing or malformed fields"):
        TokenShards(root, "train")


def test_unigram_entropy(tmp_path):
    root = tmp_path / "d"
    fake_data(root, [4])
    np.array([1, 1, 2, 3], dtype=np.uint16).tofile(root / "train_000000.bin")
    p = np.array([0.5, 0.25, 0.25])
    assert math.isclose(unigram_entropy(root), float(-(p * np.log(p)).sum()))


# -- stdlib corpus -------------------------------------------------------------------------


def test_stdlib_corpus_files():
    files = stdlib_corpus_files()
    assert len(files) > 100 and files == stdlib_corpus_files()
    assert all(f.suffix == ".py" for f in files)
    assert not [f for f in files if {"test", "tests", "idle_test", "site-packages"} & set(f.parts)]
    capped = stdlib_corpus_files(max_bytes=200_000)
    assert capped == files[: len(capped)] and sum(f.stat().st_size for f in capped) <= 200_000
    assert len(stdlib_corpus_files(max_bytes=1)) == 1


def test_progress_goes_to_stderr(tmp_path, capsys):
    src, _ = docs_corpus(tmp_path, 3)
    run([src], tmp_path / "out", progress=True)
    captured = capsys.readouterr()
    assert "tokenize" in captured.err and captured.out == ""
