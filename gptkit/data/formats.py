"""Readers for the formats of the field: Parquet (pyarrow, a row group at a time), Arrow shards
of Hugging Face `datasets` directories, Hub datasets streamed through `datasets`, and zstd streams.

Each reader yields whole documents as (text, source, disk_bytes); corpus.py cuts long ones.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import GptkitError

ROWS_PER_BATCH = 1024
HUB_PREFIX = "hf:"


def is_hf_dir(path: Path) -> bool:
    """A directory written by `Dataset(Dict).save_to_disk`, or one `load_dataset` cached."""
    return path.is_dir() and any((path / n).is_file() for n in ("state.json", "dataset_dict.json", "dataset_info.json"))


def hf_dir_files(path: Path, split: str | None) -> list[Path]:
    """The Arrow files of a datasets directory, in order (a DatasetDict: `split`, or all splits)."""
    try:
        if (path / "dataset_dict.json").is_file():
            splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
            if split is not None:
                if split not in splits:
                    raise GptkitError(f"{path}: no split {split!r} in this dataset (it has {', '.join(splits)}); choose one with --hf-split")
                splits = [split]
            return [f for s in splits for f in hf_dir_files(path / s, None)]
        if (path / "state.json").is_file():
            state = json.loads((path / "state.json").read_text())
            return [path / f["filename"] for f in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GptkitError(f"{path}: not a readable datasets directory ({e})") from None
    files = sorted(p for p in path.iterdir() if p.suffix == ".arrow")  # a load_dataset cache directory
    if split is not None:
        files = [p for p in files if f"-{split}." in p.name or f"-{split}-" in p.name]
    if not files:
        raise GptkitError(f"{path}: a datasets directory without Arrow files" + (f" for split {split!r}" if split else ""))
    return files


def _column_docs(batches, field: str, where: str, size: int, total_rows: int | None, stats) -> Iterator[tuple[str, str, int]]:
    """Rows of a string column, from an iterator of pyarrow tables/record batches."""
    row, done_bytes = 0, 0
    for batch in batches:
        values = batch[field] if isinstance(batch, dict) else batch.column(field).to_pylist()
        for i, text in enumerate(values):
            source = f"{where}:row {row + i}"
            disk = 0
            if total_rows and i == len(values) - 1:
                disk = size * (row + len(values)) // total_rows - done_bytes
                done_bytes += disk
            if text is None or text == "":
                stats.empty_documents += 1
                continue
            if not isinstance(text, str):
                raise GptkitError(f"{source}: field {field!r} is a {type(text).__name__}, not a string")
            yield text, source, disk
        row += len(values)


def _check_column(schema, field: str, where: str, what: str) -> None:
    import pyarrow as pa

    names = schema.names
    if field not in names:
        raise GptkitError(f"{where}: no column {field!r} in this {what} (columns: {', '.join(names) or 'none'}); choose the text column with --field")
    t = schema.field(field).type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)):
        raise GptkitError(f"{where}: column {field!r} holds {t}, not strings; choose the text column with --field")


def parquet_docs(path: Path, field: str, stats) -> Iterator[tuple[str, str, int]]:
    """One document per row, read a row group at a time (batches of ROWS_PER_BATCH rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        _check_column(pf.schema_arrow, field, str(path), "Parquet file")
        total = pf.metadata.num_rows
        yield from _column_docs(pf.iter_batches(batch_size=ROWS_PER_BATCH, columns=[field]), field, str(path), path.stat().st_size, total, stats)
    except (pa.ArrowException, OSError) as e:
        raise GptkitError(f"{path}: not a readable Parquet file ({e})") from None


def arrow_docs(path: Path, field: str, stats) -> Iterator[tuple[str, str, int]]:
    """One Arrow shard of a datasets directory, memory-mapped by `datasets`."""
    import pyarrow as pa

    try:
        import datasets
    except ImportError:
        raise GptkitError("reading a datasets directory needs the datasets package: pip install 'gptkit[data]'") from None
    try:
        ds = datasets.Dataset.from_file(str(path))
        _check_column(ds.data.schema, field, str(path), "dataset")
        batches = ds.select_columns([field]).with_format("arrow").iter(batch_size=ROWS_PER_BATCH)
        yield from _column_docs(batches, field, str(path), path.stat().st_size, ds.num_rows, stats)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise GptkitError(f"{path}: not a readable datasets Arrow file ({e})") from None


def hub_spec(name: str) -> tuple[str, str | None]:
    """(repo or local path, config or None) of `hf:owner/name[:config]`; a local path is taken whole."""
    spec = name[len(HUB_PREFIX):]
    repo, _, config = spec.partition(":") if not os.path.exists(spec) else (spec, "", "")
    return repo, config or None


def hub_docs(name: str, field: str, split: str, stats) -> Iterator[tuple[str, str, int]]:
    """A Hub dataset id (or a local dataset directory/script path) streamed by `datasets`:
    `hf:owner/name` or `hf:owner/name:config`; rows are fetched as they are encoded."""
    try:
        import datasets
    except ImportError:
        raise GptkitError("hf: inputs need the datasets package: pip install 'gptkit[data]'") from None
    repo, config = hub_spec(name)
    try:
        ds = datasets.load_dataset(repo, config, split=split, streaming=True)

        def batches():
            for batch in ds.iter(batch_size=ROWS_PER_BATCH):
                if field not in batch:
                    raise GptkitError(f"{name}: no column {field!r} in this dataset (columns: {', '.join(batch)}); choose the text column with --field")
                yield batch

        yield from _column_docs(batches(), field, name, 0, None, stats)
    except GptkitError:
        raise
    except Exception as e:  # datasets raises many types for "not found", "offline", "no such split"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GptkitError(f"{name}: cannot stream this dataset ({type(e).__name__}: {msg})") from None


class _ZstdStream(io.RawIOBase):
    """Decompressed bytes of a .zst file (several frames in a row too). zstandard's own
    stream_reader ends quietly at a truncated frame; this says so."""

    def __init__(self, raw, zstandard):
        self.raw, self.z = raw, zstandard
        self.d = zstandard.ZstdDecompressor().decompressobj()
        self.buf, self.started, self.pos = b"", False, 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        """Decompressed bytes handed out so far (the progress bar counts text bytes)."""
        return self.pos

    def readinto(self, b) -> int:
        while not self.buf:
            chunk = self.raw.read(1 << 20)
            if not chunk:
                if self.started and not self.d.eof:
                    raise self.z.ZstdError("the stream ends inside a frame (truncated)")
                return 0
            while chunk:
                if self.d.eof:  # the next frame
                    self.d = self.z.ZstdDecompressor().decompressobj()
                self.started = True
                self.buf += self.d.decompress(chunk)
                chunk = self.d.unused_data if self.d.eof else b""
        n = min(len(b), len(self.buf))
        b[:n], self.buf = self.buf[:n], self.buf[n:]
        self.pos += n
        return n


def open_zstd(raw) -> io.BufferedReader:
    try:
        import zstandard
    except ImportError:
        raise GptkitError("reading .zst files needs the zstandard package: pip install 'gptkit[data]'") from None
    return io.BufferedReader(_ZstdStream(raw, zstandard), 1 << 20)


def zstd_errors() -> tuple[type, ...]:
    try:
        import zstandard
    except ImportError:
        return ()
    return (zstandard.ZstdError,)
