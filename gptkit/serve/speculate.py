"""Speculative decoding in the server (`gptkit serve --speculative ngram|MODEL`).

While one sequence is running alone, each engine step drafts up to k tokens for it (n-gram
lookup or the draft model, gptkit.speculative) and the model checks them in one forward pass over
the sequence's slot; with two or more sequences running the engine batches them as usual (a
batch already reads the weights once for many tokens, which is what speculation buys at batch 1).
Only rows whose tokens depend on nothing but the model's distribution are sped up: no
logit_bias, penalties or response_format.
"""
from __future__ import annotations

from typing import Any

import torch

from ..generate.processors import warp
from ..speculative import Chooser, accept_greedy, accept_sampled, make_drafter


class Speculator:
    """draft: None for n-gram drafting, else the draft model (checked to share the tokenizer)."""

    def __init__(self, draft: Any, k: int) -> None:
        self.draft, self.k = draft, k

    @staticmethod
    def eligible(s: Any) -> bool:
        p = s.params
        return not (p.logit_bias or s.seen is not None or s.counts is not None or s.constraint is not None)

    def chooser(self, s: Any) -> Chooser:
        p = s.params
        return Chooser(not s.greedy, lambda x: warp(x, p.temperature, p.top_k or None, p.top_p, p.min_p or None),
                       s.generator)

    def step(self, engine: Any, s: Any) -> None:
        """One speculative step of s, the engine's only row (slot 0)."""
        model, cache = engine.model, engine.cache
        if getattr(s, "drafter", None) is None:
            s.drafter = make_drafter(self.draft, engine.n_ctx)
        seq = s.prompt + s.out
        room = min(self.k, s.params.max_tokens - len(s.out) - 1, engine.n_ctx - s.length - 2)
        choose = self.chooser(s)
        drafts, q = s.drafter.propose(seq, room, pick=choose) if room > 0 else ([], None)
        feed = torch.tensor([[s.last, *drafts]], dtype=torch.long, device=model.device)
        cache.mode, cache.row, cache.length = "prefill", 0, s.length
        try:
            h = model.hidden_states(feed, cache=cache)
        finally:
            cache.mode = "decode"
        logits = model.output_logits(h[0]).float()
        if s.greedy:
            n, nxt = accept_greedy(drafts, logits)
        else:
            n, nxt = accept_sampled(drafts, q, choose.probs(logits), s.generator)
        s.length += 1 + n
        s.drafter.accepted(n)
        engine.steps += 1
        for j, t in enumerate([*drafts[:n], nxt]):
            engine._accept(s, logits[j], t)
            if s.done or s.request.cancelled:
                return
