"""Corpus reading, `prepare` (text -> token shards) and `TokenShards` (shards -> batches).

A prepared data directory holds:
  train_000000.bin, ...  raw little-endian token ids (uint16, or uint32 past 65536 ids),
  val_000000.bin, ...    each document's tokens followed by <|endoftext|>;
  vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json  (the tokenizer);
  meta.json              counts, shard sizes, dtype and provenance ("gptkit-shards-v1").
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import multiprocessing as mp
import os
import re
import shutil
import sys
import sysconfig
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gptkit.errors import GptkitError
from gptkit.tokenizer import Tokenizer, load_tokenizer, train_bpe

FORMAT = "gptkit-shards-v1"
DECODE_POLICIES = ("replace", "skip", "error")
BLOCK_BYTES = 1 << 20  # read files in 1 MiB blocks
PIECE_CHARS = 1 << 20  # a document longer than this flows through in pieces of about this size
BATCH_CHARS = 2 << 20  # text per task sent to an encoding worker
SNIFF_BYTES = 8192  # a NUL byte in a walked file's first 8 KiB marks it as binary
BINARY_SUFFIXES = frozenset(
    ".png .jpg .jpeg .gif .bmp .ico .webp .tif .tiff .svgz .pdf .zip .tar .tgz .bz2 .xz .lzma .zst .7z .rar "
    ".whl .egg .jar .class .so .dll .dylib .exe .o .a .lib .obj .pyc .pyo .pyd .bin .dat .npy .npz .pt .pth "
    ".ckpt .safetensors .onnx .pkl .pickle .db .sqlite .sqlite3 .mp3 .mp4 .wav .flac .ogg .avi .mov .mkv .webm "
    ".woff .woff2 .ttf .otf .eot .psd .parquet .arrow .feather .h5 .hdf5".split()
)
# Where a long document may be cut without changing its tokens, because GPT-2's regex never
# lets a piece cross there: after a newline with a letter, digit or ASCII symbol on both
# sides, or between an ASCII letter and " letter" (the space starts the next word's piece).
_SAFE_CUT = re.compile(r"[\w!-~]\n(?=[\w!-~])|[A-Za-z](?= [A-Za-z])")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Document:
    text: str
    source: str  # "path" or "path:line" for .jsonl


@dataclass
class ReadStats:
    """What reading skipped or repaired, reported in meta.json."""

    policy: str = "replace"
    replaced_documents: int = 0  # had undecodable bytes turned into U+FFFD
    skipped_documents: int = 0  # had undecodable bytes and policy "skip"
    empty_documents: int = 0  # no text at all: left out
    binary_files: int = 0  # found while walking a directory and left out
    files: int = 0


# -- reading -------------------------------------------------------------------------------


_replacements = [0]  # bumped by the "gptkit-count" codec error handler below


def _count_and_replace(err: UnicodeDecodeError) -> tuple[str, int]:
    _replacements[0] += 1
    return "\ufffd", err.end


codecs.register_error("gptkit-count", _count_and_replace)


def _inner_suffix(path: Path) -> str:
    """".jsonl" for both a.jsonl and a.jsonl.gz."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    return Path(name).suffix.lower()


def _list_files(inputs: Iterable[str | os.PathLike], exclude: Path | None = None) -> list[tuple[Path, bool]]:
    """Files to read, as (path, found_by_walking); directories are walked sorted, skipping hidden
    names, binary suffixes and the directory `exclude` (prepare's own output)."""
    exclude = exclude.resolve() if exclude is not None else None
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            files.append((path, False))
        elif path.is_dir():
            walked = []
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and Path(root, d).resolve() != exclude)
                walked += [Path(root, n) for n in names if not n.startswith(".")]
            walked = [p for p in walked if _inner_suffix(p) not in BINARY_SUFFIXES]
            files += [(p, True) for p in sorted(walked, key=lambda p: p.parts)]
        else:
            raise GptkitError(f"input {path} does not exist")
    return files


@contextmanager
def _open_bytes(path: Path):
    """(decompressed stream, raw file) so progress can follow the bytes read from disk."""
    with open(path, "rb") as raw:
        if path.name.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw) as f:
                yield f, raw
        else:
            yield raw, raw


def _utf8_ok(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with _open_bytes(path) as (f, _):
            while block := f.read(BLOCK_BYTES):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _text_pieces(path: Path, walked: bool, stats: ReadStats) -> Iterator[tuple[str, str, bool, int]]:
    """One plain-text file as one document, in pieces: (text, source, is_last, disk_bytes)."""
    policy = stats.policy
    decoder = codecs.getincrementaldecoder("utf-8")("gptkit-count" if policy == "replace" else "strict")
    replaced_before, checked, buf, pos, offset, searched = _replacements[0], False, "", 0, 0, 0
    with _open_bytes(path) as (f, raw):
        while True:
            block = f.read(BLOCK_BYTES)
            if offset == 0 and walked and b"\0" in block[:SNIFF_BYTES]:
                stats.binary_files += 1
                return
            try:
                buf += decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                if policy == "skip":  # nothing was yielded yet: long documents are checked first
                    stats.skipped_documents += 1
                    return
                raise GptkitError(f"{path}: invalid UTF-8 at byte {offset + e.start} (use on_decode_error 'replace' or 'skip')") from None
            offset += len(block)
            if not block:
                break
            if len(buf) >= PIECE_CHARS:
                cut, searched = _last_safe_cut(buf, searched), len(buf)
                if cut > 0:
                    if policy == "skip" and not checked:
                        if not _utf8_ok(path):
                            stats.skipped_documents += 1
                            return
                        checked = True
                    yield buf[:cut], str(path), False, raw.tell() - pos
                    buf, pos, searched = buf[cut:], raw.tell(), len(buf) - cut
        if _replacements[0] != replaced_before:
            stats.replaced_documents += 1
        yield buf, str(path), True, raw.tell() - pos


def _last_safe_cut(text: str, searched: int) -> int:
    """Index of the last safe cut in `text`, or -1; text[:searched] is known to have none."""
    cut = -1
    for m in _SAFE_CUT.finditer(text, max(0, searched - 2)):
        cut = m.end()
    return cut


def _jsonl_pieces(path: Path, walked: bool, field: str, stats: ReadStats) -> Iterator[tuple[str, str, bool, int]]:
    """One document per non-blank line, taking `field`."""
    policy = stats.policy
    with _open_bytes(path) as (f, raw):
        pos = 0
        for lineno, line in enumerate(f, 1):
            where = f"{path}:{lineno}"
            if lineno == 1 and walked and b"\0" in line[:SNIFF_BYTES]:
                stats.binary_files += 1
                return
            if not line.strip():
                continue
            replaced = False
            try:
                line_text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                if policy == "error":
                    raise GptkitError(f"{where}: invalid UTF-8 at byte {e.start} of the line (use on_decode_error 'replace' or 'skip')") from None
                if policy == "skip":
                    stats.skipped_documents += 1
                    continue
                line_text, replaced = line.decode("utf-8", errors="replace"), True
            try:
                obj = json.loads(line_text)
            except json.JSONDecodeError as e:
                raise GptkitError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict) or field not in obj:
                raise GptkitError(f"{where}: no field {field!r} in this JSON line (choose the text field with --field)")
            text = obj[field]
            if not isinstance(text, str):
                raise GptkitError(f"{where}: field {field!r} is a {type(text).__name__}, not a string")
            if _LONE_SURROGATE.search(text):  # "\udc80" escapes: not encodable text
                if policy == "error":
                    raise GptkitError(f"{where}: field {field!r} holds a lone UTF-16 surrogate (use on_decode_error 'replace' or 'skip')")
                if policy == "skip":
                    stats.skipped_documents += 1
                    continue
                text, replaced = _LONE_SURROGATE.sub("\ufffd", text), True
            stats.replaced_documents += replaced
            yield text, where, True, raw.tell() - pos
            pos = raw.tell()


def _read_file(path: Path, walked: bool, field: str, stats: ReadStats) -> Iterator[tuple[str, str, bool, int]]:
    try:
        if _inner_suffix(path) == ".jsonl":
            yield from _jsonl_pieces(path, walked, field, stats)
        else:
            yield from _text_pieces(path, walked, stats)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise GptkitError(f"{path}: not a readable gzip file ({e or 'truncated'})") from None
    except OSError as e:
        raise GptkitError(f"{path}: cannot read ({e.strerror or e})") from None


def _iter_pieces(files: list[tuple[Path, bool]], field: str, stats: ReadStats) -> Iterator[tuple[str, str, bool, int]]:
    """All documents' text as (text, source, is_last_piece_of_document, disk_bytes); empty ones left out."""
    for path, walked in files:
        stats.files += 1
        first = True
        for piece in _read_file(path, walked, field, stats):
            if first and piece[2] and not piece[0]:
                stats.empty_documents += 1
            else:
                yield piece
            first = piece[2]


def _check_policy(on_decode_error: str) -> None:
    if on_decode_error not in DECODE_POLICIES:
        raise GptkitError(f"on_decode_error must be one of {', '.join(DECODE_POLICIES)}, got {on_decode_error!r}")


def iter_documents(
    inputs: Iterable[str | os.PathLike],
    field: str = "text",
    on_decode_error: str = "replace",
    stats: ReadStats | None = None,
) -> Iterator[Document]:
    """Documents of `inputs`: a text file is one, a .jsonl line is one (its `field`), .gz is read
    through; directories are walked recursively in sorted order, skipping hidden and binary files.

    Undecodable bytes: "replace" with U+FFFD, "skip" the document, or "error"; `stats` counts them.
    """
    _check_policy(on_decode_error)
    stats = stats if stats is not None else ReadStats()
    stats.policy = on_decode_error
    parts = []
    for text, source, last, _ in _iter_pieces(_list_files(_as_list(inputs)), field, stats):
        parts.append(text)
        if last:
            yield Document("".join(parts), source)
            parts = []


def _as_list(inputs) -> list:
    return [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)


# -- prepare -------------------------------------------------------------------------------


def _is_val(seed: int, index: int, val_fraction: float) -> bool:
    """Stable per-document coin: the same (seed, index) lands in the same split on any machine."""
    h = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < val_fraction


class _ShardWriter:
    """Appends token ids to NAME_000000.bin, NAME_000001.bin, ... of at most `shard_tokens` each."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.directory, self.split, self.dtype, self.shard_tokens = directory, split, dtype, shard_tokens
        self.sizes: list[int] = []
        self._file = None

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def path(self, i: int) -> Path:
        return self.directory / f"{self.split}_{i:06d}.bin"

    def write(self, ids: np.ndarray) -> None:
        ids = ids.astype(self.dtype, copy=False)
        while len(ids):
            if self._file is None or self.sizes[-1] == self.shard_tokens:
                self.close()
                self._file = open(self.path(len(self.sizes)), "wb")
                self.sizes.append(0)
            room = self.shard_tokens - self.sizes[-1]
            self._file.write(ids[:room].tobytes())
            self.sizes[-1] += len(ids[:room])
            ids = ids[room:]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def pop_tail(self, start: int, chunk: int = 1 << 24) -> Iterator[np.ndarray]:
        """Yield the tokens from global position `start` on, then cut them off the shards
        (consume it fully)."""
        self.close()
        if start >= self.total:
            return
        first, before = 0, 0
        while before + self.sizes[first] <= start:
            before += self.sizes[first]
            first += 1
        local = start - before
        for i in range(first, len(self.sizes)):
            lo = local if i == first else 0
            for a in range(lo, self.sizes[i], chunk):
                n = min(chunk, self.sizes[i] - a)
                yield np.fromfile(self.path(i), dtype=self.dtype, count=n, offset=a * self.dtype.itemsize)
        for i in range(len(self.sizes) - 1, first - 1, -1):
            if i == first and local > 0:
                os.truncate(self.path(i), local * self.dtype.itemsize)
                self.sizes[i] = local
            else:
                self.path(i).unlink()
                self.sizes.pop()


_worker_tokenizer: Tokenizer | None = None
_worker_dtype = np.dtype("<u4")


def _init_worker(tokenizer: Tokenizer | None, dtype: np.dtype) -> None:
    global _worker_tokenizer, _worker_dtype
    _worker_tokenizer, _worker_dtype = tokenizer, dtype


def _encode_pieces(batch: list[tuple]) -> list[tuple]:
    """Worker task: (text, *tags) -> (ids, UTF-8 byte count, *tags)."""
    encode = _worker_tokenizer.encode_array
    return [(encode(text).astype(_worker_dtype), len(text.encode("utf-8")), *tags) for text, *tags in batch]


@contextmanager
def _encoder_map(tokenizer: Tokenizer, dtype: np.dtype, num_workers: int) -> Iterator[Callable]:
    """An ordered `map` of `_encode_pieces`: in process for one worker, else over a Pool."""
    if num_workers <= 1:
        _init_worker(tokenizer, dtype)
        try:
            yield lambda batches: map(_encode_pieces, batches)
        finally:
            _init_worker(None, dtype)
        return
    # fork shares the tokenizer for free; elsewhere it is pickled to each worker.
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    pool = ctx.Pool(num_workers, initializer=_init_worker, initargs=(tokenizer, dtype))
    try:
        # Pool's task feeder blocks on the pipe, so only a few batches are ever in flight.
        yield lambda batches: pool.imap(_encode_pieces, batches, chunksize=1)
    finally:
        pool.terminate()
        pool.join()


def _batches(pieces: Iterator[tuple], seed: int, val_fraction: float) -> Iterator[list[tuple]]:
    """Group pieces into ~BATCH_CHARS tasks tagged (split, is_first, is_last, disk_bytes)."""
    batch, size, index, first, split = [], 0, -1, True, "train"
    for text, _, last, disk in pieces:
        if first:
            index += 1
            split = "val" if _is_val(seed, index, val_fraction) else "train"
        batch.append((text, split, first, last, disk))
        size, first = size + len(text), last
        if size >= BATCH_CHARS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def prepare(
    inputs: Iterable[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    tokenizer: str | os.PathLike | Tokenizer = "gpt2",
    vocab_size: int | None = None,
    field: str = "text",
    val_fraction: float = 0.01,
    seed: int = 1337,
    shard_tokens: int = 100_000_000,
    num_workers: int | None = None,
    on_decode_error: str = "replace",
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Tokenize `inputs` into a data directory of shards; return its meta.

    tokenizer: "gpt2", "bytes", a tokenizer directory, a Tokenizer, or "bpe" to train one of
    `vocab_size` ids on the same inputs first (a separate streaming pass).
    Documents go to val with probability `val_fraction`, decided by a hash of (seed, index).
    If none did, the last document moves to val; a corpus of one document gives val the last
    `val_fraction` of its tokens instead (both splits then count that one document).
    Everything is built in a hidden temp dir beside `out_dir` and renamed into place at the end.
    """
    inputs = _as_list(inputs)
    _check_policy(on_decode_error)
    if not 0 <= val_fraction < 1:
        raise GptkitError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not isinstance(shard_tokens, int) or shard_tokens < 1:
        raise GptkitError(f"shard_tokens must be a positive integer, got {shard_tokens!r}")
    if tokenizer == "bpe" and vocab_size is None:
        raise GptkitError("tokenizer 'bpe' needs a vocab_size (e.g. --vocab-size 8192)")
    if tokenizer != "bpe" and vocab_size is not None:
        raise GptkitError(f"vocab_size applies only to tokenizer 'bpe'; {tokenizer} has a fixed vocabulary")
    num_workers = num_workers or os.cpu_count() or 1
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise GptkitError(f"output {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise GptkitError(f"output {out_dir} already exists and is not empty (pass overwrite=True / --overwrite to replace it)")
    files = _list_files(inputs, exclude=out_dir)
    if not files:
        raise GptkitError(f"no readable files in {', '.join(map(str, inputs))}")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        total_disk = sum(p.stat().st_size for p, _ in files)
        if isinstance(tokenizer, Tokenizer):
            tok = tokenizer
        elif tokenizer == "bpe":
            tok = _train_on(files, field, on_decode_error, vocab_size, total_disk, progress)
        else:
            tok = load_tokenizer(tokenizer)
        meta = _encode_corpus(files, tmp, tok, field, val_fraction, seed, shard_tokens, num_workers, on_decode_error, total_disk, progress)
        meta["sources"] = [str(Path(p).resolve()) for p in inputs]
        tok.save(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _move_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _train_on(files, field, on_decode_error, vocab_size, total_disk, progress) -> Tokenizer:
    stats = ReadStats(policy=on_decode_error)
    bar = tqdm(total=total_disk, unit="B", unit_scale=True, desc="train bpe", disable=not progress, file=sys.stderr)
    seen = 0

    def texts() -> Iterator[str]:
        nonlocal seen
        for text, _, _, disk in _iter_pieces(files, field, stats):
            seen += 1
            bar.update(disk)
            yield text

    with bar:
        tok = train_bpe(texts(), vocab_size)
    if not seen:
        raise GptkitError(f"no documents with text in {len(files)} file(s): every one was empty, binary or skipped")
    return tok


def _encode_corpus(files, tmp, tok, field, val_fraction, seed, shard_tokens, num_workers, on_decode_error, total_disk, progress) -> dict:
    dtype = np.dtype("<u2") if tok.vocab_size <= 65536 else np.dtype("<u4")
    writers = {s: _ShardWriter(tmp, s, dtype, shard_tokens) for s in ("train", "val")}
    splits = {s: {"tokens": 0, "bytes": 0, "documents": 0} for s in writers}
    stats = ReadStats(policy=on_decode_error)
    eot = np.array([tok.eot_id], dtype=dtype)
    last_train_start = 0
    batches = _batches(_iter_pieces(files, field, stats), seed, val_fraction)
    bar = tqdm(total=total_disk, unit="B", unit_scale=True, desc="tokenize", disable=not progress, file=sys.stderr)
    with bar, _encoder_map(tok, dtype, num_workers) as encode:
        for results in encode(batches):
            for ids, nbytes, split, first, last, disk in results:
                w = writers[split]
                if first:
                    splits[split]["documents"] += 1
                    last_train_start = w.total if split == "train" else last_train_start
                w.write(ids)
                if last:
                    w.write(eot)
                splits[split]["bytes"] += nbytes
                bar.update(disk)
    for w in writers.values():
        w.close()
    documents = splits["train"]["documents"] + splits["val"]["documents"]
    if documents == 0:
        raise GptkitError(f"no documents with text in {len(files)} file(s): every one was empty, binary or skipped")
    note = None
    if val_fraction > 0 and splits["val"]["documents"] == 0:
        if documents >= 2:  # no document drew val: move the last one there
            moved = _move_tail(writers["train"], writers["val"], last_train_start, tok)
            splits["train"]["documents"] -= 1
            note = "no document drew val, so the last document was moved there"
        else:  # one document: val is its last val_fraction of tokens
            n = writers["train"].total
            moved = _move_tail(writers["train"], writers["val"], n - min(n - 1, max(1, round(n * val_fraction))), tok)
            note = "the corpus is one document: val is its last val_fraction of tokens"
        splits["val"]["documents"] = 1
        splits["train"]["bytes"] -= moved
        splits["val"]["bytes"] += moved
    for s, w in writers.items():
        splits[s]["tokens"] = w.total
        splits[s]["shards"] = [{"file": w.path(i).name, "tokens": n} for i, n in enumerate(w.sizes)]
    meta = {
        "format": FORMAT,
        "dtype": dtype.name,
        "vocab_size": tok.vocab_size,
        "eot_id": tok.eot_id,
        "tokenizer": tok.kind,
        "documents": documents,
        "splits": splits,
        "val_fraction": val_fraction,
        "seed": seed,
        "shard_tokens": shard_tokens,
        "files": stats.files - stats.binary_files,
        "skipped_binary_files": stats.binary_files,
        "empty_documents": stats.empty_documents,
        "decode_errors": {
            "policy": on_decode_error,
            "replaced_documents": stats.replaced_documents,
            "skipped_documents": stats.skipped_documents,
        },
    }
    if note:
        meta["val_note"] = note
    return meta


def _move_tail(train: _ShardWriter, val: _ShardWriter, start: int, tok: Tokenizer) -> int:
    """Move train's tokens from `start` on to val; return the text bytes they stand for."""
    lengths = np.array([len(t) for t in sorted(tok.ranks, key=tok.ranks.__getitem__)] + [0], dtype=np.int64)
    nbytes = 0
    for ids in train.pop_tail(start):
        val.write(ids)
        nbytes += int(lengths[ids].sum())
    val.close()
    return nbytes


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    os.replace(out_dir, old)  # keep the previous data until the new one is in place
    os.replace(tmp, out_dir)
    shutil.rmtree(old)


def format_summary(meta: dict, seconds: float) -> str:
    """One line for the CLI: documents, bytes, tokens, bytes/token and throughput."""
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    nbytes, tokens = train["bytes"] + val["bytes"], train["tokens"] + val["tokens"]
    return (
        f"{meta['documents']:,} documents ({train['documents']:,} train / {val['documents']:,} val), "
        f"{nbytes / 1e6:,.1f} MB -> {tokens:,} tokens ({train['tokens']:,} train / {val['tokens']:,} val), "
        f"{nbytes / max(tokens, 1):.2f} bytes/token, {seconds:.1f} s at {nbytes / 1e6 / max(seconds, 1e-9):.1f} MB/s"
    )


# -- reading shards ------------------------------------------------------------------------


def read_meta(data_dir: str | os.PathLike) -> dict:
    path = Path(data_dir) / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GptkitError(f"{path} is missing: is {data_dir} a data directory made by `gptkit prepare`?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GptkitError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise GptkitError(f"{path}: not a {FORMAT} meta file")
    try:
        assert meta["dtype"] in ("uint16", "uint32") and isinstance(meta["vocab_size"], int)
        for s in meta["splits"].values():
            assert all(isinstance(x["file"], str) and isinstance(x["tokens"], int) for x in s["shards"])
            assert isinstance(s["tokens"], int) and isinstance(s["bytes"], int)
    except (AssertionError, KeyError, TypeError, AttributeError):
        raise GptkitError(f"{path}: missing or malformed fields (dtype, vocab_size, splits)") from None
    return meta


class TokenShards:
    """One split of a prepared data directory, memory-mapped."""

    def __init__(self, data_dir: str | os.PathLike, split: str):
        self.data_dir, self.split = Path(data_dir), split
        self.meta = read_meta(data_dir)
        if split not in self.meta["splits"]:
            raise GptkitError(f"{self.data_dir / 'meta.json'}: has no split {split!r}")
        info = self.meta["splits"][split]
        dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")
        self.shards: list[np.memmap] = []
        for shard in info["shards"]:
            path = self.data_dir / shard["file"]
            if not path.is_file():
                raise GptkitError(f"shard {path} is missing")
            if path.stat().st_size != shard["tokens"] * dtype.itemsize:
                raise GptkitError(f"shard {path} has {path.stat().st_size} bytes, meta.json says {shard['tokens']} tokens of {dtype.itemsize} bytes")
            if shard["tokens"]:
                self.shards.append(np.memmap(path, dtype=dtype, mode="r"))
        self.num_tokens = sum(len(s) for s in self.shards)
        if self.num_tokens != info["tokens"]:
            raise GptkitError(f"{self.data_dir / 'meta.json'}: split {split!r} lists {info['tokens']} tokens but its shards hold {self.num_tokens}")
        self.num_bytes: int = info["bytes"]
        self._starts: dict[int, np.ndarray] = {}

    def _window_ends(self, block_size: int) -> np.ndarray:
        """Cumulative count of window starts per shard (a window never straddles two shards)."""
        if block_size not in self._starts:
            if self.num_tokens < block_size + 1:
                raise GptkitError(
                    f"split {self.split!r} of {self.data_dir} has {self.num_tokens} tokens, fewer than "
                    f"block_size+1 = {block_size + 1}; use a smaller --block-size or more data"
                )
            ends = np.cumsum([max(0, len(s) - block_size) for s in self.shards])
            if ends[-1] == 0:
                raise GptkitError(
                    f"no shard of split {self.split!r} of {self.data_dir} holds block_size+1 = {block_size + 1} "
                    f"tokens; prepare again with larger shards or use a smaller --block-size"
                )
            self._starts[block_size] = ends
        return self._starts[block_size]

    def _window(self, k: int, i: int, block_size: int) -> torch.Tensor:
        return torch.from_numpy(self.shards[k][i : i + block_size + 1].astype(np.int64))

    def get_batch(self, batch_size: int, block_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows, uniform over every valid start: x = tokens[i:i+T], y = tokens[i+1:i+T+1].

        Only `generator` supplies randomness, so a seeded generator makes batches reproducible.
        """
        ends = self._window_ends(block_size)
        picks = torch.randint(int(ends[-1]), (batch_size,), generator=generator, device=generator.device).tolist()
        rows = []
        for p in picks:
            k = int(np.searchsorted(ends, p, side="right"))
            rows.append(self._window(k, p - (int(ends[k - 1]) if k else 0), block_size))
        w = torch.stack(rows)
        return w[:, :-1], w[:, 1:]

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Consecutive non-overlapping windows from the start of the split; the last batch may be short."""
        self._window_ends(block_size)
        rows, done = [], 0
        for k, shard in enumerate(self.shards):
            for i in range(0, len(shard) - block_size, block_size):
                rows.append(self._window(k, i, block_size))
                if len(rows) == batch_size:
                    w, rows, done = torch.stack(rows), [], done + 1
                    yield w[:, :-1], w[:, 1:]
                    if max_batches is not None and done >= max_batches:
                        return
        if rows:
            w = torch.stack(rows)
            yield w[:, :-1], w[:, 1:]


def unigram_entropy(data_dir: str | os.PathLike) -> float:
    """Entropy in nats/token of the train split's token frequencies: the loss of a model that
    ignores context, which a trained model should beat."""
    shards = TokenShards(data_dir, "train")
    counts = np.zeros(shards.meta["vocab_size"], dtype=np.int64)
    for s in shards.shards:
        for a in range(0, len(s), 1 << 24):
            counts += np.bincount(s[a : a + (1 << 24)], minlength=len(counts))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


# -- the built-in corpus -------------------------------------------------------------------


def stdlib_corpus_files(max_bytes: int | None = None) -> list[Path]:
    """Python's own standard library sources (no tests, no site-packages), sorted.

    With `max_bytes`, the longest sorted prefix within that many bytes (at least one file).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
    files = []
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".")]  # prune: site-packages is huge
        files += [Path(dirpath, n) for n in names if n.endswith(".py")]
    files.sort(key=lambda p: p.relative_to(root).parts)
    if max_bytes is None:
        return files
    kept, total = [], 0
    for p in files:
        total += p.stat().st_size
        if kept and total > max_bytes:
            break
        kept.append(p)
    return kept
