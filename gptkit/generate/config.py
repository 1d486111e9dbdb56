"""GenerationConfig: the decoding options (names and defaults as transformers').
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from ..errors import OptionError


@dataclass
class GenerationConfig:
    """The decoding options; names and defaults as transformers' GenerationConfig."""
    max_new_tokens: int = 20
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float | None = 1.0
    min_p: float | None = None
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    stop: Sequence[str] | str | None = None
    seed: int | None = None
    context: str = "error"  # what a too-long prompt gets: "error" | "truncate" (from the left)

    def validate(self) -> None:
        def bad(option: str, msg: str) -> None:
            raise OptionError(option, msg)
        for name in ("temperature", "top_p", "min_p", "repetition_penalty", "length_penalty"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v)):
                bad(name, f"must be a finite number, got {v!r}")
        if not isinstance(self.max_new_tokens, numbers.Integral) or self.max_new_tokens < 0:
            bad("max_new_tokens", f"must be an integer >= 0, got {self.max_new_tokens!r}")
        if not isinstance(self.do_sample, bool):
            bad("do_sample", f"must be True or False, got {self.do_sample!r}")
        if self.do_sample and not self.temperature > 0:
            bad("temperature", f"must be > 0 when sampling, got {self.temperature}")
        if self.top_k is not None and (not isinstance(self.top_k, numbers.Integral) or self.top_k < 0):
            bad("top_k", f"must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            bad("top_p", f"must be in (0, 1], got {self.top_p}")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            bad("min_p", f"must be in [0, 1], got {self.min_p}")
        if not self.repetition_penalty > 0:
            bad("repetition_penalty", f"must be > 0, got {self.repetition_penalty}")
        if not isinstance(self.no_repeat_ngram_size, numbers.Integral) or self.no_repeat_ngram_size < 0:
            bad("no_repeat_ngram_size", f"must be an integer >= 0, got {self.no_repeat_ngram_size!r}")
        if not isinstance(self.num_beams, numbers.Integral) or self.num_beams < 1:
            bad("num_beams", f"must be an integer >= 1, got {self.num_beams!r}")
        if self.early_stopping not in (True, False, "never"):
            bad("early_stopping", f"must be True, False or 'never', got {self.early_stopping!r}")
        if not isinstance(self.num_return_sequences, numbers.Integral) or self.num_return_sequences < 1:
            bad("num_return_sequences", f"must be an integer >= 1, got {self.num_return_sequences!r}")
        if self.num_return_sequences > 1 and self.num_beams == 1 and not self.do_sample:
            bad("num_return_sequences", f"{self.num_return_sequences} needs do_sample=True or num_beams > 1 "
                "(--do-sample, --num-beams): greedy decoding would return the same sequence every time")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            bad("num_return_sequences", f"({self.num_return_sequences}) must be <= num_beams ({self.num_beams})")
        if self.context not in ("error", "truncate"):
            bad("context", f"must be 'error' or 'truncate', got {self.context!r}")
        if any(not isinstance(s, str) or not s for s in self.stops):
            bad("stop", "strings must be non-empty strings")
        eos = self.eos_token_id if isinstance(self.eos_token_id, (list, tuple)) else [self.eos_token_id]
        for e in eos:
            if e is not None and (not isinstance(e, numbers.Integral) or e < 0):
                bad("eos_token_id", f"must be a token id >= 0, got {e!r}")
        if self.pad_token_id is not None and (not isinstance(self.pad_token_id, numbers.Integral)
                                              or self.pad_token_id < 0):
            bad("pad_token_id", f"must be a token id >= 0, got {self.pad_token_id!r}")
        if self.seed is not None and (not isinstance(self.seed, numbers.Integral) or not 0 <= self.seed < 2**64):
            bad("seed", f"must be an integer in [0, 2**64), got {self.seed!r}")

    @property
    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


def make_config(**kwargs: Any) -> GenerationConfig:
    names = {f.name for f in fields(GenerationConfig)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise TypeError(f"unexpected generation option(s): {', '.join(unknown)}")
    cfg = GenerationConfig(**kwargs)
    cfg.validate()
    return cfg
