"""Prefix caching: the keys and values of prompt prefixes seen before, reused instead of recomputed.

A prompt is cut into blocks of `block` tokens; each full block's keys and values are kept under the
key (the block before it, its tokens), so prompts that share a start share its blocks (a k-shot
prefix, a system prompt, a multiple-choice context) however they continue. A new prompt walks its
blocks from the start and stops at the first one not kept; the matched blocks are copied into its
cache row (a memory copy, far cheaper than the forward pass it replaces) and only the rest of the
prompt is computed. At least the prompt's last token is always computed: its logits choose the
first new token.

Memory is bounded (max_bytes); the least recently used block goes first. A lookup refreshes its
chain from the last block to the first, so a block is always more recent than the blocks after it:
eviction takes the tails of old prompts before the prefixes they share with others. A block whose
predecessor was evicted can no longer be matched (ids are never reused) and ages out in turn.
Blocks rather than whole prefixes: two prompts that share 1,000 tokens and differ after store
those 1,000 tokens once.

A prefix cache belongs to one model with fixed weights (it keeps keys and values that model
computed): the server and `gptkit summarize/translate` keep one for their run; model.generate makes
one per call, so rows of one batch share their prefixes.
"""
from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from .cache import KVCache


@dataclass
class _Block:
    id: int
    k: torch.Tensor  # (layers, kv heads, block, head_dim)
    v: torch.Tensor


class PrefixCache:
    """Blocks of keys and values of `model`'s prompt prefixes, at most max_bytes of them."""

    def __init__(self, model: Any, max_bytes: int = 256 << 20, block: int = 32) -> None:
        if block < 1 or max_bytes < 0:
            raise ValueError("block must be >= 1 and max_bytes >= 0")
        c = model.config
        self.model_ref = id(model)
        self.block = block
        per = torch.finfo(model.dtype).bits // 8 if model.dtype.is_floating_point else 4
        self.block_bytes = 2 * c.n_layer * c.n_kv_head * block * c.head_dim * per
        self.capacity = max_bytes // self.block_bytes  # blocks
        self.blocks: OrderedDict[tuple[int, tuple[int, ...]], _Block] = OrderedDict()
        self._ids = itertools.count(1)
        self.hit_tokens = 0  # prompt tokens reused, over the cache's life
        self.lookups = 0

    def __len__(self) -> int:
        return len(self.blocks)

    @property
    def bytes(self) -> int:
        return len(self.blocks) * self.block_bytes

    def _chain(self, prompt: list[int], n_blocks: int) -> list[tuple[tuple[int, tuple[int, ...]], _Block]]:
        found, parent, b = [], 0, self.block
        for i in range(n_blocks):
            key = (parent, tuple(prompt[i * b:(i + 1) * b]))
            blk = self.blocks.get(key)
            if blk is None:
                break
            found.append((key, blk))
            parent = blk.id
        return found

    def load(self, prompt: list[int], cache: KVCache, row: int) -> int:
        """Copy the longest kept prefix of `prompt` (whole blocks, never its last token) into
        `row` of `cache`; returns how many tokens it holds (the row's length is set to that)."""
        self.lookups += 1
        chain = self._chain(prompt, (len(prompt) - 1) // self.block)
        for i, (_, blk) in enumerate(chain):
            cache.write(row, i * self.block, blk.k, blk.v)
        for key, _ in reversed(chain):  # refresh: earlier blocks end up the most recent
            self.blocks.move_to_end(key)
        n = len(chain) * self.block
        cache.set_length(row, n)
        self.hit_tokens += n
        return n

    def store(self, prompt: list[int], cache: KVCache, row: int) -> None:
        """Keep the full blocks of `prompt` that `row` of `cache` now holds and are not kept yet."""
        if self.capacity == 0:
            return
        b = self.block
        n_blocks = min(len(prompt), cache.lengths[row]) // b
        chain = self._chain(prompt, n_blocks)
        keys = [key for key, _ in chain]
        parent = chain[-1][1].id if chain else 0
        for i in range(len(chain), n_blocks):
            k, v = cache.read(row, i * b, b)
            blk = _Block(next(self._ids), k.clone(), v.clone())
            keys.append((parent, tuple(prompt[i * b:(i + 1) * b])))
            self.blocks[keys[-1]] = blk
            parent = blk.id
        for key in reversed(keys):  # earlier blocks the most recent
            self.blocks.move_to_end(key)
        while len(self.blocks) > self.capacity:
            self.blocks.popitem(last=False)

    def clear(self) -> None:
        self.blocks.clear()
