"""The grammar as a logits processor: one llguidance matcher per row, a mask per step.

    c = GrammarConstraint(compiled, rows=4)
    scores = c.mask(scores)            # (rows, vocab) fp32: tokens the grammar forbids -> -inf
    tok = sample(scores)
    c.advance(tok.tolist(), active)    # each active row's matcher consumes its token

Rows are independent: row i's mask depends only on the tokens row i consumed. A row whose
grammar is complete allows only its end-of-text id(s); one that may end or go on allows both.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .grammar import CompiledGrammar, ConstraintError

_BITS = torch.arange(32, dtype=torch.int32)


def unpack_bitmask(bits: torch.Tensor, vocab: int) -> torch.Tensor:
    """(rows, ceil(vocab / 32)) int32 bitmask (bit j of word w: token 32 w + j) -> (rows, vocab) bool."""
    allowed = (bits[:, :, None] >> _BITS) & 1
    return allowed.reshape(bits.size(0), -1)[:, :vocab].bool()


class GrammarConstraint:
    """Per-row grammar state of one batch (rows: how many rows it constrains)."""

    def __init__(self, compiled: CompiledGrammar, rows: int) -> None:
        import llguidance as llg
        self.compiled = compiled
        self.rows = rows
        self.matchers = [llg.LLMatcher(compiled.tokenizer, compiled.text, log_level=0) for _ in range(rows)]
        self.bits = torch.full((rows, (compiled.vocab + 31) // 32), -1, dtype=torch.int32)
        self.executor = llg.LLExecutor(num_threads=1) if rows > 1 else None
        self.consumed = [0] * rows

    def allowed(self, rows: Sequence[int] | None = None) -> torch.Tensor:
        """(len(rows), tokenizer vocab) bool: the tokens each row's grammar allows next."""
        idx = list(range(self.rows)) if rows is None else list(rows)
        ptr, row_bytes = self.bits.data_ptr(), self.bits.size(1) * 4  # (rows, words) int32, contiguous
        if self.executor is not None and len(idx) > 1:
            self.executor.unsafe_compute_mask_ptr([(self.matchers[r], k) for k, r in enumerate(idx)], ptr,
                                                  row_bytes, self.rows)
        else:
            for k, r in enumerate(idx):
                self.matchers[r].unsafe_compute_mask_ptr(ptr + k * row_bytes, row_bytes)
        return unpack_bitmask(self.bits[:len(idx)], self.compiled.vocab)

    def mask(self, scores: torch.Tensor, rows: Sequence[int] | None = None) -> torch.Tensor:
        """scores (len(rows), model vocab) with every token the grammar forbids at -inf (a new tensor).
        Ids past the tokenizer's vocabulary (a model's padded logits) are always forbidden."""
        allowed = self.allowed(rows).to(scores.device)
        V = self.compiled.vocab
        out = torch.full_like(scores, float("-inf"))
        out[:, :V] = scores[:, :V].masked_fill(~allowed, float("-inf"))
        return out

    def advance(self, tokens: Sequence[int], active: Sequence[bool] | None = None,
                rows: Sequence[int] | None = None) -> None:
        """Row rows[k] consumes tokens[k] (where active[k]); an end-of-text id ends its grammar."""
        idx = list(range(self.rows)) if rows is None else list(rows)
        for k, (r, t) in enumerate(zip(idx, tokens)):
            if active is not None and not active[k]:
                continue
            m = self.matchers[r]
            if t in self.compiled.eos and (m.is_accepting() or m.is_stopped()):
                continue
            if not m.consume_token(int(t)):
                raise ConstraintError(f"token {t} is not allowed by the {self.compiled.grammar.describe()} "
                                      f"({m.get_error() or 'refused'})")
            self.consumed[r] += 1

    def rollback(self, row: int, n: int) -> None:
        """Undo row's last n consumed tokens (speculative decoding's rejected drafts)."""
        if n:
            self.matchers[row].rollback(n)
            self.consumed[row] -= n

    def complete(self, row: int) -> bool:
        """Whether row's output so far is a whole match (it may end here)."""
        return self.matchers[row].is_accepting()


class RowGrammar:
    """One sequence's grammar as the engine's LogitsProcessor (gptkit.engine.params): scores (V,)
    masked before the sampler; accept(token) after it."""

    def __init__(self, compiled: CompiledGrammar) -> None:
        self.constraint = GrammarConstraint(compiled, 1)

    def __call__(self, output_ids: list[int], scores: torch.Tensor) -> torch.Tensor:
        return self.constraint.mask(scores[None])[0]

    def accept(self, token: int) -> None:
        self.constraint.advance([token])


def grammar_processor(compiled: CompiledGrammar) -> Callable[[], RowGrammar]:
    """The factory SamplingParams.logits_processors takes: a fresh matcher per sequence."""
    return lambda: RowGrammar(compiled)
