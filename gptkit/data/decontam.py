"""Decontamination: training documents that share a long n-gram with an evaluation set are dropped
(or the shared spans cut out), so that a benchmark does not measure memorised test items.

As in GPT-3's paper, n-grams are of words after normalisation (lower case, punctuation and
whitespace ignored), 13 long by default; an evaluation item shorter than n words cannot be matched
this way and is counted as such. Hashes are blake2b (stable across processes, unlike hash()).
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GptkitError

WORD = re.compile(r"\w+", re.UNICODE)
MODES = ("drop", "cut")


def _hash(words: Iterable[str]) -> int:
    return int.from_bytes(hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=8).digest(), "little")


def _words(text: str) -> list[re.Match]:
    return list(WORD.finditer(text.lower()))


def ngram_hashes(text: str, n: int) -> Iterator[tuple[int, int]]:
    """(hash, index of the first word) of every n-gram of normalised words in text."""
    words = [m.group() for m in _words(text)]
    for i in range(len(words) - n + 1):
        yield _hash(words[i:i + n]), i


def _strings(obj: Any) -> Iterator[str]:
    """Every string inside a JSON value (an item's question, choices, answer...)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def read_items(path: Path) -> list[str]:
    """The evaluation items of a file: a .jsonl record's strings (each string on its own, so that an
    n-gram never spans a question and its answer), or a plain-text file's non-empty lines."""
    if not path.is_file():
        raise GptkitError(f"--decontaminate: {path} not found")
    items: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                if path.suffix.lower() == ".jsonl":
                    try:
                        items.extend(_strings(json.loads(line)))
                    except (ValueError, RecursionError) as e:
                        raise GptkitError(f"--decontaminate: {path}:{n}: not valid JSON ({e})") from None
                else:
                    items.append(line.rstrip("\n"))
    except UnicodeDecodeError:
        raise GptkitError(f"--decontaminate: {path} is not UTF-8 text") from None
    return items


@dataclass
class Decontaminator:
    """The n-gram hashes of the evaluation sets, and what to do with a training text that has one."""
    n: int = 13
    mode: str = "drop"
    hashes: frozenset[int] = frozenset()
    files: list[str] = field(default_factory=list)
    items: int = 0
    short_items: int = 0  # items with fewer than n words: not matchable

    @classmethod
    def from_files(cls, paths: Iterable[str | Path], n: int = 13, mode: str = "drop") -> Decontaminator:
        if n < 1:
            raise GptkitError(f"--decontaminate-n must be >= 1, got {n}")
        if mode not in MODES:
            raise GptkitError(f"--decontaminate-mode must be one of {', '.join(MODES)}, got {mode!r}")
        hashes: set[int] = set()
        files, items, short = [], 0, 0
        for p in paths:
            p = Path(p)
            files.append(str(p))
            for item in read_items(p):
                items += 1
                before = len(hashes)
                hashes.update(h for h, _ in ngram_hashes(item, n))
                short += len(hashes) == before and len(_words(item)) < n
        if not hashes:
            raise GptkitError(f"--decontaminate: no item in {', '.join(files)} has {n} words or more: nothing to match")
        return cls(n, mode, frozenset(hashes), files, items, short)

    def first_match(self, text: str) -> str | None:
        """The first shared n-gram (its normalised words), or None."""
        words = [m.group() for m in _words(text)]
        for i in range(len(words) - self.n + 1):
            if _hash(words[i:i + self.n]) in self.hashes:
                return " ".join(words[i:i + self.n])
        return None

    def cut(self, text: str) -> tuple[str, int, str | None]:
        """text with every character span covered by a shared n-gram removed; the number of shared
        n-grams, and the first one."""
        matches = _words(text)
        words = [m.group() for m in matches]
        spans, first, count = [], None, 0
        for i in range(len(words) - self.n + 1):
            if _hash(words[i:i + self.n]) in self.hashes:
                count += 1
                first = first or " ".join(words[i:i + self.n])
                start, end = matches[i].start(), matches[i + self.n - 1].end()
                if spans and start <= spans[-1][1]:
                    spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
                else:
                    spans.append((start, end))
        if not spans:
            return text, 0, None
        # text.lower() keeps offsets for almost all text; where it does not, drop the whole text
        if len(text.lower()) != len(text):
            return "", count, first
        pieces, at = [], 0
        for s, e in spans:
            pieces.append(text[at:s])
            at = e
        pieces.append(text[at:])
        return "".join(pieces), count, first

    def describe(self) -> dict:
        return {"files": self.files, "n": self.n, "mode": self.mode, "items": self.items,
                "short_items": self.short_items, "ngrams": len(self.hashes)}
