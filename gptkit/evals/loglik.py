"""Log-likelihood of continuations given contexts: the primitive of every multiple-choice benchmark.

`loglikelihood(model, [(context_ids, continuation_ids), ...])` returns, per request, the summed
log-probability of the continuation's tokens, their count and whether greedy decoding would have
produced them. Requests are batched by length, and a context shared by several continuations (the
answer choices of one question) runs through the model once: its keys and values are cached, copied
to one row per continuation, and only the continuations run after it. The output layer runs only on
the positions that predict a continuation token, never on the rest of the context.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..device import autocast
from ..errors import GptkitError

Request = tuple[Sequence[int], Sequence[int]]


@dataclass(frozen=True)
class Loglik:
    """One request's score: sum of log p(token) over the continuation (nats), its token count, and
    whether every continuation token is the model's most likely next token."""
    logprob: float
    num_tokens: int
    is_greedy: bool


@dataclass
class _Group:
    """One distinct context and the requests that continue it."""
    context: tuple[int, ...]
    items: list[tuple[int, tuple[int, ...]]]  # (request index, continuation)


def check_requests(model: torch.nn.Module, requests: Sequence[Request]) -> None:
    """Every request has a context and a continuation, token ids in the vocabulary, and fits the
    model's context (the last continuation token is predicted, never fed)."""
    vocab, limit = model.config.vocab_size, model.config.n_positions
    for i, (ctx, cont) in enumerate(requests):
        if len(ctx) == 0 or len(cont) == 0:
            what = "context" if len(ctx) == 0 else "continuation"
            raise GptkitError(f"request {i} has an empty {what} (give a context of at least one token, "
                              "e.g. <|endoftext|>, and a continuation of at least one)")
        n = len(ctx) + len(cont) - 1
        if n > limit:
            raise GptkitError(f"request {i} needs {n} tokens of context ({len(ctx)} context + {len(cont)} "
                              f"continuation - 1) but the model's context is {limit} (n_positions)")
        bad = [t for t in (*ctx, *cont) if not 0 <= t < vocab]
        if bad:
            raise GptkitError(f"request {i} has token id {bad[0]}, outside the model's vocabulary of {vocab}")


def _groups(requests: Sequence[Request]) -> list[_Group]:
    by_ctx: dict[tuple[int, ...], _Group] = {}
    for i, (ctx, cont) in enumerate(requests):
        key = tuple(int(t) for t in ctx)
        by_ctx.setdefault(key, _Group(key, [])).items.append((i, tuple(int(t) for t in cont)))
    return list(by_ctx.values())


def _batches(groups: list[_Group], batch_size: int, limit: int) -> list[list[_Group]]:
    """Longest contexts first; about batch_size continuation rows per batch (a group larger than
    that is split, its context then runs once per piece); padded length within the model's context."""
    pieces = []
    for g in sorted(groups, key=lambda g: (-len(g.context), -max(len(c) for _, c in g.items))):
        for s in range(0, len(g.items), batch_size):
            pieces.append(_Group(g.context, g.items[s:s + batch_size]))
    batches: list[list[_Group]] = []
    rows = ctx_max = cont_max = 0
    for g in pieces:
        cm = max(len(c) for _, c in g.items) - 1
        if batches and rows + len(g.items) <= batch_size and max(ctx_max, len(g.context)) + max(cont_max, cm) <= limit:
            batches[-1].append(g)
            rows, ctx_max, cont_max = rows + len(g.items), max(ctx_max, len(g.context)), max(cont_max, cm)
        else:
            batches.append([g])
            rows, ctx_max, cont_max = len(g.items), len(g.context), cm
    return batches


def _score(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position log p(target) in fp32 and whether target is the argmax."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, targets[:, None]).squeeze(-1), logp.argmax(-1) == targets


def _run_batch(model: torch.nn.Module, groups: list[_Group], out: list[Loglik | None]) -> None:
    device = model.device
    ctx_len = torch.tensor([len(g.context) for g in groups], device=device)
    Lc = int(ctx_len.max())
    ctx = torch.zeros(len(groups), Lc, dtype=torch.long, device=device)
    for r, g in enumerate(groups):  # right-padded: causal attention keeps padding out of real positions
        ctx[r, :len(g.context)] = torch.tensor(g.context, device=device)
    rows = [(r, i, c) for r, g in enumerate(groups) for i, c in g.items]
    Tk = max(len(c) for _, _, c in rows) - 1  # continuation tokens fed (the last one is only predicted)
    cache = model.new_cache(len(groups), Lc + Tk)
    h = model.hidden_states(ctx, cache=cache)
    # the last context position of each row predicts its continuation's first token
    group_of = torch.tensor([r for r, _, _ in rows], device=device)
    first_h = h[group_of, ctx_len[group_of] - 1]
    first_tok = torch.tensor([c[0] for _, _, c in rows], device=device)
    first_lp, first_ok = _score(model.output_logits(first_h), first_tok)
    lp, ok = first_lp.double(), first_ok.clone()
    if Tk > 0:
        cache.reorder(group_of)  # one row per continuation, its context's keys and values copied
        N = len(rows)
        inp = torch.zeros(N, Tk, dtype=torch.long, device=device)
        lens = torch.tensor([len(c) - 1 for _, _, c in rows], device=device)
        for n, (_, _, c) in enumerate(rows):
            inp[n, :len(c) - 1] = torch.tensor(c[:-1], device=device)
        ar = torch.arange(Tk, device=device)
        pos = (ctx_len[group_of, None] + ar).clamp(max=model.config.n_positions - 1)  # padding's positions clamped
        mask = torch.cat([torch.arange(Lc, device=device)[None] < ctx_len[group_of, None],
                          torch.ones(N, Tk, dtype=torch.bool, device=device)], dim=1).long()
        h = model.hidden_states(inp, attention_mask=mask, position_ids=pos, cache=cache)
        real = ar[None] < lens[:, None]  # (N, Tk): positions that predict a continuation token
        tgt = torch.zeros(N, Tk, dtype=torch.long, device=device)
        for n, (_, _, c) in enumerate(rows):
            tgt[n, :len(c) - 1] = torch.tensor(c[1:], device=device)
        tok_lp, tok_ok = _score(model.output_logits(h[real]), tgt[real])
        row_of = torch.arange(N, device=device)[:, None].expand(N, Tk)[real]
        lp = lp.index_add(0, row_of, tok_lp.double())
        misses = torch.zeros(N, device=device).index_add(0, row_of, (~tok_ok).float())
        ok = ok & (misses == 0)
    for n, (_, i, c) in enumerate(rows):
        out[i] = Loglik(float(lp[n]), len(c), bool(ok[n]))


@torch.no_grad()
def loglikelihood(model: torch.nn.Module, requests: Sequence[Request], batch_size: int = 32,
                  amp: torch.dtype | None = None, progress: bool = False) -> list[Loglik]:
    """Per request (context_ids, continuation_ids): the continuation's summed log-likelihood given
    the context, its token count and is_greedy, in request order.

    batch_size: continuation rows per forward pass. amp: an autocast dtype (None: the model's own).
    A request that does not fit the model's context is an error (no silent truncation).
    """
    if batch_size < 1:
        raise GptkitError(f"batch_size must be >= 1, got {batch_size}")
    check_requests(model, requests)
    out: list[Loglik | None] = [None] * len(requests)
    batches = _batches(_groups(requests), batch_size, model.config.n_positions)
    was_training = model.training
    model.eval()
    try:
        it = batches
        if progress:
            from tqdm import tqdm
            it = tqdm(batches, desc="log-likelihood", unit="batch", leave=False)
        for groups in it:
            with autocast(model.device, amp):
                _run_batch(model, groups, out)
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]
