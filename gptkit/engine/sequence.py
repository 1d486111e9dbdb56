"""One sequence of the engine (a prompt and the tokens chosen after it), and what the engine tells
its caller about it (Event, TokenInfo).
"""
from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .params import LogitsProcessor, SamplingParams
from .text import TextStream, TokenText


@dataclass
class TokenInfo:
    token: int
    text: str  # the token's own text ("bytes:\\xNN" for a partial UTF-8 sequence)
    logprob: float
    top: list[tuple[int, str, float]]  # (id, text, logprob), best first
    offset: int  # where its text starts in the completion text


@dataclass
class Event:
    """What the engine tells a caller: kind is "prompt" (prompt-token logprobs), "delta" (new
    text), "finish" (reason: stop | length), or "error" (message; the request is over)."""
    kind: str
    index: int = 0
    text: str = ""
    tokens: list[TokenInfo] = field(default_factory=list)
    reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    message: str = ""
    cached_tokens: int = 0  # prompt tokens whose keys and values came from the prefix cache


class Seq:
    """One row: a prompt, its parameters, and the state of decoding after it. `emit`, where set,
    receives the sequence's events (text as it becomes final, then its finish)."""

    def __init__(self, prompt: list[int], params: SamplingParams, token_text: TokenText | None = None,
                 index: int = 0, sample: int = 0, emit: Callable[[Event], None] | None = None,
                 owner: Any = None) -> None:
        self.prompt, self.params, self.index, self.emit, self.owner = prompt, params, index, emit, owner
        self.generator: torch.Generator | None = None
        self.seed: int | None = None
        if not params.greedy and not (params.seed is None and params.global_rng):
            base = params.seed if params.seed is not None else secrets.randbits(63)
            self.seed = (base + sample) % 2**64
        self.out: list[int] = []
        self.row = -1  # its cache row while it runs
        self.last = -1  # the chosen token not yet fed
        self.text = TextStream(token_text, params.stop) if token_text is not None else None
        self.sent = 0  # characters of text already emitted
        self.tokens: list[TokenInfo] = []  # logprobs not yet emitted
        self.seen: torch.Tensor | None = None  # repetition penalty: tokens of prompt and output
        self.counts: torch.Tensor | None = None  # presence / frequency penalties: output counts
        self.bias: tuple[torch.Tensor, torch.Tensor] | None = None
        self.processors: list[LogitsProcessor] = [make() for make in params.logits_processors]
        self.cached = 0  # prompt tokens reused from the prefix cache
        self.done = False
        self.cancelled = False
        self.finish_reason: str | None = None

    def start(self, vocab: int, device: torch.device) -> None:
        """Per-row state the parameters need, once the sequence is admitted."""
        p = self.params
        if p.repetition_penalty != 1.0:
            self.seen = torch.zeros(vocab, dtype=torch.bool, device=device)
            self.seen[torch.tensor(self.prompt, device=device)] = True
        if p.presence_penalty or p.frequency_penalty:
            self.counts = torch.zeros(vocab, dtype=torch.float32, device=device)
        if self.seed is not None:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(self.seed)
