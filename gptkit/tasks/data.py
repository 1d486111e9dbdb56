"""Task data: (source, target) examples from JSONL, CSV/TSV or Parquet, and a deterministic
train/val/test split.

    examples = read_examples("pairs.jsonl", source_field="source", target_field="target")
    splits = split_examples(examples, val_fraction=0.05, test_fraction=0.05, seed=0)
    splits["train"], splits["val"], splits["test"]

Every example keeps where it came from (`origin`: "file:line"), so an error names the line. The
split is a function of each example's group (its `group` field if the data has one, else its
source text) and the seed: the same example lands in the same split whatever the file's order
or length, and duplicates of one source can never sit on both sides of it.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptkit.errors import GptkitError

SPLITS = ("train", "val", "test")
FORMATS = ("jsonl", "csv", "tsv", "parquet")


@dataclass
class Example:
    source: str
    target: str | None
    origin: str = ""  # "file:line" (1-based) or "text"
    group: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # the record's other fields, passed through

    @property
    def key(self) -> str:
        return self.group if self.group is not None else self.source


def detect_format(path: str | os.PathLike, format: str | None = None) -> str:
    if format:
        if format not in FORMATS:
            raise GptkitError(f"unknown data format {format!r} (choose from {', '.join(FORMATS)})")
        return format
    suffix = Path(path).suffix.lower()
    return {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
            ".parquet": "parquet", ".pq": "parquet"}.get(suffix, "jsonl")


def read_records(path: Path, fmt: str) -> Iterable[tuple[int, dict[str, Any]]]:
    """(1-based line or row number, record) in file order."""
    if fmt == "jsonl":
        with open(path, encoding="utf-8") as f:
            try:
                for i, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise GptkitError(f"{path}:{i}: not a JSON object ({e.msg}, column {e.colno})") from None
                    if not isinstance(rec, dict):
                        raise GptkitError(f"{path}:{i}: expected a JSON object, got {type(rec).__name__}")
                    yield i, rec
            except UnicodeDecodeError as e:
                raise GptkitError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    elif fmt in ("csv", "tsv"):
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="," if fmt == "csv" else "\t")
            try:
                for rec in reader:
                    if None in rec:  # more cells than header columns
                        raise GptkitError(f"{path}:{reader.line_num}: {len(rec[None]) + len(reader.fieldnames)} "
                                          f"cells, the header has {len(reader.fieldnames)}")
                    yield reader.line_num, rec
            except csv.Error as e:
                raise GptkitError(f"{path}:{reader.line_num}: bad {fmt.upper()} ({e})") from None
            except UnicodeDecodeError as e:
                raise GptkitError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    else:
        try:
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover
            raise GptkitError("reading Parquet needs pyarrow (pip install pyarrow)") from None
        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises its own error types for a broken file
            raise GptkitError(f"{path}: not a readable Parquet file ({e})") from None
        for i, rec in enumerate(table.to_pylist(), 1):
            yield i, rec


def read_examples(path: str | os.PathLike, source_field: str = "source", target_field: str | None = "target",
                  format: str | None = None, require_target: bool = True, group_field: str | None = "group",
                  ) -> list[Example]:
    """All examples of a file, checked: every record has a non-empty string source and (when
    require_target) a non-empty string target; otherwise one GptkitError naming the line.

    target_field=None (or require_target=False with the field absent) reads sources only, for
    running a model over inputs that have no reference."""
    path = Path(path)
    if not path.is_file():
        raise GptkitError(f"{path}: no such file")
    fmt = detect_format(path, format)
    out = []
    for line, rec in read_records(path, fmt):
        where = f"{path}:{line}" if fmt != "parquet" else f"{path}: row {line}"
        src = _text_field(rec, source_field, where, "source")
        tgt = None
        if target_field is not None and (require_target or target_field in rec):
            tgt = _text_field(rec, target_field, where, "target")
        group = rec.get(group_field) if group_field else None
        extra = {k: v for k, v in rec.items() if k not in (source_field, target_field)}
        out.append(Example(src, tgt, f"{path}:{line}", str(group) if group is not None else None, extra))
    if not out:
        raise GptkitError(f"{path}: no examples")
    return out


def _text_field(rec: dict[str, Any], field: str, where: str, role: str) -> str:
    """rec[field], checked to be non-empty text; role ("source" or "target") names the flag that
    chooses the field."""
    if field not in rec:
        raise GptkitError(f"{where}: no field {field!r} (fields: {', '.join(map(str, rec)) or 'none'}; "
                          f"choose the field with --{role}-field)")
    value = rec[field]
    if not isinstance(value, str):
        raise GptkitError(f"{where}: field {field!r} is {type(value).__name__}, not text")
    if not value.strip():
        raise GptkitError(f"{where}: empty {role} ({field!r})")
    return value


def split_of(key: str, val_fraction: float, test_fraction: float, seed: int) -> str:
    """The split of one example key: a hash of (seed, key) mapped to [0, 1)."""
    h = hashlib.blake2b(f"{seed}\x00{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    u = int.from_bytes(h, "big") / 2 ** 64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def split_examples(examples: list[Example], val_fraction: float = 0.05, test_fraction: float = 0.05,
                   seed: int = 0) -> dict[str, list[Example]]:
    """{"train", "val", "test"} -> examples, in file order within each split (see the module doc)."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise GptkitError(f"val and test fractions must be in [0, 1) and sum below 1, got {val_fraction} "
                          f"and {test_fraction}")
    splits: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for ex in examples:
        splits[split_of(ex.key, val_fraction, test_fraction, seed)].append(ex)
    return splits


def load_split(path: str | os.PathLike, split: str, *, val_fraction: float = 0.05, test_fraction: float = 0.05,
               seed: int = 0, **read_kwargs: Any) -> list[Example]:
    """One split of a file ("all" for every example)."""
    if split not in SPLITS + ("all",):
        raise GptkitError(f"unknown split {split!r} (choose from train, val, test, all)")
    examples = read_examples(path, **read_kwargs)
    if split == "all":
        return examples
    return split_examples(examples, val_fraction, test_fraction, seed)[split]
