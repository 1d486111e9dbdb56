"""SamplingParams: what one request asks of the engine (OpenAI's names, plus transformers' top_k,
min_p, repetition_penalty and no_repeat_ngram_size), and its translation from a GenerationConfig.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


class LogitsProcessor(Protocol):
    """A per-sequence logits processor (a grammar or JSON-schema constraint, ...): the engine makes
    one per sequence from SamplingParams.logits_processors (factories) and, every step, calls it on
    the row's fp32 scores (V,) before temperature and filtering; it returns the scores to sample
    from (-inf: forbidden). After the token is chosen the engine calls `accept(token)` where the
    processor has it; `is_finished()`, where it has it, ends the sequence (finish reason "stop")."""

    def __call__(self, output_ids: list[int], scores: torch.Tensor) -> torch.Tensor: ...


@dataclass
class SamplingParams:
    """Per-request decoding options. temperature 0 (or greedy=True) decodes greedily."""
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    min_p: float = 0.0  # 0 = off
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    no_repeat_ngram_size: int = 0
    logit_bias: dict[int, float] = field(default_factory=dict)
    stop: tuple[str, ...] = ()
    seed: int | None = None  # None: the server draws one; generate uses torch's global generator
    logprobs: int | None = None  # how many top alternatives to return per token (None = no logprobs)
    prompt_logprobs: bool = False  # logprobs of the prompt tokens too (completions with echo)
    eos_token_ids: tuple[int, ...] | None = None  # None: the engine's (the model's end-of-text, chat turn end)
    logits_processors: tuple[Callable[[], LogitsProcessor], ...] = ()
    global_rng: bool = False  # sample from torch's global generator where seed is None (generate's rule)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def warped(self) -> bool:
        return not self.greedy and bool(self.top_k or self.top_p < 1.0 or self.min_p)

    @property
    def custom(self) -> bool:
        """Anything beyond temperature: per-row processing before the sampler."""
        return bool(self.logit_bias or self.repetition_penalty != 1.0 or self.presence_penalty
                    or self.frequency_penalty or self.no_repeat_ngram_size or self.logits_processors)


def from_generation_config(cfg: Any, eos: list[int], **extra: Any) -> SamplingParams:
    """generate's options (transformers' names) as SamplingParams: one request, one engine."""
    return SamplingParams(
        max_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature if cfg.do_sample else 0.0,
        top_p=1.0 if cfg.top_p is None else cfg.top_p,
        top_k=cfg.top_k or 0,
        min_p=cfg.min_p or 0.0,
        repetition_penalty=cfg.repetition_penalty,
        no_repeat_ngram_size=cfg.no_repeat_ngram_size,
        stop=cfg.stops,
        seed=cfg.seed,
        eos_token_ids=tuple(eos),
        global_rng=True,
        **extra,
    )
