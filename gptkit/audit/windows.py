"""Windows of a split, and how often a token sequence occurs in the training split.

`sample_windows` draws distinct random windows of a fixed length from a split (never straddling
two shards). `NgramIndex` hashes every n-gram of the training split once (a 64-bit polynomial
hash, sorted), so that the audit can tell for thousands of windows how many times their text
occurs in the data: the duplicate count that memorization grows with.
"""
from __future__ import annotations

import numpy as np

from ..data import TokenShards
from ..errors import GptkitError

_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplication by it is a bijection mod 2**64
MAX_INDEX_TOKENS = 200_000_000  # past this the index (8 bytes a token) is not worth its memory


def sample_windows(shards: TokenShards, length: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to n distinct windows of `length` tokens, uniform over every start, as (n, length) int64."""
    ends = _starts(shards, length)
    if ends is None:
        return np.zeros((0, length), dtype=np.int64)
    total = int(ends[-1])
    picks = np.sort(rng.choice(total, size=min(n, total), replace=False))
    rows = []
    for p in picks:
        k = int(np.searchsorted(ends, p, side="right"))
        i = int(p - (ends[k - 1] if k else 0))
        rows.append(np.asarray(shards.shards[k][i:i + length], dtype=np.int64))
    out = np.stack(rows)
    if out.size and int(out.max()) >= shards.vocab_size:
        raise GptkitError(f"{shards.data_dir}: split {shards.split!r} holds token id {int(out.max())}, beyond the "
                          f"vocabulary of {shards.vocab_size} ids (a corrupt or foreign shard): prepare it again")
    return out


def _starts(shards: TokenShards, length: int) -> np.ndarray | None:
    ends = np.cumsum([max(0, len(s) - length + 1) for s in shards.shards]) if shards.shards else np.zeros(0)
    return ends if len(ends) and ends[-1] > 0 else None


def _hashes(tokens: np.ndarray, n: int) -> np.ndarray:
    """The hash of every n-gram of tokens (len(tokens) - n + 1 of them)."""
    count = len(tokens) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    t = np.asarray(tokens).astype(np.uint64)
    h = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h *= _BASE
            h += t[j:j + count] + np.uint64(1)
    return h


def hash_rows(rows: np.ndarray) -> np.ndarray:
    """The hash of each row of a 2-D array of token ids (the same hash as the index's n-grams)."""
    rows = np.asarray(rows).astype(np.uint64)
    h = np.zeros(len(rows), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(rows.shape[1]):
            h *= _BASE
            h += rows[:, j] + np.uint64(1)
    return h


class NgramIndex:
    """Every n-gram of a split, hashed and sorted: count(rows) is how often each row occurs."""

    def __init__(self, shards: TokenShards, n: int):
        self.n = n
        if shards.num_tokens > MAX_INDEX_TOKENS:
            raise GptkitError(f"the training split has {shards.num_tokens:,} tokens, more than the duplicate index "
                              f"takes ({MAX_INDEX_TOKENS:,})")
        parts = [_hashes(s, n) for s in shards.shards]
        self.sorted = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)

    def count(self, rows: np.ndarray) -> np.ndarray:
        """Occurrences in the split of each row (rows of exactly n tokens)."""
        h = hash_rows(rows)
        return np.searchsorted(self.sorted, h, side="right") - np.searchsorted(self.sorted, h, side="left")

    def contains_any(self, tokens: np.ndarray) -> bool:
        """Whether any n-gram of `tokens` occurs in the split."""
        h = _hashes(tokens, self.n)
        if not len(h):
            return False
        i = np.searchsorted(self.sorted, h)
        i = np.minimum(i, len(self.sorted) - 1)
        return bool(len(self.sorted) and (self.sorted[i] == h).any())


def count_sequence(shards: TokenShards, seq: list[int]) -> int:
    """Occurrences of one token sequence in a split (a direct search: for the few canaries)."""
    seq_a = np.asarray(seq)
    total = 0
    for s in shards.shards:
        if len(s) < len(seq_a):
            continue
        hits = np.flatnonzero(np.asarray(s[: len(s) - len(seq_a) + 1]) == seq_a[0])
        for j in range(1, len(seq_a)):
            if not len(hits):
                break
            hits = hits[np.asarray(s[hits + j]) == seq_a[j]]
        total += len(hits)
    return total
