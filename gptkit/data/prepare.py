"""`prepare`: text -> token shards, cleaned on the way in; the parts of a multi-machine prepare.

A prepared data directory holds:
  train_000000.bin, ...  raw little-endian token ids (uint16, or uint32 past 65536 ids),
  val_000000.bin, ...    each document's tokens followed by <|endoftext|>;
  vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json  (the tokenizer);
  meta.json              counts, shard sizes, dtype and provenance ("gptkit-shards-v1");
  DATACARD.md, datacard.json  what went in, what cleaning did, the command (datacard.py).

Cleaning (clean.py): PII redaction, optional quality filters, exact + near-duplicate removal.
With `num_shards` N > 1 the call prepares part `shard_index` of the input list (a contiguous
run of sources, balanced by size) into a part directory that also holds each document's dedup
keys (documents.bin); merge.py combines the N parts into the same data directory a one-machine
prepare writes.
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import numbers
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import GptkitError, OptionError
from ..tokenizer import MIN_BPE_VOCAB, Tokenizer, load_tokenizer, train_bpe
from ..tokenizer_json import JsonTokenizer
from . import canaries as _canaries
from . import corpus as _corpus
from . import datacard
from .clean import CleanConfig, CleanStats, DocState, clean_piece, docs_dtype
from .corpus import ReadStats, Source, _as_list, _check_policy, _iter_pieces, _list_files, check_input_size, text_bytes
from .dedup import Deduper
from .output import check_out_dir, split_warnings, staged, write_meta
from .pii import scan as pii_scan
from .shards import FORMAT, PART_FORMAT

MAX_BPE_VOCAB = 1 << 20  # past a million ids a vocabulary is a mistake, and the trainer would run out of memory
BATCH_CHARS = 2 << 20  # text per task sent to an encoding worker
SPLITS = ("train", "val")

# -- prepare -------------------------------------------------------------------------------


def _is_val(seed: int, file_index: int, doc_index: int, val_fraction: float) -> bool:
    """Stable per-document coin: the same (seed, source, document in it) lands in the same split
    on any machine and in any part of a multi-machine prepare."""
    h = hashlib.blake2b(f"{seed}:{file_index}:{doc_index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < val_fraction


class _ShardWriter:
    """Appends token ids to NAME_000000.bin, NAME_000001.bin, ... of at most `shard_tokens` each."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.directory, self.split, self.dtype, self.shard_tokens = directory, split, dtype, shard_tokens
        self.sizes: list[int] = []
        self.total = 0
        self._file = None

    def path(self, i: int) -> Path:
        return self.directory / f"{self.split}_{i:06d}.bin"

    def write(self, ids: np.ndarray) -> None:
        ids = ids.astype(self.dtype, copy=False)
        self.total += len(ids)
        while len(ids):
            if self._file is None and self.sizes and self.sizes[-1] < self.shard_tokens:
                self._file = open(self.path(len(self.sizes) - 1), "ab")  # after truncate()
            elif self._file is None or self.sizes[-1] == self.shard_tokens:
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

    def _locate(self, start: int) -> tuple[int, int]:
        first, before = 0, 0
        while before + self.sizes[first] <= start:
            before += self.sizes[first]
            first += 1
        return first, start - before

    def truncate(self, start: int) -> None:
        """Cut the shards back to `start` tokens (a dropped document written in pieces)."""
        if start >= self.total:
            return
        self.close()
        first, local = self._locate(start)
        for i in range(len(self.sizes) - 1, first - 1, -1):
            if i == first and local > 0:
                os.truncate(self.path(i), local * self.dtype.itemsize)
                self.sizes[i] = local
            else:
                self.path(i).unlink()
                self.sizes.pop()
        self.total = start

    def pop_tail(self, start: int, chunk: int = 1 << 24) -> Iterator[np.ndarray]:
        """Yield the tokens from global position `start` on, then cut them off the shards
        (consume it fully)."""
        self.close()
        if start >= self.total:
            return
        first, local = self._locate(start)
        for i in range(first, len(self.sizes)):
            lo = local if i == first else 0
            for a in range(lo, self.sizes[i], chunk):
                n = min(chunk, self.sizes[i] - a)
                yield np.fromfile(self.path(i), dtype=self.dtype, count=n, offset=a * self.dtype.itemsize)
        self.truncate(start)


_worker_tokenizer: Tokenizer | None = None
_worker_dtype = np.dtype("<u4")
_worker_clean: CleanConfig | None = None


def _init_worker(tokenizer: Tokenizer | None, dtype: np.dtype, clean: CleanConfig | None = None) -> None:
    global _worker_tokenizer, _worker_dtype, _worker_clean
    _worker_tokenizer, _worker_dtype, _worker_clean = tokenizer, dtype, clean


def _encode_pieces(batch: list[tuple]) -> list[tuple]:
    """Worker task: (text, split, first, *tags) -> (ids, UTF-8 byte count, clean info, split, first, *tags)."""
    encode, clean, out = _worker_tokenizer.encode_array, _worker_clean, []
    for text, split, first, *tags in batch:
        info = None
        if clean is not None:
            text, info = clean_piece(text, first, clean)
        out.append((encode(text).astype(_worker_dtype), len(text.encode("utf-8")), info, split, first, *tags))
    return out


@contextmanager
def _encoder_map(tokenizer: Tokenizer, dtype: np.dtype, num_workers: int, clean: CleanConfig | None = None) -> Iterator[Callable]:
    """An ordered `map` of `_encode_pieces`: in process for one worker, else over a Pool."""
    if num_workers <= 1:
        _init_worker(tokenizer, dtype, clean)
        try:
            yield lambda batches: map(_encode_pieces, batches)
        finally:
            _init_worker(None, dtype)
        return
    # fork shares the tokenizer for free; elsewhere it is pickled to each worker.
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    pool = ctx.Pool(num_workers, initializer=_init_worker, initargs=(tokenizer, dtype, clean))
    try:
        # Pool's task feeder blocks on the pipe, so only a few batches are ever in flight.
        yield lambda batches: pool.imap(_encode_pieces, batches, chunksize=1)
    finally:
        pool.terminate()
        pool.join()


def _batches(pieces: Iterator[tuple], seed: int, val_fraction: float) -> Iterator[list[tuple]]:
    """Group pieces into ~BATCH_CHARS tasks of (text, split, is_first, is_last, disk_bytes)."""
    batch, size, split = [], 0, "train"
    for text, file_index, doc, first, last, disk in pieces:
        if first:  # a canary (file_index -1) always goes to train
            split = "val" if file_index >= 0 and _is_val(seed, file_index, doc, val_fraction) else "train"
        batch.append((text, split, first, last, disk))
        size += len(text)
        if size >= BATCH_CHARS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def shard_range(files: list[Source], num_shards: int, shard_index: int) -> tuple[int, int]:
    """The contiguous run [lo, hi) of `files` that part `shard_index` of `num_shards` reads:
    cut where the cumulative size crosses k/num_shards of the total (by count if sizes are 0)."""
    sizes = np.array([max(s.size, 1) for s in files], dtype=np.float64)
    ends = np.cumsum(sizes) / sizes.sum()
    cut = [0] + [int(np.searchsorted(ends, k / num_shards, side="left")) + 1 for k in range(1, num_shards)] + [len(files)]
    cut = np.minimum.accumulate(np.maximum.accumulate(np.array(cut))[::-1])[::-1]
    return int(cut[shard_index]), int(cut[shard_index + 1])


def inputs_summary(files: list[Source]) -> list[dict]:
    """Per input argument: how many sources and bytes (the data card's "sources")."""
    out: dict[str, dict] = {}
    for src in files:
        e = out.setdefault(src.input, {"input": src.input, "files": 0, "bytes": 0})
        e["files"] += 1
        e["bytes"] += src.size
    return list(out.values())


def sources_fingerprint(files: list[Source]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for src in files:
        h.update(f"{src.kind}\0{Path(str(src.path)).name}\0{src.size}\n".encode())
    return h.hexdigest()


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
    clean: CleanConfig | None = None,
    hf_split: str | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
    command: str | None = None,
    canaries: int = 0,
    canary_digits: int = 6,
    canary_seed: int | None = None,
) -> dict:
    """Tokenize `inputs` into a data directory of shards; return its meta.

    tokenizer: "gpt2", "bytes", a tokenizer directory, a Tokenizer, or "bpe" to train one of
    `vocab_size` ids on the same inputs first (a separate streaming pass).
    clean: what to do on the way in (default CleanConfig(): redact PII, remove exact and near
    duplicates; CleanConfig(pii="keep", dedup=False) for none).
    Documents go to val with probability `val_fraction`, decided by a hash of (seed, source
    index, document index in the source). If none did, the last document moves to val; a corpus
    of one document gives val the last `val_fraction` of its tokens instead (both splits then
    count that one document).
    With num_shards > 1, prepare part `shard_index` only (merge the parts with `merge`).
    canaries: plant this many random secrets of `canary_digits` digits in train (canaries.py),
    recorded in meta.json; canary_seed makes them reproducible (None: system randomness).
    Everything is built in a hidden temp dir beside `out_dir` and renamed into place at the end.
    """
    inputs = _as_list(inputs)
    clean = CleanConfig() if clean is None else clean
    _check_policy(on_decode_error)
    if not isinstance(val_fraction, numbers.Real) or not 0 <= val_fraction < 1:
        raise OptionError("val_fraction", f"must be in [0, 1), got {val_fraction}")
    if not isinstance(shard_tokens, int) or shard_tokens < 1:
        raise OptionError("shard_tokens", f"must be a positive integer, got {shard_tokens!r}")
    if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 1):
        raise OptionError("num_workers", f"must be an integer >= 1 (None: all cores), got {num_workers!r}")
    if tokenizer == "bpe":
        if vocab_size is None:
            raise OptionError("vocab_size", "is needed with tokenizer bpe (e.g. --vocab-size 8192)")
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or not MIN_BPE_VOCAB <= vocab_size <= MAX_BPE_VOCAB:
            raise OptionError("vocab_size", f"must be an integer from {MIN_BPE_VOCAB} (256 bytes + a merge + "
                              f"<|endoftext|>) to {MAX_BPE_VOCAB:,}, got {vocab_size!r}")
    elif vocab_size is not None:
        raise OptionError("vocab_size", f"applies only to tokenizer bpe; {tokenizer} has a fixed vocabulary")
    if not isinstance(num_shards, int) or num_shards < 1:
        raise GptkitError(f"--num-shards must be a positive integer, got {num_shards!r}")
    if not isinstance(shard_index, int) or not 0 <= shard_index < num_shards:
        raise GptkitError(f"--shard-index must be in [0, {num_shards}), got {shard_index!r}")
    _canaries.check(canaries, canary_digits)
    if canaries and num_shards > 1:
        raise OptionError("canaries", "are planted by a one-machine prepare: leave out --num-shards (or --canaries)")
    if num_shards > 1 and tokenizer == "bpe":
        raise GptkitError("--num-shards needs one tokenizer for all parts: train the BPE once (gptkit prepare ... "
                          "--tokenizer bpe) and pass its data directory as --tokenizer")
    num_workers = num_workers or os.cpu_count() or 1
    out_dir = Path(out_dir)
    tok_dir = [tokenizer] if isinstance(tokenizer, (str, os.PathLike)) and str(tokenizer) not in ("gpt2", "bytes", "bpe") else []
    out_dir = check_out_dir(out_dir, [*inputs, *tok_dir], overwrite)
    files = _list_files(inputs, exclude=out_dir, hf_split=hf_split)
    if not files:
        raise GptkitError(f"no readable files in {', '.join(map(str, inputs))}")
    check_input_size(files, tokenizer, vocab_size)
    lo, hi = shard_range(files, num_shards, shard_index) if num_shards > 1 else (0, len(files))
    part = {"index": shard_index, "count": num_shards, "sources": [lo, hi]} if num_shards > 1 else None
    command = command if command is not None else datacard.command_line()

    with staged(out_dir) as tmp:
        mine = files[lo:hi]
        total_disk = sum(text_bytes(s) for s in mine)
        if isinstance(tokenizer, Tokenizer):
            tok = tokenizer
        elif tokenizer == "bpe":
            tok = _train_on(files, field, on_decode_error, vocab_size, total_disk, progress, clean)
            if tok.vocab_size < vocab_size:  # the terminal says so, not only the data card
                warnings.warn(f"--vocab-size {vocab_size:,}: the BPE ran out of pairs to merge at {tok.vocab_size:,} "
                              "ids, so the vocabulary has that many; more text gives a larger one", stacklevel=2)
        else:
            tok = load_tokenizer(tokenizer)
        record = _canaries.make(canaries, canary_digits, canary_seed) if canaries else None
        meta = _encode_corpus(mine, lo, tmp, tok, field, val_fraction, seed, shard_tokens, num_workers, on_decode_error,
                              total_disk, progress, clean, part, record, canary_seed)
        meta["sources"] = [str(Path(p).resolve()) if not str(p).startswith("hf:") else str(p) for p in inputs]
        meta["tokenizer_sha256"] = tok.fingerprint
        for message in meta.get("warnings", []):
            warnings.warn(message, stacklevel=2)
        tok.save(tmp)
        if part is not None:
            meta["part"] |= {"sources_fingerprint": sources_fingerprint(files), "num_sources": len(files),
                             "inputs": inputs_summary(files), "command": command, "field": field, "hf_split": hf_split,
                             "on_decode_error": on_decode_error}
        else:
            datacard.write(tmp, datacard.build(meta, inputs_summary(files), command))
        write_meta(tmp, meta)
    return meta


def _train_on(files, field, on_decode_error, vocab_size, total_disk, progress, clean: CleanConfig | None = None) -> Tokenizer:
    """Train the BPE on the text as it will be encoded: PII redacted first, so that no e-mail
    address or key can become a vocabulary entry."""
    stats = ReadStats(policy=on_decode_error)
    bar = tqdm(total=total_disk, unit="B", unit_scale=True, desc="train bpe", disable=not progress, file=sys.stderr,
               leave=False)
    seen = 0

    def texts() -> Iterator[str]:
        nonlocal seen
        for text, _, _, disk in _iter_pieces(files, field, stats):
            seen += 1
            bar.update(disk)
            yield pii_scan(text)[0] if clean is not None and clean.pii != "keep" else text

    with bar:
        tok = train_bpe(texts(), vocab_size)
    if not seen:
        raise GptkitError(f"no documents with text in {len(files)} file(s): every one was empty, binary or skipped")
    return tok


def _encode_corpus(files, first_index, tmp, tok, field, val_fraction, seed, shard_tokens, num_workers, on_decode_error,
                   total_disk, progress, clean: CleanConfig, part: dict | None, canaries: dict | None = None,
                   canary_seed: int | None = None) -> dict:
    dtype = np.dtype("<u2") if tok.vocab_size <= 65536 else np.dtype("<u4")
    writers = {s: _ShardWriter(tmp, s, dtype, shard_tokens) for s in SPLITS}
    splits = {s: {"tokens": 0, "bytes": 0, "documents": 0} for s in writers}
    stats, cstats = ReadStats(policy=on_decode_error), CleanStats()
    deduper = Deduper(clean.threshold) if clean.dedup and part is None else None
    table = _DocTable(tmp / "documents.bin") if part is not None else None
    eot = np.array([tok.eot_id], dtype=dtype)
    bos = np.array(tok.prompt_prefix, dtype=dtype)  # what transformers' tokenizer(text) puts first (Llama's BOS)
    last_train_start = 0
    doc: DocState | None = None
    whole = isinstance(tok, JsonTokenizer) and not tok.byte_level  # no pre-tokenizer splits its text: no cut is safe
    pieces = _canaries.interleave(_corpus.indexed_pieces(files, first_index, field, stats, whole), canaries, total_disk,
                                  canary_seed)
    batches = _batches(pieces, seed, val_fraction)
    bar = tqdm(total=total_disk, unit="B", unit_scale=True, desc="tokenize", disable=not progress, file=sys.stderr,
               leave=False)
    with bar, _encoder_map(tok, dtype, num_workers, clean if clean.active else None) as encode:
        for results in encode(batches):
            for ids, nbytes, info, split, first, last, disk in results:
                w = writers[split]
                if first:
                    doc = DocState(split, w.total)
                    w.write(bos)
                doc.add(info, nbytes)
                w.write(ids)
                bar.update(disk)  # input bytes (decompressed), as the bar's total counts them
                if not last:
                    continue
                if cstats.pre_dedup(doc, clean) or (deduper and cstats.dedup(deduper, doc.digest, doc.sig, split, doc.bytes)):
                    w.truncate(doc.start)
                    continue
                w.write(eot)
                splits[split]["documents"] += 1
                splits[split]["bytes"] += doc.bytes
                if split == "train":
                    last_train_start = doc.start
                if table is not None:
                    table.add(doc, w.total - doc.start, clean.dedup)
    for w in writers.values():
        w.close()
    if table is not None:
        table.close()
    documents = splits["train"]["documents"] + splits["val"]["documents"]
    if documents == 0 and part is None:
        raise GptkitError(f"no documents with text in {len(files)} file(s): every one was empty, binary or skipped"
                          + (" or removed by cleaning" if cstats.documents_in else ""))
    note = _finish_splits(writers, splits, last_train_start, documents, val_fraction if part is None else 0, tok)
    meta = {
        "format": FORMAT if part is None else PART_FORMAT,
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
        "cleaning": {"config": clean.describe(), "stats": cstats.to_dict(),
                     "dedup_params": Deduper(clean.threshold).params if clean.dedup else None},
    }
    if note:
        meta["val_note"] = note
    if canaries:
        meta["canaries"] = canaries
    if part is not None:
        meta["part"] = dict(part)
        meta["part"]["last_train_start"] = last_train_start
    else:
        meta["warnings"] = split_warnings(splits, val_fraction, documents)
    return meta


def _finish_splits(writers: dict, splits: dict, last_train_start: int, documents: int, val_fraction: float, tok: Tokenizer) -> str | None:
    """Make sure val is not empty (see `prepare`), then record token counts and shards."""
    note = None
    if val_fraction > 0 and documents == 1 and splits["train"]["documents"] == 0:
        # the one document drew val: it goes to train, and val takes its last val_fraction below
        moved = _move_tail(writers["val"], writers["train"], 0, tok)
        splits["train"]["documents"], splits["val"]["documents"] = 1, 0
        splits["train"]["bytes"] += moved
        splits["val"]["bytes"] -= moved
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
    return note


class _DocTable:
    """documents.bin of a part: per kept document its split, tokens (with end of text), bytes and
    dedup keys, appended in input order (docs_dtype)."""

    def __init__(self, path: Path, flush_every: int = 4096):
        self.path, self.flush_every = path, flush_every
        self.rows: list[tuple] = []
        self.file = open(path, "wb")
        self.dtype = docs_dtype()

    def add(self, doc: DocState, tokens: int, keys: bool) -> None:
        digest = np.frombuffer(doc.digest, dtype=np.uint8) if keys else np.zeros(16, np.uint8)
        sig = doc.sig if doc.sig is not None else np.full(self.dtype["sig"].shape, 0xFFFFFFFF, np.uint32)
        self.rows.append((SPLITS.index(doc.split), doc.start, tokens, doc.bytes, digest, sig))
        if len(self.rows) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            np.array(self.rows, dtype=self.dtype).tofile(self.file)
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.file.close()


def _text_bytes(tok: Tokenizer) -> np.ndarray:
    """Each id's length in text bytes: special tokens (the separator, a BOS) stand for none."""
    lengths = np.array([len(b) for b in tok.token_bytes(range(tok.vocab_size))], dtype=np.int64)
    lengths[[*tok.special_ids.values(), *tok.prompt_prefix]] = 0
    return lengths


def _move_tail(src: _ShardWriter, dst: _ShardWriter, start: int, tok: Tokenizer) -> int:
    """Move src's tokens from `start` on to dst; return the text bytes they stand for."""
    lengths = _text_bytes(tok)
    nbytes = 0
    for ids in src.pop_tail(start):
        dst.write(ids)
        nbytes += int(lengths[ids].sum())
    dst.close()
    return nbytes
