"""generate's rows decoded speculatively (gptkit.speculative), with generate's own sampling rules.
"""
from __future__ import annotations

import codecs
from collections.abc import Iterator
from typing import Any

import torch

from ..engine.processors import warp
from ..engine.text import _token_bytes, first_stop
from ..speculative import Chooser, draft_model, make_drafter, speculative_tokens
from .config import GenerationConfig


def chooser(cfg: GenerationConfig, generator: torch.Generator | None) -> Chooser:
    """Greedy, or sampling under cfg's temperature / top-k / top-p / min-p (generate's warpers)."""
    return Chooser(cfg.do_sample, lambda logits: warp(logits, cfg.temperature, cfg.top_k, cfg.top_p, cfg.min_p),
                   generator)


def one_row(model: Any, prompt: list[int], cfg: GenerationConfig, draft: Any,
            generator: torch.Generator | None) -> Iterator[int]:
    """The new tokens of one prompt (draft: what gptkit.speculative.draft_model returned)."""
    drafter = make_drafter(draft, len(prompt) + cfg.max_new_tokens + cfg.num_speculative_tokens)
    yield from speculative_tokens(model, prompt, cfg.max_new_tokens, cfg.num_speculative_tokens, drafter,
                                  chooser(cfg, generator))


def speculative_rows(model: Any, ids: torch.Tensor, mask: torch.Tensor | None, cfg: GenerationConfig,
                     eos: list[int], pad: int, generator: torch.Generator | None,
                     tokenizer: Any = None) -> tuple[torch.Tensor, list[int]]:
    """Every row (and sample), one after another: (new tokens (rows * n, longest), padded with
    `pad`; valid new tokens per row, the end-of-text counted). Rows stop as plain decoding's do: at
    end-of-text, a stop string (needs tokenizer) or max_new_tokens."""
    draft = draft_model(model, cfg.speculative)
    ends = set(eos)
    rows: list[list[int]] = []
    for i in range(ids.size(0)):
        prompt = ids[i].tolist() if mask is None else ids[i][mask[i].bool()].tolist()
        for _ in range(cfg.num_return_sequences):
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            out: list[int] = []
            text = ""
            for t in one_row(model, prompt, cfg, draft, generator):
                out.append(t)
                if t in ends:
                    break
                if cfg.stops:
                    text += decoder.decode(_token_bytes(tokenizer, [t]))
                    if first_stop(text, cfg.stops) >= 0:
                        break
            rows.append(out)
    width = max(len(r) for r in rows)
    new = torch.full((len(rows), width), pad, dtype=torch.long, device=ids.device)
    for i, r in enumerate(rows):
        new[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return new, [len(r) for r in rows]
