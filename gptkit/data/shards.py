"""TokenShards: one split of a prepared data directory, memory-mapped; meta.json.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..errors import GptkitError

FORMAT = "gptkit-shards-v1"
PART_FORMAT = "gptkit-part-v1"  # one part of a multi-machine prepare (merge.py)

# -- reading shards ------------------------------------------------------------------------


def read_meta(data_dir: str | os.PathLike) -> dict:
    path = Path(data_dir) / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GptkitError(f"{path} is missing: is {data_dir} a data directory made by `gptkit prepare`?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise GptkitError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise GptkitError(f"{path}: not a {FORMAT} meta file")
    try:
        ok = meta["dtype"] in ("uint16", "uint32") and isinstance(meta["vocab_size"], int)
        for s in meta["splits"].values():
            ok = ok and all(isinstance(x["file"], str) and isinstance(x["tokens"], int) for x in s["shards"])
            ok = ok and isinstance(s["tokens"], int) and isinstance(s["bytes"], int)
    except (KeyError, TypeError, AttributeError):
        ok = False
    if not ok:  # an error, not assert: `python -O` would skip the check
        raise GptkitError(f"{path}: missing or malformed fields (dtype, vocab_size, splits)")
    return meta


class TokenShards:
    """One split of a prepared data directory, memory-mapped."""

    def __init__(self, data_dir: str | os.PathLike, split: str):
        self.data_dir, self.split = Path(data_dir), split
        self.meta = read_meta(data_dir)
        if split not in self.meta["splits"]:
            raise GptkitError(f"{self.data_dir / 'meta.json'}: has no split {split!r}")
        info = self.meta["splits"][split]
        dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")
        self.shards: list[np.memmap] = []
        for shard in info["shards"]:
            path = self.data_dir / shard["file"]
            if not path.is_file():
                raise GptkitError(f"shard {path} is missing")
            if path.stat().st_size != shard["tokens"] * dtype.itemsize:
                raise GptkitError(f"shard {path} has {path.stat().st_size} bytes, meta.json says {shard['tokens']} tokens of {dtype.itemsize} bytes")
            if shard["tokens"]:
                self.shards.append(np.memmap(path, dtype=dtype, mode="r"))
        self.num_tokens = sum(len(s) for s in self.shards)
        if self.num_tokens != info["tokens"]:
            raise GptkitError(f"{self.data_dir / 'meta.json'}: split {split!r} lists {info['tokens']} tokens but its shards hold {self.num_tokens}")
        self.num_bytes: int = info["bytes"]
        self.vocab_size: int = self.meta["vocab_size"]
        self._starts: dict[int, np.ndarray] = {}

    def _checked(self, w: torch.Tensor) -> torch.Tensor:
        """A batch of windows, its ids checked against the vocabulary (one max per batch: a shard
        with foreign ids is an error naming it, not an IndexError deep in the model)."""
        top = int(w.max()) if w.numel() else 0
        if top >= self.vocab_size:
            raise GptkitError(f"{self.data_dir}: split {self.split!r} holds token id {top}, beyond the "
                              f"vocabulary of {self.vocab_size} ids (a corrupt or foreign shard): prepare it again")
        return w

    def _window_ends(self, block_size: int) -> np.ndarray:
        """Cumulative count of window starts per shard (a window never straddles two shards)."""
        if block_size not in self._starts:
            if self.num_tokens < block_size + 1:
                raise GptkitError(
                    f"split {self.split!r} of {self.data_dir} has {self.num_tokens} tokens, fewer than "
                    f"block_size+1 = {block_size + 1}; use a smaller --block-size or more data"
                )
            ends = np.cumsum([max(0, len(s) - block_size) for s in self.shards])
            if ends[-1] == 0:
                raise GptkitError(
                    f"no shard of split {self.split!r} of {self.data_dir} holds block_size+1 = {block_size + 1} "
                    f"tokens; prepare again with larger shards or use a smaller --block-size"
                )
            self._starts[block_size] = ends
        return self._starts[block_size]

    def _window(self, k: int, i: int, block_size: int) -> torch.Tensor:
        return torch.from_numpy(self.shards[k][i : i + block_size + 1].astype(np.int64))

    def get_batch(self, batch_size: int, block_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows, uniform over every valid start: x = tokens[i:i+T], y = tokens[i+1:i+T+1].

        Only `generator` supplies randomness, so a seeded generator makes batches reproducible.
        """
        ends = self._window_ends(block_size)
        picks = torch.randint(int(ends[-1]), (batch_size,), generator=generator, device=generator.device).tolist()
        rows = []
        for p in picks:
            k = int(np.searchsorted(ends, p, side="right"))
            rows.append(self._window(k, p - (int(ends[k - 1]) if k else 0), block_size))
        w = self._checked(torch.stack(rows))
        return w[:, :-1], w[:, 1:]

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Consecutive non-overlapping windows from the start of the split; the last batch may be short."""
        self._window_ends(block_size)
        rows, done = [], 0
        for k, shard in enumerate(self.shards):
            for i in range(0, len(shard) - block_size, block_size):
                rows.append(self._window(k, i, block_size))
                if len(rows) == batch_size:
                    w, rows, done = self._checked(torch.stack(rows)), [], done + 1
                    yield w[:, :-1], w[:, 1:]
                    if max_batches is not None and done >= max_batches:
                        return
        if rows:
            w = self._checked(torch.stack(rows))
            yield w[:, :-1], w[:, 1:]


def unigram_entropy(data_dir: str | os.PathLike) -> float:
    """Entropy in nats/token of the train split's token frequencies: the loss of a model that
    ignores context, which a trained model should beat."""
    shards = TokenShards(data_dir, "train")
    counts = np.zeros(shards.meta["vocab_size"], dtype=np.int64)
    for s in shards.shards:
        for a in range(0, len(s), 1 << 24):
            shards._checked(torch.from_numpy(np.asarray(s[a : a + (1 << 24)], dtype=np.int64)))
            counts += np.bincount(s[a : a + (1 << 24)], minlength=len(counts))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
