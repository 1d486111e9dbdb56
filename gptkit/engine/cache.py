"""The KV cache: preallocated, one row per sequence, each row with its own length.

Shape (layers, rows, key/value heads, positions, head_dim): only the key/value heads of grouped-
query attention are stored (config.kv_cache_shape). Nothing is allocated per token: a forward pass
writes its new keys and values in place at each row's own position and attends over views of the
storage. `window(start, count)` chooses which rows the next forward passes see (one row for a
prefill into its slot, the first `count` rows for a decode step); where the rows of the window
have one length (a prompt batch, beams, one sequence) the writes are plain slices, otherwise each
row writes at its own position and the caller masks the keys past each row's length.

The model sees the KVCache interface: `length` (the past it attends over: the longest row of the
window), `update(layer, k, v)` and `advance(n)`.
"""
from __future__ import annotations

from typing import Any

import torch


class KVCache:
    """Keys and values of `batch_size` rows of up to `max_length` positions each."""

    def __init__(self, config: Any, batch_size: int, max_length: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        shape = config.kv_cache_shape(batch_size, max_length)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_length = max_length
        self.lengths = [0] * batch_size  # valid positions of each row
        self.start, self.count = 0, batch_size  # the window the next forward sees
        self.length = 0  # the longest row of the window: the model's "past"
        self.pos: torch.Tensor | None = None  # (count,) each row's write position, None where uniform

    @property
    def rows(self) -> int:
        return self.k.size(1)

    def window(self, start: int, count: int) -> None:
        """The next forward passes read and write rows start .. start + count - 1."""
        self.start, self.count = start, count
        lens = self.lengths[start:start + count]
        self.length = max(lens)
        uniform = min(lens) == self.length
        self.pos = None if uniform else torch.tensor(lens, dtype=torch.long, device=self.k.device)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.start, self.start + self.count
        T = k.size(2)
        end = self.length + T
        if self.pos is None:
            self.k[layer, a:b, :, self.length:end] = k
            self.v[layer, a:b, :, self.length:end] = v
        else:  # each row at its own position
            at = self.pos[:, None] + torch.arange(T, device=k.device)  # (count, T)
            rows = torch.arange(a, b, device=k.device)[:, None]
            self.k[layer][rows, :, at] = k.transpose(1, 2)
            self.v[layer][rows, :, at] = v.transpose(1, 2)
        return self.k[layer, a:b, :, :end], self.v[layer, a:b, :, :end]

    def advance(self, n: int) -> None:
        for r in range(self.start, self.start + self.count):
            self.lengths[r] += n
        self.window(self.start, self.count)

    def key_mask(self, extra: int = 1) -> torch.Tensor | None:
        """(count, length + extra) 1/0: which keys each row of the window may attend to in a forward
        of `extra` new tokens per row; None where every row has the same length (nothing to mask)."""
        if self.pos is None:
            return None
        ar = torch.arange(self.length + extra, device=self.k.device)[None, :]
        return (ar < (self.pos[:, None] + extra)).long()

    def positions(self, extra: int = 1) -> torch.Tensor:
        """(count, extra) the positions of the next `extra` tokens of each row of the window."""
        base = self.pos if self.pos is not None else torch.full((self.count,), self.length, device=self.k.device)
        return base[:, None] + torch.arange(extra, device=self.k.device)

    # -- rows
    def set_length(self, row: int, length: int) -> None:
        """Row `row` now holds `length` valid positions (a new sequence: 0; a rollback: fewer)."""
        self.lengths[row] = length

    def copy_row(self, src: int, dst: int, length: int | None = None) -> None:
        n = self.lengths[src] if length is None else length
        self.k[:, dst, :, :n] = self.k[:, src, :, :n]
        self.v[:, dst, :, :n] = self.v[:, src, :, :n]
        self.lengths[dst] = n

    def reorder(self, index: torch.Tensor) -> None:
        """Row i becomes old row index[i] (beam search reorders hypotheses every step; a longer
        index also grows the cache, e.g. one prefilled prompt copied to its beams)."""
        idx = index.tolist()
        if index.numel() != self.rows:
            self.k = self.k.index_select(1, index)
            self.v = self.v.index_select(1, index)
        else:
            n = max(self.lengths)  # in place, and only the filled positions
            self.k[:, :, :, :n] = self.k[:, index, :, :n]
            self.v[:, :, :, :n] = self.v[:, index, :, :n]
        self.lengths = [self.lengths[i] for i in idx]
        self.window(0, len(idx))

    def write(self, row: int, at: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Put (layers, kv heads, n, head_dim) keys and values into row `row` at positions at .. at + n."""
        n = k.size(2)
        self.k[:, row, :, at:at + n] = k
        self.v[:, row, :, at:at + n] = v

    def read(self, row: int, at: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k[:, row, :, at:at + n], self.v[:, row, :, at:at + n]
