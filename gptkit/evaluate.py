"""Evaluation: mean loss over consecutive windows; perplexity and bits per byte from it.
"""
from __future__ import annotations

import math

import torch

from . import distributed as distr
from .data import TokenShards
from .device import autocast
from .distributed import Runtime
from .errors import GptkitError
from .model import GPT


@torch.no_grad()
def evaluate(model: GPT, shards: TokenShards, block_size: int, batch_size: int,
             max_batches: int | None, amp: torch.dtype | None = None, rt: Runtime | None = None) -> dict[str, float]:
    """Mean loss over consecutive windows of a split; perplexity and bits per byte from it.

    Under several ranks (`rt`), an eval batch is batch_size x world_size windows, each rank takes
    its batch_size of them and the sums are all-reduced: the windows, hence the result, are those
    of one process with a batch of batch_size x world_size.
    """
    rank, world = (rt.rank, rt.world_size) if rt is not None else (0, 1)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = torch.zeros((), device=device, dtype=torch.float64)
    n = batches = 0
    for x, y in shards.iter_eval_batches(batch_size * world, block_size, max_batches):
        batches += 1
        x, y = x[rank * batch_size:(rank + 1) * batch_size], y[rank * batch_size:(rank + 1) * batch_size]
        weight = int((y != -100).sum())  # targets of -100 (masked prompt tokens, padding) are not scored
        if weight == 0:  # a short last batch: still take part in FSDP's collectives, count nothing
            x, y = x.new_zeros(1, block_size), y.new_zeros(1, block_size)
        with autocast(device, amp):
            loss = model.loss(x.to(device), y.to(device))
        total += loss.double() * weight
        n += weight
    if world > 1:
        sums = torch.stack([total, torch.tensor(float(n), device=device, dtype=torch.float64)])
        distr.all_sum(sums)
        total, n = sums[0], int(sums[1].item())
    total = total.item()
    model.train(was_training)
    if n == 0:
        raise GptkitError(f"split '{shards.split}' has no full window of {block_size + 1} tokens")
    loss = total / n
    tokens_per_byte = shards.num_tokens / max(1, shards.num_bytes)
    whole = max_batches is None or batches < max_batches  # the batches ran out before the cap
    return {"loss": loss, "perplexity": math.exp(min(loss, 700)),
            "bits_per_byte": loss / math.log(2) * tokens_per_byte, "eval_tokens": n,
            "whole_split": whole, "block_size": block_size}
