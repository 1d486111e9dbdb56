"""Verifying drafts against the target model's logits.

Greedy: keep the drafts the target's argmax agrees with, then the target's own next token: the
output is exactly greedy decoding's. Sampled: speculative sampling (Leviathan et al. 2023, Chen et
al. 2023): draft x_j, drawn from q_j, is kept with probability min(1, p_j(x_j) / q_j(x_j)); the first
one rejected is replaced by a draw from norm(max(0, p_j - q_j)); when all are kept a bonus token is
drawn from p_k. Each emitted token is then distributed exactly as p, the target's (warped)
distribution. An n-gram draft is a deterministic guess: q_j is one-hot on x_j.
"""
from __future__ import annotations

import torch


def accept_greedy(drafts: list[int], logits: torch.Tensor) -> tuple[int, int]:
    """logits: (len(drafts) + 1, V), row j predicting the token after draft j - 1. Returns
    (drafts kept, the target's next token after them)."""
    best = logits.argmax(-1).tolist()
    n = 0
    while n < len(drafts) and drafts[n] == best[n]:
        n += 1
    return n, best[n]


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    return int(torch.multinomial(probs, 1, generator=generator))


def accept_sampled(drafts: list[int], q: torch.Tensor | None, p: torch.Tensor,
                   generator: torch.Generator | None) -> tuple[int, int]:
    """p: (len(drafts) + 1, V) target probabilities; q: (len(drafts), V) the draft's, or None for
    deterministic (n-gram) drafts. Returns (drafts kept, the next token)."""
    V = p.size(1)
    if q is not None and q.size(1) != V:  # a draft vocabulary padded differently: compare on the target's ids
        q = torch.nn.functional.pad(q, (0, V - q.size(1))) if q.size(1) < V else q[:, :V]
    if drafts:
        u = torch.rand(len(drafts), generator=generator, device=p.device)
    for j, x in enumerate(drafts):
        qx = 1.0 if q is None else float(q[j, x])
        px = float(p[j, x])
        if qx > 0 and float(u[j]) * qx < px:  # u < p / q, without dividing
            continue
        residual = p[j].clone()
        if q is None:
            residual[x] = 0.0
        else:
            residual = (residual - q[j]).clamp_(min=0.0)
        if not float(residual.sum()) > 0:  # only by rounding: p == q
            residual = p[j]
        return j, _draw(residual / residual.sum(), generator)
    return len(drafts), _draw(p[len(drafts)], generator)
