"""`prepare --merge`: combine the parts of a multi-machine prepare into one data directory.

Each part (prepare with num_shards N, shard_index I) read a contiguous run of the input list,
cleaned and tokenized it, and kept every document that passed the filters and PII policy, with
its dedup keys in documents.bin. The merge walks the parts in order and runs the same
first-come-first-served deduplication a one-machine prepare runs, over the same documents in the
same order, copying the surviving documents' tokens: the result equals a one-machine prepare of
the same inputs (same shards, meta and data card counts).
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import GptkitError
from ..tokenizer import load_tokenizer
from . import datacard
from .clean import CleanStats, docs_dtype
from .dedup import Deduper
from .output import check_out_dir, split_warnings, staged, write_meta
from .prepare import SPLITS, _finish_splits, _ShardWriter
from .shards import FORMAT, PART_FORMAT

# What must be equal in every part (a path into meta.json, what to call it in the error).
_SAME = [
    (("part", "count"), "number of parts (--num-shards)"),
    (("part", "sources_fingerprint"), "input list (files, their names and sizes)"),
    (("part", "field"), "--field"),
    (("part", "hf_split"), "--hf-split"),
    (("tokenizer",), "tokenizer"),
    (("vocab_size",), "tokenizer vocabulary size"),
    (("eot_id",), "tokenizer end-of-text id"),
    (("dtype",), "token dtype"),
    (("val_fraction",), "--val-fraction"),
    (("seed",), "--seed"),
    (("shard_tokens",), "shard size"),
    (("decode_errors", "policy"), "--on-decode-error"),
    (("cleaning", "config"), "cleaning options (--pii, --keep-duplicates, --dedup-threshold, filters)"),
]


def _get(meta: dict, path: tuple) -> object:
    for k in path:
        meta = meta.get(k) if isinstance(meta, dict) else None
    return meta


def _read_part(d: Path) -> dict:
    path = d / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GptkitError(f"--merge: {d} is not a part directory (no meta.json)") from None
    except (OSError, ValueError) as e:
        raise GptkitError(f"--merge: {path} is not valid JSON ({e})") from None
    except RecursionError:
        raise GptkitError(f"--merge: {path} is nested too deeply to be a part's meta.json") from None
    if not isinstance(meta, dict) or meta.get("format") != PART_FORMAT:
        what = "a finished data directory" if isinstance(meta, dict) and meta.get("format") == FORMAT else "not a part"
        raise GptkitError(f"--merge: {d} is {what}, not a part written by prepare --num-shards N --shard-index I")
    return meta


def check_parts(parts: list[Path]) -> list[tuple[Path, dict]]:
    """Read and cross-check the parts; return them in part order."""
    if not parts:
        raise GptkitError("--merge needs the part directories to combine")
    metas = [(p, _read_part(p)) for p in parts]
    p0, m0 = metas[0]
    for p, m in metas[1:]:
        for key, what in _SAME:
            if _get(m, key) != _get(m0, key):
                raise GptkitError(f"--merge: {p} and {p0} were prepared with different {what} "
                                  f"({_get(m, key)!r} vs {_get(m0, key)!r}); prepare every part with the same inputs and options")
    tok0 = load_tokenizer(p0)
    for p, _ in metas[1:]:
        tok = load_tokenizer(p)
        if tok.ranks != tok0.ranks or tok.eot_id != tok0.eot_id:
            raise GptkitError(f"--merge: {p} and {p0} were prepared with different tokenizers (same kind and size, different "
                              "vocabularies); prepare every part with the same tokenizer directory")
    count = m0["part"]["count"]
    seen: dict[int, Path] = {}
    for p, m in metas:
        i = m["part"]["index"]
        if i in seen:
            raise GptkitError(f"--merge: {seen[i]} and {p} are both part {i} of {count}")
        seen[i] = p
    missing = sorted(set(range(count)) - set(seen))
    if missing:
        raise GptkitError(f"--merge: part(s) {', '.join(map(str, missing))} of {count} missing")
    metas.sort(key=lambda pm: pm[1]["part"]["index"])
    dtype = docs_dtype()
    for p, m in metas:
        table = p / "documents.bin"
        n = m["documents"]
        if not table.is_file() or table.stat().st_size != n * dtype.itemsize:
            raise GptkitError(f"--merge: {table} is missing or truncated (meta.json lists {n} documents)")
        for s in SPLITS:
            for sh in m["splits"][s]["shards"]:
                f = p / sh["file"]
                if not f.is_file() or f.stat().st_size != sh["tokens"] * np.dtype(m["dtype"]).itemsize:
                    raise GptkitError(f"--merge: shard {f} is missing or has the wrong size")
    return metas


class _PartReader:
    """Token ranges of one split of a part, across its shard files."""

    def __init__(self, d: Path, info: dict, dtype: np.dtype, vocab_size: int):
        self.files = [d / sh["file"] for sh in info["shards"]]
        self.starts = np.cumsum([0] + [sh["tokens"] for sh in info["shards"]])
        self.dtype, self.vocab_size = dtype, vocab_size

    def read(self, start: int, n: int, chunk: int = 1 << 24):
        end = start + n
        while start < end:
            k = int(np.searchsorted(self.starts, start, side="right")) - 1
            count = min(end, int(self.starts[k + 1])) - start
            for a in range(0, count, chunk):
                m = min(chunk, count - a)
                ids = np.fromfile(self.files[k], dtype=self.dtype, count=m,
                                  offset=(start - int(self.starts[k]) + a) * self.dtype.itemsize)
                if len(ids) and int(ids.max()) >= self.vocab_size:  # checked as it is read: one max a chunk
                    raise GptkitError(f"--merge: shard {self.files[k]} holds token id {int(ids.max())}, beyond the "
                                      f"vocabulary of {self.vocab_size} ids: that part is corrupt; prepare it again")
                yield ids
            start += count


def merge(parts: list[str | os.PathLike], out_dir: str | os.PathLike, overwrite: bool = False, progress: bool = True,
          command: str | None = None) -> dict:
    """Combine part directories into `out_dir` (see the module doc); return its meta."""
    parts = [Path(p) for p in parts]
    out_dir = Path(out_dir)
    out_dir = check_out_dir(out_dir, parts, overwrite)
    metas = check_parts(parts)
    m0 = metas[0][1]
    command = command if command is not None else datacard.command_line()
    dtype = np.dtype(m0["dtype"]).newbyteorder("<")
    with staged(out_dir) as tmp:
        config = m0["cleaning"]["config"]
        deduper = Deduper(config["dedup_threshold"]) if config["dedup"] else None
        writers = {s: _ShardWriter(tmp, s, dtype, m0["shard_tokens"]) for s in SPLITS}
        splits = {s: {"tokens": 0, "bytes": 0, "documents": 0} for s in SPLITS}
        cstats = CleanStats()
        last_train_start = 0
        total = sum(m["documents"] for _, m in metas)
        with tqdm(total=total, unit="doc", desc="merge", disable=not progress, file=sys.stderr) as bar:
            for p, m in metas:
                cstats.add_dict(m["cleaning"]["stats"])
                readers = {s: _PartReader(p, m["splits"][s], dtype, m0["vocab_size"]) for s in SPLITS}
                table = np.memmap(p / "documents.bin", dtype=docs_dtype(), mode="r") if m["documents"] else []
                run = None  # (split, start, end) of consecutive kept documents, copied at once
                for row in table:
                    split = SPLITS[int(row["split"])]
                    start, n, nbytes = int(row["start"]), int(row["tokens"]), int(row["bytes"])
                    bar.update(1)
                    if deduper is not None and cstats.dedup(deduper, row["digest"].tobytes(), row["sig"], split, nbytes):
                        continue
                    splits[split]["documents"] += 1
                    splits[split]["bytes"] += nbytes
                    if split == "train":
                        last_train_start = writers["train"].total + (run[2] - run[1] if run and run[0] == "train" else 0)
                    if run and run[0] == split and run[2] == start:
                        run = (split, run[1], start + n)
                        continue
                    _copy(run, readers, writers)
                    run = (split, start, start + n)
                _copy(run, readers, writers)
        for w in writers.values():
            w.close()
        documents = splits["train"]["documents"] + splits["val"]["documents"]
        if documents == 0:
            raise GptkitError("--merge: no documents in any part: every one was empty, binary, skipped or removed by cleaning")
        tok = load_tokenizer(metas[0][0])
        note = _finish_splits(writers, splits, last_train_start, documents, m0["val_fraction"], tok)
        meta = {
            "format": FORMAT,
            **{k: m0[k] for k in ("dtype", "vocab_size", "eot_id", "tokenizer")},
            "documents": documents,
            "splits": splits,
            **{k: m0[k] for k in ("val_fraction", "seed", "shard_tokens")},
            "files": sum(m["files"] for _, m in metas),
            "skipped_binary_files": sum(m["skipped_binary_files"] for _, m in metas),
            "empty_documents": sum(m["empty_documents"] for _, m in metas),
            "decode_errors": {
                "policy": m0["decode_errors"]["policy"],
                "replaced_documents": sum(m["decode_errors"]["replaced_documents"] for _, m in metas),
                "skipped_documents": sum(m["decode_errors"]["skipped_documents"] for _, m in metas),
            },
            "cleaning": {"config": config, "stats": cstats.to_dict(), "dedup_params": m0["cleaning"]["dedup_params"]},
        }
        if note:
            meta["val_note"] = note
        meta["warnings"] = split_warnings(splits, m0["val_fraction"], documents)
        meta["sources"] = m0["sources"]
        meta["tokenizer_sha256"] = tok.fingerprint
        for message in meta["warnings"]:
            warnings.warn(message, stacklevel=2)
        tok.save(tmp)
        card = datacard.build(meta, m0["part"]["inputs"], command, parts=len(metas))
        card["part_commands"] = [m["part"]["command"] for _, m in metas]
        datacard.write(tmp, card)
        write_meta(tmp, meta)
    return meta


def _copy(run, readers, writers) -> None:
    if run is None:
        return
    split, start, end = run
    for ids in readers[split].read(start, end - start):
        writers[split].write(ids)
