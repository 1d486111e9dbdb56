"""The sampler: the next token of every row of a decode step, each row by its own parameters.

Greedy rows take the argmax. A sampling row draws one uniform number per token from its own
torch.Generator (seeded from the request's seed; sample j of a request uses seed + j) and takes
the first token whose cumulative probability reaches it; all sampling rows go through one batched
softmax/cumsum/searchsorted (per-row torch.multinomial calls cost more than a small model's decode
step at a 50k vocabulary). A row's token depends only on its own logits and its own generator,
never on the other rows, so a seeded request gives the same tokens alone or in a batch, from
model.generate, `gptkit generate` or the server (up to float rounding of batched matmuls).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .processors import row_scores, warp

if TYPE_CHECKING:
    from .sequence import Seq


def processed(seqs: list[Seq], logits: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """The scores each row samples from (its processors and filters applied) and the temperature
    still to divide them by (1.0 where warp already did, or greedy)."""
    scores = logits
    temps = [1.0] * len(seqs)
    groups: dict[int, list[int]] = {}  # rows sharing one SamplingParams object are filtered together
    for i, s in enumerate(seqs):
        p = s.params
        if p.custom:
            if scores is logits:
                scores = logits.clone()
            scores[i] = row_scores(s, logits[i])
        if p.warped:
            groups.setdefault(id(p), []).append(i)
        elif not p.greedy:
            temps[i] = p.temperature
    for rows in groups.values():
        p = seqs[rows[0]].params
        if scores is logits:
            scores = logits.clone()
        idx = torch.tensor(rows, device=logits.device) if len(rows) < len(seqs) else None
        part = scores if idx is None else scores[idx]
        part = warp(part, p.temperature, p.top_k or None, p.top_p, p.min_p or None)
        if idx is None:
            scores = part
        else:
            scores[idx] = part
    return scores, temps


def choose(seqs: list[Seq], logits: torch.Tensor) -> list[int]:
    """The next token of each row (logits: (rows, V) fp32)."""
    scores, temps = processed(seqs, logits)
    if all(s.params.greedy for s in seqs):
        return scores.argmax(-1).tolist()
    out = [0] * len(seqs)
    sampling = [i for i, s in enumerate(seqs) if not s.params.greedy]
    greedy = [i for i, s in enumerate(seqs) if s.params.greedy]
    if greedy:
        for i, t in zip(greedy, scores[greedy].argmax(-1).tolist()):
            out[i] = t
    rows = scores if len(sampling) == len(seqs) else scores[sampling]
    if any(temps[i] != 1.0 for i in sampling):
        rows = rows / torch.tensor([temps[i] for i in sampling], device=rows.device)[:, None]
    cdf = rows.softmax(-1).cumsum(-1)
    # u in (0, 1]: the first token whose cumulative probability reaches u (never a filtered one)
    u = torch.cat([1.0 - torch.rand(1, generator=seqs[i].generator, device=rows.device) for i in sampling])
    idx = torch.searchsorted(cdf, (u[:, None] * cdf[:, -1:]).contiguous()).clamp_(max=cdf.size(1) - 1)
    for i, tok in zip(sampling, idx[:, 0].tolist()):
        out[i] = tok
    return out
