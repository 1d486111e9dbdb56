"""The speculative decoding loop of one sequence, over the model's KV cache.

Each step: the drafter proposes up to k tokens; the target model reads the last accepted token
and the k drafts in one forward pass (k + 1 positions: on a CPU about what one token costs, the
weights being read once); `verify` keeps a prefix of the drafts and adds one token of the target's
own; the cache is cut back to what was kept (its length is a plain counter). Greedy output is
token for token plain greedy decoding's; sampled output has its distribution.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from .draft import rollback
from .verify import accept_greedy, accept_sampled


class Chooser:
    """The target's (and a draft model's) token choice: argmax, or a draw from the distribution
    `warp` makes of the logits (the caller's temperature, top-k, top-p...) with its generator."""

    def __init__(self, do_sample: bool, warp: Callable[[torch.Tensor], torch.Tensor],
                 generator: torch.Generator | None) -> None:
        self.do_sample, self.warp, self.generator = do_sample, warp, generator

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(rows, V) logits -> (rows, V) probabilities to sample from."""
        return self.warp(logits).softmax(-1)

    def __call__(self, logits: torch.Tensor) -> tuple[int, torch.Tensor | None]:
        """One row of logits (V,) -> (token, its distribution, None when greedy)."""
        if not self.do_sample:
            return int(logits.argmax()), None
        p = self.probs(logits[None])[0]
        return int(torch.multinomial(p, 1, generator=self.generator)), p


def speculative_tokens(model: Any, prompt: list[int], max_new_tokens: int, k: int, drafter: Any,
                       choose: Chooser) -> Iterator[int]:
    """The new tokens of one prompt, one at a time (the caller stops at end-of-text, a stop string
    or when it has enough; at most max_new_tokens are produced), k drafts per step at most."""
    N, generator = max_new_tokens, choose.generator
    n_ctx = model.config.n_positions
    cache = model.new_cache(1, min(n_ctx, len(prompt) + N + k))
    ids = torch.tensor([prompt], dtype=torch.long, device=model.device)
    h = model.hidden_states(ids, cache=cache)
    seq = list(prompt)
    t, _ = choose(model.output_logits(h[:, -1]).float()[0])
    seq.append(t)
    yield t
    produced = 1
    while produced < N:
        room = min(k, N - produced - 1, n_ctx - len(seq))
        drafts, q = drafter.propose(seq, room, pick=choose) if room > 0 else ([], None)
        feed = torch.tensor([[seq[-1], *drafts]], dtype=torch.long, device=model.device)
        h = model.hidden_states(feed, cache=cache)
        logits = model.output_logits(h[0]).float()
        if choose.do_sample:
            n, nxt = accept_sampled(drafts, q, choose.probs(logits), generator)
        else:
            n, nxt = accept_greedy(drafts, logits)
        rollback(cache, len(seq) + n)  # the kept drafts are in the cache; nxt is fed next step
        drafter.accepted(n)
        for t in [*drafts[:n], nxt]:
            seq.append(t)
            produced += 1
            yield t
            if produced >= N:
                return
