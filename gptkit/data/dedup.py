"""Exact and near-duplicate detection for `prepare`.

Exact: two documents are the same when their text is equal after whitespace is normalised
(every run of spaces, tabs and newlines counts as one space; leading/trailing ones are ignored).
The key is a 128-bit BLAKE2b digest of that form.

Near: MinHash over word 5-grams ("shingles"), with datasketch's MinHash (affine32 scheme,
128 permutations) and MinHashLSH. Words are maximal runs of letters, digits and non-ASCII
characters, lower-cased. Two documents are near-duplicates when the MinHash estimate of the
Jaccard similarity of their shingle sets is >= `threshold` (default 0.8): LSH proposes the
candidates, the estimate from the stored signatures confirms them. A 300-word document with a
few words changed stays above 0.8; two different documents on the same topic are far below.

Documents are kept first come, first served in input order: a document is dropped when it is
an exact or near copy of one kept before it, whatever split either is in, so no val document is
a copy of a train document. Memory: the index holds a digest and a 512-byte signature plus
LSH band keys per kept document (about 2 KB), whatever the documents' length.

The shingle hashing is vectorised in numpy (a polynomial hash of each word's bytes, combined over
5 words); `signature` then applies datasketch's own permutations exactly as
`MinHash.update_batch` does (tested equal), in chunks so memory stays small.
"""

from __future__ import annotations

import hashlib

import numpy as np

SHINGLE_WORDS = 5
NUM_PERM = 128
THRESHOLD = 0.8
SEED = 1

_M64 = (1 << 64) - 1
_P = 0x100000001B3  # FNV-1a's 64-bit prime: odd, so invertible mod 2^64
_P_INV = pow(_P, -1, 1 << 64)
_Q = 0x9E3779B97F4A7C15  # combines the words of a shingle
_CHUNK = 4096  # shingles per permutation block: (4096, 128) uint32 = 2 MiB

# bytes that are part of a word: ASCII letters and digits, and every byte of a non-ASCII character
_WORD = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
    _WORD[_c] = True
_WORD[0x80:] = True
_LOWER = np.arange(256, dtype=np.uint64)
_LOWER[65:91] += 32

_pow_cache: dict[int, np.ndarray] = {}


def exact_digest(text: str) -> bytes:
    """16-byte digest of `text` with whitespace runs collapsed (see the module doc)."""
    return hashlib.blake2b(" ".join(text.split()).encode("utf-8", "surrogatepass"), digest_size=16).digest()


def combine_digests(digests: list[bytes]) -> bytes:
    """The digest of a document read in pieces (one per piece, in order)."""
    return digests[0] if len(digests) == 1 else hashlib.blake2b(b"".join(digests), digest_size=16).digest()


def _powers(base: int, n: int) -> np.ndarray:
    """base**0 .. base**(n-1) mod 2^64, cached and grown by doubling."""
    have = _pow_cache.get(base)
    if have is None or len(have) < n:
        size = max(n, 2 * len(have) if have is not None else 1 << 16)
        p = np.full(size, base, dtype=np.uint64)
        p[0] = 1
        with np.errstate(over="ignore"):
            have = np.cumprod(p, dtype=np.uint64)
        _pow_cache[base] = have
    return have[:n]


def shingle_hashes(text: str, k: int = SHINGLE_WORDS) -> np.ndarray:
    """32-bit hashes of the word k-grams of `text` (all its words as one shingle if fewer than k;
    none if it has no word). Equal k-grams get equal hashes in any text, process or machine."""
    b = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    if not len(b):
        return np.zeros(0, dtype=np.uint32)
    word = _WORD[b]
    edges = np.flatnonzero(np.diff(word.view(np.int8), prepend=0, append=0))
    starts, ends = edges[0::2], edges[1::2]  # each word is b[starts[i]:ends[i]]
    if not len(starts):
        return np.zeros(0, dtype=np.uint32)
    with np.errstate(over="ignore"):
        prefix = np.zeros(len(b) + 1, dtype=np.uint64)
        np.cumsum(_LOWER[b] * _powers(_P, len(b)), out=prefix[1:])
        words = (prefix[ends] - prefix[starts]) * _powers(_P_INV, len(b))[starts] + (ends - starts).astype(np.uint64)
        k = min(k, len(words))
        n = len(words) - k + 1
        h = words[:n].copy()
        for i in range(1, k):
            h = h * np.uint64(_Q) + words[i : i + n]
    return ((h >> np.uint64(32)) ^ (h & np.uint64(0xFFFFFFFF))).astype(np.uint32)


class MinHasher:
    """datasketch's affine32 MinHash of 32-bit shingle hashes, vectorised."""

    def __init__(self, num_perm: int = NUM_PERM, seed: int = SEED):
        from datasketch import MinHash

        self.num_perm, self.seed = num_perm, seed
        self.permutations = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        self._a = self.permutations[0].astype(np.uint32)
        self._b = self.permutations[1].astype(np.uint32)
        self._buf = np.empty((_CHUNK, num_perm), dtype=np.uint32)  # reused: no temporaries per chunk

    def empty(self) -> np.ndarray:
        return np.full(self.num_perm, 0xFFFFFFFF, dtype=np.uint32)

    def signature(self, hashes: np.ndarray, into: np.ndarray | None = None) -> np.ndarray:
        """Min over the shingles of a*fmix32(h)+b mod 2^32, per permutation (as update_batch)."""
        from datasketch.minhash import _fmix

        sig = self.empty() if into is None else into
        with np.errstate(over="ignore"):
            for a in range(0, len(hashes), _CHUNK):
                hv = _fmix(hashes[a : a + _CHUNK].astype(np.uint32), 32).reshape(-1, 1)
                perm = self._buf[: len(hv)]
                np.multiply(hv, self._a, out=perm)
                perm += self._b
                np.minimum(sig, perm.min(axis=0), out=sig)
        return sig

    def minhash(self, sig: np.ndarray):
        from datasketch import MinHash

        return MinHash(hashvalues=sig, permutations=self.permutations, scheme="affine32")


class Deduper:
    """First come, first served exact + near duplicate detection over a stream of documents."""

    def __init__(self, threshold: float = THRESHOLD, num_perm: int = NUM_PERM, seed: int = SEED, near: bool = True):
        from datasketch import MinHashLSH

        self.threshold, self.near = threshold, near
        self.hasher = MinHasher(num_perm, seed)
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, hashfunc=_band_key) if near else None
        self._exact: dict[bytes, str] = {}  # digest -> split of the kept document
        self._sigs = np.zeros((1024, num_perm), dtype=np.uint32)  # signatures of the kept documents
        self._sig_splits: list[str] = []  # their splits; the LSH key is the row in _sigs

    @property
    def params(self) -> dict:
        return {
            "exact": "BLAKE2b-128 of the text with whitespace runs collapsed",
            "near": self.near,
            "method": "MinHash LSH (datasketch, affine32), word 5-grams, lower-cased",
            "jaccard_threshold": self.threshold,
            "num_perm": self.hasher.num_perm,
            "bands": self.lsh.b if self.lsh else None,
            "rows": self.lsh.r if self.lsh else None,
            "shingle_words": SHINGLE_WORDS,
        }

    def check(self, digest: bytes, sig: np.ndarray | None, split: str) -> tuple[str, str] | None:
        """None if the document is new (and remember it), else ("exact" | "near", the kept one's split)."""
        other = self._exact.get(digest)
        if other is not None:
            return "exact", other
        empty = sig is None or int(sig.min()) == 0xFFFFFFFF
        if self.near and not empty:
            m = self.hasher.minhash(sig)
            best = None
            for key in self.lsh.query(m):
                j = float(np.count_nonzero(self._sigs[key] == sig)) / len(sig)
                if j >= self.threshold and (best is None or key < best):
                    best = key
            if best is not None:
                return "near", self._sig_splits[best]
        self._exact[digest] = split
        if self.near and not empty:
            key = len(self._sig_splits)
            if key == len(self._sigs):
                self._sigs = np.concatenate([self._sigs, np.zeros_like(self._sigs)])
            self._sigs[key] = sig
            self._sig_splits.append(split)
            self.lsh.insert(key, m, check_duplication=False)
        return None


def _band_key(band: bytes) -> bytes:
    """LSH bucket key: 8 bytes instead of rows*4 (less memory per document)."""
    return hashlib.blake2b(band, digest_size=8).digest()
