"""Logits processors and warpers, in transformers' order: the batched form beam search uses
(`Processors`, one GenerationConfig for all rows) and the per-row form of the engine
(`row_scores`, each sequence with its own SamplingParams), built from the same functions.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .sequence import Seq

# ---------------------------------------------------------------------------- logits processing
# Each function takes and returns fp32 scores (rows, vocab); -inf marks a filtered token.

def repetition_penalty_(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty as transformers applies it: divide positive, multiply negative scores of the
    tokens already in the row (prompt included, left padding excluded). `seen` is (rows, vocab) bool."""
    return torch.where(seen, torch.where(scores < 0, scores * penalty, scores / penalty), scores)


def seen_tokens(seqs: torch.Tensor, valid: torch.Tensor | None, vocab: int) -> torch.Tensor:
    """(rows, vocab) bool: which tokens occur in each row of seqs where valid (None = everywhere)."""
    ids = seqs if valid is None else seqs.masked_fill(~valid, vocab)
    seen = torch.zeros(seqs.size(0), vocab + 1, dtype=torch.bool, device=seqs.device)
    return seen.scatter_(1, ids, True)[:, :vocab]


def banned_ngram_tokens(row: Sequence[int], n: int) -> list[int]:
    """The tokens that would complete an n-gram already present in `row` (no_repeat_ngram_size).

    Left padding is not part of the row (transformers counts it, which only shows with n = 1: it
    bans the pad id, usually end-of-text, in padded rows; gptkit keeps batched = one by one)."""
    if len(row) < n:
        return []
    if n == 1:
        return list(row)
    prefix = list(row[len(row) - n + 1:])
    first = prefix[0]
    return [row[i + n - 1] for i in range(len(row) - n + 1)
            if row[i] == first and list(row[i:i + n - 1]) == prefix]


def warp(scores: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
         top_p: float | None = None, min_p: float | None = None, min_keep: int = 1) -> torch.Tensor:
    """Temperature, then top-k, top-p and min-p filtering: transformers' warpers, in its order."""
    if temperature != 1.0:
        scores = scores / temperature
    if top_k:
        k = min(max(top_k, min_keep), scores.size(-1))
        kth = torch.topk(scores, k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_scores, idx = torch.sort(scores, descending=False, dim=-1)
        cum = sorted_scores.softmax(-1).cumsum(-1)
        remove = cum <= 1 - top_p
        remove[..., -min_keep:] = False
        scores = scores.masked_fill(remove.scatter(-1, idx, remove), float("-inf"))
    if min_p is not None:
        probs = scores.softmax(-1)
        remove = probs < min_p * probs.amax(-1, keepdim=True)
        keep = torch.topk(probs, min(min_keep, probs.size(-1)), dim=-1).indices
        scores = scores.masked_fill(remove.scatter(-1, keep, False), float("-inf"))
    return scores


class Processors:
    """The logits processors of one generate call, applied in transformers' order."""

    def __init__(self, cfg: Any, vocab: int, prompt: torch.Tensor,
                 mask: torch.Tensor | None, min_keep: int) -> None:
        self.cfg, self.vocab, self.min_keep = cfg, vocab, min_keep
        self.prompt_valid = mask.bool() if mask is not None else None
        self.penalty = cfg.repetition_penalty != 1.0
        self.ngram = cfg.no_repeat_ngram_size
        self.warping = cfg.do_sample and (cfg.temperature != 1.0 or bool(cfg.top_k) or cfg.min_p is not None
                                          or (cfg.top_p is not None and cfg.top_p < 1.0))

    def __call__(self, seqs: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """seqs: (rows, len) ids so far (prompt first, left-padded like the prompt)."""
        if self.penalty:
            valid = None
            if self.prompt_valid is not None:
                tail = self.prompt_valid.new_ones(seqs.size(0), seqs.size(1) - self.prompt_valid.size(1))
                valid = torch.cat([self.prompt_valid, tail], 1)
            scores = repetition_penalty_(scores, seen_tokens(seqs, valid, self.vocab), self.cfg.repetition_penalty)
        if self.ngram:
            rows = seqs.tolist()
            if self.prompt_valid is not None:
                pads = (~self.prompt_valid).sum(1).tolist()
                rows = [r[p:] for r, p in zip(rows, pads)]
            banned = [(i, t) for i, r in enumerate(rows) for t in banned_ngram_tokens(r, self.ngram)]
            if banned:
                r, t = zip(*banned)
                scores = scores.index_put((torch.tensor(r, device=scores.device), torch.tensor(t, device=scores.device)),
                                          torch.tensor(float("-inf"), device=scores.device))
        if self.warping:
            c = self.cfg
            scores = warp(scores, c.temperature, c.top_k, c.top_p, c.min_p, self.min_keep)
        return scores


def row_scores(s: Seq, logits: torch.Tensor) -> torch.Tensor:
    """Row s's fp32 logits (V,) after its logit_bias, penalties, banned n-grams and logits
    processors, in that order: what its sampler sees before temperature and filtering."""
    p = s.params
    scores = logits[None]
    if p.logit_bias:
        if s.bias is None:
            s.bias = (torch.tensor(list(p.logit_bias), device=logits.device),
                      torch.tensor(list(p.logit_bias.values()), device=logits.device)[None])
        scores = scores.index_add(1, *s.bias)
    if s.seen is not None:
        scores = repetition_penalty_(scores, s.seen[None], p.repetition_penalty)
    if s.counts is not None:
        scores = scores - p.frequency_penalty * s.counts - p.presence_penalty * (s.counts > 0).float()
    if p.no_repeat_ngram_size:
        banned = banned_ngram_tokens(s.prompt + s.out, p.no_repeat_ngram_size)
        if banned:
            scores = scores.index_fill(1, torch.tensor(banned, device=logits.device), float("-inf"))
    scores = scores[0]
    for proc in s.processors:
        scores = proc(s.out, scores)
    return scores
