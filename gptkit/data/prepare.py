"""Corpus reading, `prepare` (text -> token shards) and `TokenShards` (shards -> batches).

A prepared data directory holds:
  train_000000.bin, ...  raw little-endian token ids (uint16, or uint32 past 65536 ids),
  val_000000.bin, ...    each document's tokens followed by <|endoftext|>;
  vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json  (the tokenizer);
  meta.json              counts, shard sizes, dtype and provenance ("gptkit-shards-v1").
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import GptkitError
from ..tokenizer import Tokenizer, load_tokenizer, train_bpe
from .corpus import ReadStats, _as_list, _check_policy, _iter_pieces, _list_files
from .shards import FORMAT

BATCH_CHARS = 2 << 20  # text per task sent to an encoding worker

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
