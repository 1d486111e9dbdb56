"""What `prepare` does to each document on the way in: PII redaction, quality filters, and the
keys dedup needs (exact digest, MinHash signature).

Workers clean and hash each piece of text (`clean_piece`, in parallel); the main process adds
the pieces of a document up (`DocState`) and decides, in input order, whether it is kept
(`CleanStats.decide`): filters first, then PII `drop`, then evaluation-set n-grams
(decontamination), then exact and near duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import GptkitError
from . import dedup, pii
from . import filters as filt
from .decontam import Decontaminator
from .dedup import THRESHOLD

REASONS = ("min_chars", "max_non_text", "language", "pii", "exact_duplicate", "near_duplicate", "contaminated")
EXAMPLES = 5  # shared n-grams the data card shows


@dataclass(frozen=True)
class CleanConfig:
    pii: str = "redact"  # redact | drop | keep
    dedup: bool = True
    threshold: float = THRESHOLD
    filters: filt.Filters = field(default_factory=filt.Filters)
    decontaminate: Decontaminator | None = None  # evaluation sets' n-grams (prepare --decontaminate)

    def __post_init__(self):
        if self.pii not in pii.MODES:
            raise GptkitError(f"--pii must be one of {', '.join(pii.MODES)}, got {self.pii!r}")
        if not 0 < self.threshold <= 1:
            raise GptkitError(f"--dedup-threshold must be in (0, 1], got {self.threshold!r}")

    @property
    def hashes(self) -> bool:
        """Whether workers compute dedup keys (also for parts, whose merge dedups)."""
        return self.dedup

    @property
    def active(self) -> bool:
        return self.pii != "keep" or self.dedup or self.filters.active or self.decontaminate is not None

    def describe(self) -> dict:
        d = {"pii": self.pii, "dedup": self.dedup, "dedup_threshold": self.threshold, "filters": self.filters.describe()}
        if self.decontaminate is not None:
            d["decontaminate"] = self.decontaminate.describe()
        return d


@dataclass
class PieceInfo:
    chars: int
    pii: dict[str, int]
    digest: bytes | None = None
    sig: np.ndarray | None = None
    non_text: int = 0
    lang: tuple[str, float] | None = None
    contaminated: str | None = None  # the first n-gram shared with an evaluation set
    cut: int = 0  # shared n-grams cut out (--decontaminate-mode cut)


_hasher: dedup.MinHasher | None = None


def clean_piece(text: str, first: bool, config: CleanConfig) -> tuple[str, PieceInfo]:
    """Worker side: the text to encode and what the main process needs to decide."""
    global _hasher
    counts: dict[str, int] = {}
    if config.pii != "keep":
        text, counts = pii.scan(text)
    contaminated, cut = None, 0
    if config.decontaminate is not None:
        if config.decontaminate.mode == "cut":
            text, cut, contaminated = config.decontaminate.cut(text)
        else:
            contaminated = config.decontaminate.first_match(text)
    info = PieceInfo(len(text), counts, contaminated=contaminated, cut=cut)
    if config.dedup:
        if _hasher is None:
            _hasher = dedup.MinHasher()
        info.digest = dedup.exact_digest(text)
        hashes = dedup.shingle_hashes(text)
        info.sig = _hasher.signature(hashes) if len(hashes) else None
    f = config.filters
    if f.max_non_text < 1:
        info.non_text = filt.non_text_count(text)
    if f.languages and first:
        info.lang = filt.language(text)
    return text, info


class DocState:
    """The pieces of one document, added up in the main process."""

    __slots__ = ("split", "start", "chars", "non_text", "lang", "pii", "digests", "sig", "bytes", "contaminated", "cut")

    def __init__(self, split: str, start: int):
        self.split, self.start = split, start
        self.chars = self.non_text = self.bytes = 0
        self.lang = None
        self.pii: dict[str, int] = {}
        self.digests: list[bytes] = []
        self.sig: np.ndarray | None = None
        self.contaminated: str | None = None
        self.cut = 0

    def add(self, info: PieceInfo | None, nbytes: int) -> None:
        self.bytes += nbytes
        if info is None:
            return
        self.chars += info.chars
        self.non_text += info.non_text
        if info.lang is not None:
            self.lang = info.lang
        self.contaminated = self.contaminated or info.contaminated
        self.cut += info.cut
        for k, v in info.pii.items():
            self.pii[k] = self.pii.get(k, 0) + v
        if info.digest is not None:
            self.digests.append(info.digest)
        if info.sig is not None:
            self.sig = info.sig.copy() if self.sig is None else np.minimum(self.sig, info.sig)

    @property
    def digest(self) -> bytes:
        return dedup.combine_digests(self.digests)


@dataclass
class CleanStats:
    """Counts for meta.json and the data card."""

    documents_in: int = 0  # documents read (with text)
    pii_found: dict = field(default_factory=lambda: {k: 0 for k in pii.KINDS})
    pii_documents: int = 0  # documents with at least one finding
    removed: dict = field(default_factory=lambda: {r: {"documents": 0, "bytes": 0} for r in REASONS})
    cross_split: dict = field(default_factory=lambda: {"exact_duplicate": 0, "near_duplicate": 0})
    decontam: dict = field(default_factory=lambda: {"cut_ngrams": 0, "cut_documents": 0, "examples": []})

    def pre_dedup(self, doc: DocState, config: CleanConfig) -> str | None:
        """Count the document in; the filter or PII reason that removes it, if any."""
        self.documents_in += 1
        if doc.pii:
            self.pii_documents += 1
            for k, v in doc.pii.items():
                self.pii_found[k] += v
        reason = filt.verdict(config.filters, doc.chars, doc.non_text, doc.lang) if config.filters.active else None
        if reason is None and config.pii == "drop" and doc.pii:
            reason = "pii"
        if doc.contaminated:
            if len(self.decontam["examples"]) < EXAMPLES:
                self.decontam["examples"].append(doc.contaminated)
            if doc.cut:
                self.decontam["cut_ngrams"] += doc.cut
                self.decontam["cut_documents"] += 1
            elif reason is None:
                reason = "contaminated"
        if reason:
            self.remove(reason, doc.bytes)
        return reason

    def dedup(self, deduper: dedup.Deduper | None, digest: bytes, sig: np.ndarray | None, split: str, nbytes: int) -> str | None:
        """Check one document against those kept before it; the reason it goes, if it does."""
        if deduper is None:
            return None
        found = deduper.check(digest, sig, split)
        if found is None:
            return None
        reason = f"{found[0]}_duplicate"
        self.remove(reason, nbytes)
        if found[1] != split:
            self.cross_split[reason] += 1
        return reason

    def remove(self, reason: str, nbytes: int) -> None:
        self.removed[reason]["documents"] += 1
        self.removed[reason]["bytes"] += nbytes

    def to_dict(self) -> dict:
        return {
            "documents_in": self.documents_in,
            "pii_found": dict(self.pii_found),
            "pii_documents": self.pii_documents,
            "removed": {k: dict(v) for k, v in self.removed.items()},
            "cross_split_duplicates": dict(self.cross_split),
            "decontamination": {**self.decontam, "examples": list(self.decontam["examples"])},
        }

    def add_dict(self, d: dict) -> None:
        """Add the counts of a part (merge)."""
        self.documents_in += d["documents_in"]
        self.pii_documents += d["pii_documents"]
        for k, v in d["pii_found"].items():
            self.pii_found[k] += v
        for k, v in d["removed"].items():
            self.removed.setdefault(k, {"documents": 0, "bytes": 0})
            self.removed[k]["documents"] += v["documents"]
            self.removed[k]["bytes"] += v["bytes"]
        for k, v in d["cross_split_duplicates"].items():
            self.cross_split[k] += v
        dc = d.get("decontamination") or {}
        self.decontam["cut_ngrams"] += dc.get("cut_ngrams", 0)
        self.decontam["cut_documents"] += dc.get("cut_documents", 0)
        self.decontam["examples"] = (self.decontam["examples"] + list(dc.get("examples", [])))[:EXAMPLES]


# The per-document table a part writes for its merge (documents that passed filters and PII).
def docs_dtype(num_perm: int = dedup.NUM_PERM) -> np.dtype:
    return np.dtype([("split", "u1"), ("start", "<u8"), ("tokens", "<u8"), ("bytes", "<u8"),
                     ("digest", "u1", (16,)), ("sig", "<u4", (num_perm,))])


def cleaning_summary(meta: dict) -> str:
    """"; N exact + M near duplicates removed, K PII findings redacted" for the summary line."""
    c = (meta.get("cleaning") or {}).get("stats")
    if not c:
        return ""
    removed = c["removed"]
    parts = []
    if meta["cleaning"]["config"]["dedup"]:
        parts.append(f"{removed['exact_duplicate']['documents']:,} exact + {removed['near_duplicate']['documents']:,} near "
                     "duplicates removed")
    if meta["cleaning"]["config"]["pii"] != "keep":
        found = sum(c["pii_found"].values())
        verb = "redacted" if meta["cleaning"]["config"]["pii"] == "redact" else f"found ({removed['pii']['documents']:,} documents dropped)"
        parts.append(f"{found:,} PII findings {verb}")
    dc = meta["cleaning"]["config"].get("decontaminate")
    if dc:
        parts.append(f"{removed.get('contaminated', {}).get('documents', 0):,} documents sharing a {dc['n']}-gram with "
                     "evaluation sets removed" if dc["mode"] == "drop" else
                     f"{c.get('decontamination', {}).get('cut_ngrams', 0):,} evaluation-set {dc['n']}-grams cut")
    filtered = sum(removed[k]["documents"] for k in ("min_chars", "max_non_text", "language"))
    if filtered:
        parts.append(f"{filtered:,} documents filtered")
    return "; " + ", ".join(parts) if parts else ""
