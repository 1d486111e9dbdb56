"""Beam search: transformers 5's vectorised search, same arithmetic, same ids.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from .config import GenerationConfig
from .decode import _Decoder
from .processors import Processors

NEG = -1.0e9  # transformers' "impossible" score in beam search (kept for identical arithmetic)

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
    flat_mask = mask.repeat_interleave(K, 0) if mask is not None else None
    dev = ids.device
    n_eos = len(eos)
    keep = max(2, 1 + n_eos) * K
    top_num_beam_mask = torch.cat([torch.ones(K, dtype=torch.bool), torch.zeros(keep - K, dtype=torch.bool)]).to(dev)
    procs = Processors(cfg, model.config.vocab_size, ids.repeat_interleave(K, 0), flat_mask,
                       min_keep=n_eos + 1 if n_eos else 2)
    eos_t = torch.tensor(eos, device=dev) if eos else None

    running = torch.full((B, K, max_length), pad, dtype=torch.long, device=dev)
    running[:, :, :T] = ids[:, None, :]
    sequences = running.clone()
    running_scores = torch.zeros((B, K), dtype=torch.float, device=dev)
    running_scores[:, 1:] = NEG
    beam_scores = torch.full((B, K), NEG, dtype=torch.float, device=dev)
    finished = torch.zeros((B, K), dtype=torch.bool, device=dev)
    improvable = torch.ones((B, 1), dtype=torch.bool, device=dev)
    running_idx = torch.full((B, K, max(N, 1)), -1, dtype=torch.long, device=dev)
    beam_idx = running_idx.clone()
    batch_offset = torch.arange(B, device=dev).view(-1, 1) * K
    early = cfg.early_stopping

    logits = dec.logits
    cur = T
    while N > 0:
        log_probs = F.log_softmax(logits, dim=-1)
        log_probs = procs(running[:, :, :cur].reshape(B * K, cur), log_probs)
        V = log_probs.size(-1)
        acc = (log_probs.view(B, K, V) + running_scores[:, :, None]).reshape(B, K * V)
        if cfg.do_sample:
            top_i = torch.multinomial(F.softmax(acc, dim=-1), num_samples=keep, generator=generator)
            top_lp = torch.gather(acc, 1, top_i)
            top_lp, order = top_lp.sort(dim=-1, descending=True)
            top_i = top_i.gather(-1, order)
        else:
            top_lp, top_i = torch.topk(acc, k=keep)
        src = top_i // V
        tok = top_i % V
        top_seqs = torch.take_along_dim(running, src[..., None], dim=1)
        top_idx = torch.take_along_dim(running_idx, src[..., None], dim=1)
        top_seqs[:, :, cur] = tok
        top_idx[:, :, cur - T] = src + batch_offset

        hits = torch.full((B, keep), cur + 1 >= max_length, dtype=torch.bool, device=dev)
        if eos_t is not None:
            hits = hits | torch.isin(tok, eos_t)
        if stop_hit is not None:
            hits = hits | stop_hit(top_seqs[:, :, T:cur + 1])

        # the best num_beams unfinished continuations carry on
        run_lp = top_lp + hits.to(torch.float32) * NEG
        nxt = torch.topk(run_lp, k=K)[1]
        running = torch.take_along_dim(top_seqs, nxt[..., None], dim=1)
        running_scores = torch.take_along_dim(run_lp, nxt, dim=1)
        running_idx = torch.take_along_dim(top_idx, nxt[..., None], dim=1)

        # finished hypotheses among the top num_beams enter the kept set if they score better
        just = hits & top_num_beam_mask[None, :]
        fin_lp = top_lp / ((cur + 1 - T) ** cfg.length_penalty)
        full = torch.all(finished, dim=-1, keepdim=True) & (early is True)
        fin_lp += full.to(torch.float32) * NEG
        fin_lp += (~improvable).to(torch.float32) * NEG
        fin_lp += (~just) * NEG
        m_seqs = torch.cat((sequences, top_seqs), dim=1)
        m_scores = torch.cat((beam_scores, fin_lp), dim=1)
        m_idx = torch.cat((beam_idx, top_idx), dim=1)
        m_fin = torch.cat((finished, just), dim=1)
        best = torch.topk(m_scores, k=K)[1]
        sequences = torch.take_along_dim(m_seqs, best[..., None], dim=1)
        beam_scores = torch.take_along_dim(m_scores, best, dim=1)
        beam_idx = torch.take_along_dim(m_idx, best[..., None], dim=1)
        finished = torch.take_along_dim(m_fin, best, dim=1)

        reorder = running_idx[:, :, cur - T].reshape(-1)
        cur += 1
        # can a running beam still beat the worst kept hypothesis?
        if early == "never" and cfg.length_penalty > 0.0:
            best_len = max_length - T
        else:
            best_len = cur - T
        best_running = running_scores[:, :1] / (best_len ** cfg.length_penalty)
        worst_fin = torch.where(finished, torch.min(beam_scores, dim=1, keepdim=True)[0], NEG)
        improvable = improvable & torch.any(best_running > worst_fin, dim=-1, keepdim=True)
        go_on = bool(improvable.any()) and not (bool(finished.all()) and early is True) and not bool(hits.all())
        if not go_on:
            break
        dec.cache.reorder(reorder)
        logits = dec.step(running[:, :, cur - 1].reshape(-1))

    n = cfg.num_return_sequences
    sequences = sequences[:, :n].reshape(B * n, max_length)
    beam_idx = beam_idx[:, :n].reshape(B * n, -1)
    lengths = (beam_idx >= 0).sum(1) if N > 0 else torch.zeros(B * n, dtype=torch.long, device=dev)
    return sequences[:, :T + int(lengths.max())], lengths
