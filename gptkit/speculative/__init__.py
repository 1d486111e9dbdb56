"""Speculative decoding: a drafter guesses k tokens, the model checks them in one forward pass.

    generate(model, ids, speculative="ngram")              # prompt lookup: no second model
    generate(model, ids, speculative="runs/small")         # a draft model with the same tokenizer
    gptkit generate|summarize|translate|serve --speculative ngram|MODEL

Greedy output is identical to plain decoding; sampled output keeps the model's distribution
(rejection sampling, verify.py). One sequence at a time: a batch runs its rows in turn.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..errors import GptkitError
from .decode import Chooser, speculative_tokens
from .draft import ModelDrafter, NgramDrafter, same_tokenizer
from .verify import accept_greedy, accept_sampled

__all__ = ["Chooser", "ModelDrafter", "NgramDrafter", "accept_greedy", "accept_sampled", "draft_model",
           "make_drafter", "same_tokenizer", "speculative_tokens"]


@lru_cache(maxsize=2)
def _load(path: str, device: str, dtype: Any) -> Any:
    from .. import load_model
    return load_model(path, dtype=dtype, device=device).eval()


def draft_model(model: Any, spec: Any) -> Any:
    """The draft model `spec` names (a loaded model, or a directory / Hub id loaded once), checked
    to share the model's tokenizer; None for n-gram drafting."""
    if isinstance(spec, str) and spec == "ngram":
        return None
    if isinstance(spec, str):
        try:
            draft = _load(spec, str(model.device), model.dtype)
        except GptkitError as e:
            raise GptkitError(f"speculative draft model {spec}: {e}") from None
    elif hasattr(spec, "hidden_states") and hasattr(spec, "new_cache"):
        draft = spec.eval()
    else:
        raise GptkitError(f"speculative must be 'ngram', a model directory or a loaded gptkit model, got {spec!r}")
    same_tokenizer(model, draft)
    return draft


def make_drafter(draft: Any, max_length: int) -> Any:
    """A fresh drafter for one sequence (draft: what draft_model returned)."""
    return NgramDrafter() if draft is None else ModelDrafter(draft, max_length)

