"""Training rows: each row of a step's global batch drawn from a seed of (seed, step, row), so
the data position is the step itself and a global batch is the same whatever the world size.
"""
from __future__ import annotations

import hashlib
from typing import Any

import torch

from ..distributed import Runtime

# ---------------------------------------------------------------------------- data

def _seed(*parts: Any) -> int:
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def row_generator(seed: int, it: int, row: int) -> torch.Generator:
    """The RNG of row `row` of step `it`'s global batch: a pure function of (seed, step, row)."""
    g = torch.Generator()
    g.manual_seed(_seed(seed, it, row))
    return g


def step_seed(seed: int, it: int, rank: int) -> int:
    """The seed of the torch RNG (dropout) for one step of one rank: resumable without saved state."""
    return _seed(seed, "dropout", it, rank)


def micro_rows(batch_size: int, world_size: int, rank: int, micro: int) -> range:
    """The global-batch rows of one rank's micro-step."""
    first = (micro * world_size + rank) * batch_size
    return range(first, first + batch_size)


def rank_batch(data: Any, batch_size: int, block_size: int, seed: int, it: int, rt: Runtime,
               micro: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's (x, y) for micro-step `micro` of step `it` (see the module docstring). Data with
    its own rank_batch (task examples, bucketed by length) draws its rows itself."""
    if hasattr(data, "rank_batch"):
        return data.rank_batch(batch_size, block_size, seed, it, rt, micro)
    rows = [data.get_batch(1, block_size, row_generator(seed, it, g))
            for g in micro_rows(batch_size, rt.world_size, rt.rank, micro)]
    return torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows])
