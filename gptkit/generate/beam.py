"""Beam search: transformers 5's vectorised search (and beam sampling), same arithmetic, same ids.

It is cut where transformers cuts it (GenerationMixin._beam_search): each step takes the top-k
continuations of every beam (`top_k_continuations`), keeps the best unfinished ones running
(`next_running_beams`), lets the finished ones compete for the kept hypotheses
(`update_finished_beams`), and asks whether any running beam can still beat the worst kept one
(`can_improve`, transformers' early-stop heuristic).

Shapes: B prompts, K = num_beams, W = the kept candidates per prompt (max(2, 1 + #eos) x K, so
that K unfinished ones survive even when the rest end), V the vocabulary, L = T + max_new_tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from ..engine.processors import Processors
from .config import GenerationConfig
from .decode import _positions


class _Decoder:
    """Prompt prefill and one-token steps over a preallocated KV cache; rows may be padded."""

    def __init__(self, model: Any, ids: torch.Tensor, mask: torch.Tensor | None, max_new: int, expand: int = 1):
        self.model = model
        B, T = ids.shape
        self.mask = None
        if mask is not None:  # the full (rows, T + max_new) key mask, sliced step by step
            full = torch.cat([mask, mask.new_ones(B, max_new)], 1)
            self.mask = full.repeat_interleave(expand, 0) if expand > 1 else full
        pos = _positions(mask)
        if expand > 1:  # prefill each prompt once, then copy its cache rows to its beams/samples
            prefill = model.new_cache(B, T + max_new)
            h = model.hidden_states(ids, attention_mask=mask, position_ids=pos, cache=prefill)
            prefill.reorder(torch.arange(B, device=ids.device).repeat_interleave(expand))
            self.cache = prefill
            h = h[:, -1].repeat_interleave(expand, 0)
        else:
            self.cache = model.new_cache(B, T + max_new)
            h = model.hidden_states(ids, attention_mask=mask, position_ids=pos, cache=self.cache)[:, -1]
        self.next_pos = None if pos is None else pos[:, -1:].repeat_interleave(expand, 0) + 1
        self.logits = model.output_logits(h).float()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row; the next-token logits (rows, vocab), fp32."""
        L = self.cache.length + 1
        mask = None if self.mask is None else self.mask[:, :L]
        h = self.model.hidden_states(tokens[:, None], attention_mask=mask, position_ids=self.next_pos,
                                     cache=self.cache)
        if self.next_pos is not None:
            self.next_pos = self.next_pos + 1
        self.logits = self.model.output_logits(h[:, -1]).float()
        return self.logits



NEG = -1.0e9  # transformers' "impossible" score in beam search (kept for identical arithmetic)


@dataclass
class _Beams:
    """Token ids, scores and source-beam indices of K beams per prompt."""
    seqs: torch.Tensor  # (B, K, L) long: prompt + tokens so far, padded with pad
    scores: torch.Tensor  # (B, K) float: summed log-probs (running) or length-normalised (finished)
    idx: torch.Tensor  # (B, K, max(N, 1)) long: the flat beam each step came from, -1 before it


def top_k_continuations(running: _Beams, log_probs: torch.Tensor, keep: int, cur: int, T: int,
                        do_sample: bool, generator: torch.Generator | None) -> tuple[_Beams, torch.Tensor]:
    """The `keep` best (or sampled) one-token continuations of each prompt's K beams; also their
    new tokens (B, keep). log_probs: (B * K, V), already processed."""
    B, K = running.scores.shape
    V = log_probs.size(-1)
    acc = (log_probs.view(B, K, V) + running.scores[:, :, None]).reshape(B, K * V)  # (B, K*V)
    if do_sample:
        top_i = torch.multinomial(F.softmax(acc, dim=-1), num_samples=keep, generator=generator)
        top_lp = torch.gather(acc, 1, top_i)
        top_lp, order = top_lp.sort(dim=-1, descending=True)
        top_i = top_i.gather(-1, order)
    else:
        top_lp, top_i = torch.topk(acc, k=keep)  # (B, keep) each
    src, tok = top_i // V, top_i % V  # the beam each continuation extends, and its token
    seqs = torch.take_along_dim(running.seqs, src[..., None], dim=1)  # (B, keep, L)
    idx = torch.take_along_dim(running.idx, src[..., None], dim=1)  # (B, keep, N)
    seqs[:, :, cur] = tok
    batch_offset = torch.arange(B, device=src.device).view(-1, 1) * K
    idx[:, :, cur - T] = src + batch_offset  # flat (B * K) index, for reordering the KV cache
    return _Beams(seqs, top_lp, idx), tok


def next_running_beams(top: _Beams, hits: torch.Tensor, K: int) -> _Beams:
    """The K best continuations that did not finish carry on (B, K, ...)."""
    run_lp = top.scores + hits.to(torch.float32) * NEG
    nxt = torch.topk(run_lp, k=K)[1]  # (B, K)
    return _Beams(torch.take_along_dim(top.seqs, nxt[..., None], dim=1), torch.take_along_dim(run_lp, nxt, dim=1),
                  torch.take_along_dim(top.idx, nxt[..., None], dim=1))


def update_finished_beams(kept: _Beams, finished: torch.Tensor, top: _Beams, hits: torch.Tensor,
                          top_k_mask: torch.Tensor, improvable: torch.Tensor, cfg: GenerationConfig,
                          new_tokens: int) -> tuple[_Beams, torch.Tensor]:
    """Continuations that finished among the top K compete, length-normalised, with the K kept
    hypotheses; returns the new kept set and its finished flags (B, K)."""
    K = kept.scores.size(1)
    just = hits & top_k_mask[None, :]  # (B, keep)
    fin_lp = top.scores / (new_tokens ** cfg.length_penalty)
    full = torch.all(finished, dim=-1, keepdim=True) & (cfg.early_stopping is True)
    fin_lp += full.to(torch.float32) * NEG
    fin_lp += (~improvable).to(torch.float32) * NEG
    fin_lp += (~just) * NEG
    m_seqs = torch.cat((kept.seqs, top.seqs), dim=1)  # (B, K + keep, L)
    m_scores = torch.cat((kept.scores, fin_lp), dim=1)
    m_idx = torch.cat((kept.idx, top.idx), dim=1)
    m_fin = torch.cat((finished, just), dim=1)
    best = torch.topk(m_scores, k=K)[1]  # (B, K)
    return (_Beams(torch.take_along_dim(m_seqs, best[..., None], dim=1), torch.take_along_dim(m_scores, best, dim=1),
                   torch.take_along_dim(m_idx, best[..., None], dim=1)), torch.take_along_dim(m_fin, best, dim=1))


def can_improve(running: _Beams, kept: _Beams, finished: torch.Tensor, improvable: torch.Tensor,
                cfg: GenerationConfig, new_tokens: int, max_new_tokens: int) -> torch.Tensor:
    """(B, 1): can a prompt's best running beam still beat its worst kept hypothesis?"""
    if cfg.early_stopping == "never" and cfg.length_penalty > 0.0:
        best_len = max_new_tokens  # the most optimistic length
    else:
        best_len = new_tokens
    best_running = running.scores[:, :1] / (best_len ** cfg.length_penalty)
    worst_fin = torch.where(finished, torch.min(kept.scores, dim=1, keepdim=True)[0], NEG)
    return improvable & torch.any(best_running > worst_fin, dim=-1, keepdim=True)


def beam_search(model: Any, ids: torch.Tensor, mask: torch.Tensor | None, cfg: GenerationConfig,
                eos: list[int], pad: int, generator: torch.Generator | None,
                stop_hit: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers 5's vectorised beam search (and beam sampling), step for step.

    Returns (sequences (B * num_return_sequences, T + generated), new-token count per sequence).
    """
    K, N = cfg.num_beams, cfg.max_new_tokens
    B, T = ids.shape
    max_length = T + N
    dec = _Decoder(model, ids, mask, N, expand=K)
    flat_mask = mask.repeat_interleave(K, 0) if mask is not None else None  # (B * K, T)
    dev = ids.device
    n_eos = len(eos)
    keep = max(2, 1 + n_eos) * K
    top_k_mask = torch.cat([torch.ones(K, dtype=torch.bool), torch.zeros(keep - K, dtype=torch.bool)]).to(dev)
    procs = Processors(cfg, model.config.vocab_size, ids.repeat_interleave(K, 0), flat_mask,
                       min_keep=n_eos + 1 if n_eos else 2)
    eos_t = torch.tensor(eos, device=dev) if eos else None

    seqs = torch.full((B, K, max_length), pad, dtype=torch.long, device=dev)
    seqs[:, :, :T] = ids[:, None, :]
    scores = torch.zeros((B, K), dtype=torch.float, device=dev)
    scores[:, 1:] = NEG  # all K beams start as the prompt: only the first may expand at step one
    idx = torch.full((B, K, max(N, 1)), -1, dtype=torch.long, device=dev)
    running = _Beams(seqs, scores, idx)
    kept = _Beams(seqs.clone(), torch.full((B, K), NEG, dtype=torch.float, device=dev), idx.clone())
    finished = torch.zeros((B, K), dtype=torch.bool, device=dev)
    improvable = torch.ones((B, 1), dtype=torch.bool, device=dev)

    logits = dec.logits  # (B * K, V)
    cur = T
    while N > 0:
        log_probs = F.log_softmax(logits, dim=-1)
        log_probs = procs(running.seqs[:, :, :cur].reshape(B * K, cur), log_probs)
        top, tok = top_k_continuations(running, log_probs, keep, cur, T, cfg.do_sample, generator)
        hits = torch.full((B, keep), cur + 1 >= max_length, dtype=torch.bool, device=dev)  # (B, keep)
        if eos_t is not None:
            hits = hits | torch.isin(tok, eos_t)
        if stop_hit is not None:
            hits = hits | stop_hit(top.seqs[:, :, T:cur + 1])
        running = next_running_beams(top, hits, K)
        kept, finished = update_finished_beams(kept, finished, top, hits, top_k_mask, improvable, cfg, cur + 1 - T)
        reorder = running.idx[:, :, cur - T].reshape(-1)  # (B * K,) the cache row each beam continues
        cur += 1
        improvable = can_improve(running, kept, finished, improvable, cfg, cur - T, N)
        go_on = bool(improvable.any()) and not (bool(finished.all()) and cfg.early_stopping is True) \
            and not bool(hits.all())
        if not go_on:
            break
        dec.cache.reorder(reorder)
        logits = dec.step(running.seqs[:, :, cur - 1].reshape(-1))

    n = cfg.num_return_sequences
    sequences = kept.seqs[:, :n].reshape(B * n, max_length)
    beam_idx = kept.idx[:, :n].reshape(B * n, -1)
    lengths = (beam_idx >= 0).sum(1) if N > 0 else torch.zeros(B * n, dtype=torch.long, device=dev)
    return sequences[:, :T + int(lengths.max())], lengths
