"""Parquet, zstd, gzip, datasets directories and hf: ids give the same tokens as the same text in
.txt files; broken inputs are one clear line."""
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from gptkit.data import iter_documents, prepare
from gptkit.data.clean import CleanConfig
from gptkit.errors import GptkitError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
zstd = pytest.importorskip("zstandard")

TEXTS = [f"Document {i}: the quick brown fox {'jumps ' * (i + 1)}over café 日本 {i * 7}.\n" for i in range(12)]
TEXTS[3] = ""  # an empty row is left out, like an empty file


def tokens(out: Path) -> dict:
    meta = json.loads((out / "meta.json").read_text())
    res = {}
    for split in ("train", "val"):
        parts = [np.fromfile(out / s["file"], dtype=meta["dtype"]) for s in meta["splits"][split]["shards"]]
        res[split] = np.concatenate(parts).tolist() if parts else []
    return res


def run(inputs, out, **kw):
    kw = {"tokenizer": "gpt2", "progress": False, "num_workers": 1, "val_fraction": 0, "command": "test"} | kw
    return prepare(inputs, out, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same rows as one JSONL file (one document per line, like every row format)."""
    d = tmp_path_factory.mktemp("ref")
    (d / "rows.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    run([d / "rows.jsonl"], d / "out")
    return tokens(d / "out")


def test_parquet_streams_by_row_group(tmp_path, reference):
    table = pa.table({"id": list(range(len(TEXTS))), "text": TEXTS})
    pq.write_table(table, tmp_path / "rows.parquet", row_group_size=5)
    assert pq.ParquetFile(tmp_path / "rows.parquet").num_row_groups == 3
    run([tmp_path / "rows.parquet"], tmp_path / "out")
    assert tokens(tmp_path / "out") == reference
    docs = list(iter_documents([tmp_path / "rows.parquet"]))
    assert [d.text for d in docs] == [t for t in TEXTS if t] and docs[0].source.endswith("rows.parquet:row 0")


def test_zstd_and_gzip_jsonl(tmp_path, reference):
    data = "".join(json.dumps({"text": t}) + "\n" for t in TEXTS).encode()
    (tmp_path / "rows.jsonl.zst").write_bytes(zstd.ZstdCompressor().compress(data))
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "rows.jsonl.gz").write_bytes(gzip.compress(data))
    run([tmp_path / "rows.jsonl.zst"], tmp_path / "zst")
    run([tmp_path / "g"], tmp_path / "gz")  # found by walking a directory too
    assert tokens(tmp_path / "zst") == reference == tokens(tmp_path / "gz")


def test_zstd_text_file_equals_txt(tmp_path):
    text = "".join(TEXTS) * 50
    (tmp_path / "a.txt").write_text(text)
    (tmp_path / "a.txt.zst").write_bytes(zstd.ZstdCompressor().compress(text.encode()))
    run([tmp_path / "a.txt"], tmp_path / "t", val_fraction=0)
    run([tmp_path / "a.txt.zst"], tmp_path / "z", val_fraction=0)
    assert tokens(tmp_path / "t") == tokens(tmp_path / "z")


def test_datasets_directories_saved_and_dict(tmp_path, reference):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": TEXTS, "n": list(range(len(TEXTS)))})
    ds.save_to_disk(str(tmp_path / "saved"), num_shards=3)  # several Arrow shards
    assert len(json.loads((tmp_path / "saved" / "state.json").read_text())["_data_files"]) > 1
    run([tmp_path / "saved"], tmp_path / "out")
    assert tokens(tmp_path / "out") == reference
    datasets.DatasetDict({"train": ds, "test": datasets.Dataset.from_dict({"text": ["other"], "n": [0]})}).save_to_disk(str(tmp_path / "dd"))
    run([tmp_path / "dd"], tmp_path / "dd-out", hf_split="train")
    assert tokens(tmp_path / "dd-out") == reference
    with pytest.raises(GptkitError, match="no split 'nope'.*--hf-split"):
        run([tmp_path / "dd"], tmp_path / "x", hf_split="nope")


def test_hub_id_streams_through_datasets(tmp_path, reference, monkeypatch):
    """hf:NAME goes through datasets.load_dataset(..., streaming=True); here NAME is a dataset
    directory the test writes (no network), which load_dataset streams the same way."""
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    d = tmp_path / "hubdata"
    d.mkdir()
    pq.write_table(pa.table({"text": TEXTS}), d / "train.parquet", row_group_size=4)
    run([f"hf:{d}"], tmp_path / "out")
    assert tokens(tmp_path / "out") == reference
    with pytest.raises(GptkitError, match="no column 'body'"):
        run([f"hf:{d}"], tmp_path / "x", field="body")


def test_parquet_without_the_field(tmp_path):
    pq.write_table(pa.table({"content": ["a", "b"]}), tmp_path / "x.parquet")
    with pytest.raises(GptkitError, match=r"x.parquet: no column 'text' in this Parquet file \(columns: content\); choose the text column with --field"):
        run([tmp_path / "x.parquet"], tmp_path / "out")
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "n.parquet")
    with pytest.raises(GptkitError, match="column 'text' holds int64, not strings"):
        run([tmp_path / "n.parquet"], tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_corrupted_compressed_streams_say_which_file_and_where(tmp_path):
    data = ("".join(TEXTS) * 200).encode()
    z = bytearray(zstd.ZstdCompressor().compress(data))
    z[len(z) // 2] ^= 0xFF
    (tmp_path / "bad.txt.zst").write_bytes(bytes(z))
    (tmp_path / "cut.txt.zst").write_bytes(zstd.ZstdCompressor().compress(data)[:-20])
    g = bytearray(gzip.compress(data))
    g[len(g) // 2] ^= 0xFF
    (tmp_path / "bad.txt.gz").write_bytes(bytes(g))
    for name, kind in (("bad.txt.zst", "zstd"), ("cut.txt.zst", "zstd"), ("bad.txt.gz", "gzip")):
        with pytest.raises(GptkitError, match=rf"{name}: not a readable {kind} file: corrupted or truncated data near byte [\d,]+ of [\d,]+"):
            run([tmp_path / name], tmp_path / "out", clean=CleanConfig(pii="keep", dedup=False))
        assert not (tmp_path / "out").exists()
