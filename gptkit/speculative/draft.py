"""Drafters: where speculative decoding's guesses come from.

    NgramDrafter()            prompt lookup: the tokens that followed the last occurrence of the
                              sequence's final n-gram (n = 3, then 2, then 1), earlier in the prompt
                              or the output. No second model; suits summaries, code, extraction.
    ModelDrafter(draft)       a smaller gptkit model with the same tokenizer, decoding ahead over
                              its own KV cache.

`propose(seq, k, ...)` returns up to k draft tokens continuing `seq` and, for a model drafter,
the distribution each was drawn from (None for n-gram drafts: a deterministic guess); after the
target model verifies them, `accepted(n)` tells the drafter how many survived.
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import GptkitError


class NgramDrafter:
    """Prompt-lookup drafting (as transformers' prompt_lookup_num_tokens and vLLM's ngram)."""

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1) -> None:
        self.max_ngram, self.min_ngram = max_ngram, min_ngram

    def propose(self, seq: list[int], k: int, **_: Any) -> tuple[list[int], None]:
        for n in range(min(self.max_ngram, len(seq) - 1), self.min_ngram - 1, -1):
            tail = seq[-n:]
            # the latest earlier occurrence of the tail n-gram (not the tail itself)
            for start in range(len(seq) - n - 1, -1, -1):
                if seq[start:start + n] == tail:
                    follow = seq[start + n:start + n + k]
                    if follow:
                        return follow, None
        return [], None

    def accepted(self, n: int) -> None:
        pass


def same_tokenizer(model: Any, draft: Any) -> None:
    """A draft model must share the target's tokenizer (ids must mean the same text)."""
    a, b = getattr(model, "tokenizer", None), getattr(draft, "tokenizer", None)
    fa, fb = getattr(a, "fingerprint", None), getattr(b, "fingerprint", None)
    if fa is None or fb is None:
        if model.config.vocab_size != draft.config.vocab_size:
            raise GptkitError(f"the draft model's vocabulary ({draft.config.vocab_size} ids) is not the model's "
                              f"({model.config.vocab_size}): speculative decoding needs the same tokenizer")
        return
    if fa != fb:
        raise GptkitError(f"the draft model has another tokenizer ({b!r}) than the model ({a!r}): speculative "
                          "decoding needs the same tokenizer")


def rollback(cache: Any, length: int) -> None:
    """A one-row cache now holds `length` positions (the engine's KVCache keeps per-row lengths)."""
    if hasattr(cache, "set_length"):
        cache.set_length(0, length)
        cache.window(0, 1)
    else:
        cache.length = length


class ModelDrafter:
    """A smaller model decoding ahead. Its cache holds a prefix of the sequence; each propose()
    feeds what it has not seen, then drafts k tokens one by one (greedy, or sampled from its own
    warped distribution with the caller's generator)."""

    def __init__(self, draft: Any, max_length: int) -> None:
        self.draft = draft
        self.cache = draft.new_cache(1, max_length)
        self.seen = 0  # tokens of the sequence in the cache
        self.proposed = 0  # the sequence's length when the last drafts were made

    def _logits(self, ids: list[int]) -> torch.Tensor:
        x = torch.tensor([ids], dtype=torch.long, device=self.draft.device)
        h = self.draft.hidden_states(x, cache=self.cache)
        return self.draft.output_logits(h[:, -1]).float()[0]

    def propose(self, seq: list[int], k: int, pick: Any = None) -> tuple[list[int], torch.Tensor | None]:
        """pick(logits) -> (token, probabilities or None): how the caller chooses a token."""
        k = min(k, self.draft.config.n_positions - len(seq))
        if k <= 0:
            return [], None
        rollback(self.cache, self.seen)
        logits = self._logits(seq[self.seen:])
        self.proposed = len(seq)
        drafts, probs = [], []
        for i in range(k):
            t, q = pick(logits)
            drafts.append(t)
            if q is not None:
                probs.append(q)
            if i < k - 1:
                logits = self._logits([t])
        self.seen = len(seq) + k - 1  # the last draft is not fed
        return drafts, (torch.stack(probs) if probs else None)

    def accepted(self, n: int) -> None:
        """n of the last drafts were kept: the cache keeps the sequence up to them."""
        self.seen = min(self.seen, self.proposed + n)
