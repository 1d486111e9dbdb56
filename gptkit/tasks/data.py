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
SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
            ".parquet": "parquet", ".pq": "parquet"}


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
    fmt = SUFFIXES.get(suffix)
    if fmt is None:
        raise GptkitError(f"{path}: a file of examples must be .jsonl, .csv, .tsv or .parquet, not "
                          f"{suffix or 'a name without a suffix'!r} (for plain text, one source a line, use --input)")
    return fmt


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
                    except RecursionError:
                        raise GptkitError(f"{path}:{i}: the JSON is nested too deeply") from None
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
                    width = len(reader.fieldnames)
                    if None in rec:  # more cells than header columns
                        raise GptkitError(f"{path}:{reader.line_num}: {len(rec[None]) + width} cells, the header "
                                          f"has {width}")
                    if None in rec.values():  # fewer: DictReader fills the missing cells with None
                        cells = sum(v is not None for v in rec.values())
                        raise GptkitError(f"{path}:{reader.line_num}: {cells} cell(s), the header has {width}")
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

    target_field=None (or require_target=False with the field absent from the first record) reads
    sources only, for running a model over inputs that have no reference; a file has targets on
    every record or on none."""
    path = Path(path)
    if path.is_dir():
        raise GptkitError(f"{path}: a directory, not a file of examples")
    if not path.is_file():
        raise GptkitError(f"{path}: no such file")
    fmt = detect_format(path, format)
    out = []
    with_target = None  # the first record decides whether the file has targets; every other must agree
    for line, rec in read_records(path, fmt):
        where = f"{path}:{line}" if fmt != "parquet" else f"{path}: row {line}"
        table = fmt in ("csv", "tsv")
        src = _text_field(rec, source_field, where, "source", table)
        tgt = None
        if target_field is not None and with_target is None:
            with_target = require_target or target_field in rec
        if target_field is not None and with_target and not require_target and target_field not in rec and out:
            raise GptkitError(f"{where}: no target ({target_field!r}), though the lines before it have one: give "
                              "every example a target, or none")
        if target_field is not None and with_target:
            tgt = _text_field(rec, target_field, where, "target", table)
        elif target_field is not None and target_field in rec:
            raise GptkitError(f"{where}: has a target ({target_field!r}) but the lines before it have none: give "
                              "every example a target, or none")
        group = rec.get(group_field) if group_field else None
        extra = {k: v for k, v in rec.items() if k not in (source_field, target_field)}
        out.append(Example(src, tgt, f"{path}:{line}", str(group) if group is not None else None, extra))
    if not out:
        raise GptkitError(f"{path}: no examples")
    return out


def _short(name: Any, width: int = 24) -> str:
    """A field name as an error line shows it: quoted, escaped (no raw newlines), cut to width."""
    text = repr(str(name))
    return text if len(text) <= width else text[:width - 4] + "...'"


def _text_field(rec: dict[str, Any], field: str, where: str, role: str, table: bool = False) -> str:
    """rec[field], checked to be non-empty text; role ("source" or "target") names the flag that
    chooses the field; table: a CSV/TSV record, whose field names are its file's first row."""
    if field not in rec:
        names = [_short(k) for k in list(rec)[:6]] + (["..."] if len(rec) > 6 else [])
        label = "the first row names the columns" if table else "fields"
        raise GptkitError(f"{where}: no field {field!r} ({label}: {', '.join(names) or 'none'}; "
                          f"choose the field with --{role}-field)")
    value = rec[field]
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        raise GptkitError(f"{where}: field {field!r} is {kind}, not text")
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
