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
import numbers
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import GptkitError, OptionError
from ..files import check_parent_dirs, remove_stale
from ..tokenizer import MIN_BPE_VOCAB, TOKENIZER_FILES, Tokenizer, load_tokenizer, train_bpe
from .corpus import ReadStats, _as_list, _check_policy, _iter_pieces, _list_files, text_size
from .shards import FORMAT

MAX_BPE_VOCAB = 1 << 20  # past a million ids a vocabulary is a mistake, and the trainer would run out of memory

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
    num_workers = num_workers or os.cpu_count() or 1
    out_dir = Path(out_dir)
    check_out_dir(out_dir, inputs, overwrite)
    files = _list_files(inputs, exclude=out_dir)
    if not files:
        raise GptkitError(f"no readable files in {', '.join(map(str, inputs))}")
    total_disk = sum(text_size(p) for p, _ in files)
    if total_disk == 0:
        what = str(files[0][0]) if len(files) == 1 else f"all {len(files)} input files"
        raise GptkitError(f"{what}: empty, no text to prepare")
    if tokenizer == "bpe" and vocab_size - MIN_BPE_VOCAB + 1 > total_disk // 2:
        raise OptionError("vocab_size", f"{vocab_size:,} is more than {total_disk:,} bytes of text can support "
                          f"(each merge needs a pair seen twice: at most {MIN_BPE_VOCAB - 1 + total_disk // 2:,}); "
                          "use a smaller --vocab-size or more text")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir.parent, f".{out_dir.name}.tmp-", f".{out_dir.name}.old-")
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if isinstance(tokenizer, Tokenizer):
            tok = tokenizer
        elif tokenizer == "bpe":
            tok = _train_on(files, field, on_decode_error, vocab_size, total_disk, progress)
        else:
            tok = load_tokenizer(tokenizer)
        meta = _encode_corpus(files, tmp, tok, field, val_fraction, seed, shard_tokens, num_workers, on_decode_error, total_disk, progress)
        meta["sources"] = [str(Path(p).resolve()) for p in inputs]
        meta["tokenizer_sha256"] = tok.fingerprint
        for message in meta.get("warnings", []):
            warnings.warn(message, stacklevel=2)
        tok.save(tmp)
        meta["written"] = sorted([p.name for p in tmp.iterdir()] + ["meta.json"])
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _move_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _train_on(files, field, on_decode_error, vocab_size, total_disk, progress) -> Tokenizer:
    stats = ReadStats(policy=on_decode_error)
    bar = tqdm(total=total_disk, unit="B", unit_scale=True, desc="train bpe", disable=not progress, file=sys.stderr,
               leave=False)
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
    bar = tqdm(total=total_disk, unit="B", unit_scale=True, desc="tokenize", disable=not progress, file=sys.stderr,
               leave=False)
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
                bar.update(disk)  # input bytes (decompressed), as the bar's total counts them
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
    meta["warnings"] = _split_warnings(splits, val_fraction, documents)
    return meta


MIN_VAL_TOKENS = 10_000  # fewer, and a validation loss is too noisy to compare runs by


def _split_warnings(splits: dict, val_fraction: float, documents: int) -> list[str]:
    """What is wrong with the validation split, in words a user can act on."""
    val, total = splits["val"], splits["train"]["tokens"] + splits["val"]["tokens"]
    if val_fraction == 0:
        return [("no validation split (--val-fraction 0): `gptkit train` needs one; evaluate on this data "
                 "with `gptkit eval --split train`")]
    out = []
    better = min(0.5, max(2 * val_fraction, 20 / max(documents, 1), 2 * MIN_VAL_TOKENS / max(total, 1)))
    hint = f"raise --val-fraction (e.g. {float(f'{better:.1g}'):g})" if better > val_fraction else "use more text"
    share = val["tokens"] / max(total, 1)
    if documents >= 2 and val["documents"] == 1:
        out.append(f"the validation split is 1 document of {documents:,} ({val['tokens']:,} tokens): a loss on one "
                   f"document is noisy and may not be typical; {hint}")
    elif val["tokens"] < MIN_VAL_TOKENS:
        out.append(f"the validation split has {val['tokens']:,} tokens, too few to measure a loss reliably "
                   f"(at least {MIN_VAL_TOKENS:,}); {hint}")
    if share > max(3 * val_fraction, val_fraction + 0.1):
        out.append(f"the validation split holds {share:.0%} of the tokens (--val-fraction asked {val_fraction:g}), "
                   f"leaving {splits['train']['tokens']:,} to train on: one long document drew val; split the "
                   "text into more documents (files, or .jsonl lines)")
    return out


def _move_tail(train: _ShardWriter, val: _ShardWriter, start: int, tok: Tokenizer) -> int:
    """Move train's tokens from `start` on to val; return the text bytes they stand for."""
    lengths = np.array([len(t) for t in sorted(tok.ranks, key=tok.ranks.__getitem__)] + [0], dtype=np.int64)
    nbytes = 0
    for ids in train.pop_tail(start):
        val.write(ids)
        nbytes += int(lengths[ids].sum())
    val.close()
    return nbytes


def check_out_dir(out_dir: Path, inputs: list, overwrite: bool) -> None:
    """--out must be a new or empty directory, or (with --overwrite) a data directory gptkit made that
    holds nothing else and none of the inputs: never a directory of the user's own files."""
    if not str(out_dir):
        raise OptionError("out", "is empty; name the data directory to write")
    check_parent_dirs(out_dir, "out")
    if out_dir.exists() and not out_dir.is_dir():
        raise OptionError("out", f"{out_dir} exists and is not a directory")
    here, target = Path.cwd().resolve(), out_dir.resolve()
    if target == here or target in here.parents:
        raise OptionError("out", f"{out_dir} is the current directory (or holds it); write the data to a new directory")
    for item in inputs:
        src = Path(item).resolve()
        if src == target or target in src.parents:
            raise OptionError("out", f"{out_dir} holds the input {item}; gptkit never writes over its inputs: "
                              "choose another --out")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise OptionError("out", f"{out_dir} already exists and is not empty (--overwrite replaces a data "
                          "directory made by `gptkit prepare`)")
    meta_path = out_dir / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        assert isinstance(meta, dict) and meta.get("format") == FORMAT
    except (OSError, ValueError, RecursionError, AssertionError):
        raise OptionError("out", f"{out_dir} is not a data directory made by `gptkit prepare` (it has no gptkit "
                          "meta.json): --overwrite only replaces those; choose another --out") from None
    ours = {"meta.json", *TOKENIZER_FILES, *(meta.get("written") or [])}
    for split in (meta.get("splits") or {}).values():
        ours |= {s.get("file") for s in (split.get("shards") or []) if isinstance(s, dict)}
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in ours or not p.is_file())
    if foreign:
        raise OptionError("out", f"{out_dir} holds {foreign[0]}"
                          f"{f' (and {len(foreign) - 1} more)' if len(foreign) > 1 else ''}, which `gptkit prepare` "
                          "did not write: --overwrite replaces only what gptkit made; move it away or choose another --out")


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
    line = (
        f"{meta['documents']:,} {_plural(meta['documents'], 'document')} ({train['documents']:,} train / "
        f"{val['documents']:,} val), "
        f"{nbytes / 1e6:,.1f} MB -> {tokens:,} tokens ({train['tokens']:,} train / {val['tokens']:,} val), "
        f"{nbytes / max(tokens, 1):.2f} bytes/token, {seconds:.1f} s at {nbytes / 1e6 / max(seconds, 1e-9):.1f} MB/s"
    )
    errors = meta.get("decode_errors") or {}
    left_out = [
        (errors.get("replaced_documents", 0), "{} with undecodable bytes replaced (U+FFFD)", "document"),
        (errors.get("skipped_documents", 0), "{} with undecodable bytes skipped", "document"),
        (meta.get("skipped_binary_files", 0), "{} skipped", "binary file"),
        (meta.get("empty_documents", 0), "{} skipped", "empty document"),
    ]
    notes = [text.format(f"{n:,} {_plural(n, what)}") for n, text, what in left_out if n]
    return line + ("; " + ", ".join(notes) if notes else "")


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"
