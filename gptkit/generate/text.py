"""Text around the ids: stop strings, prompt encoding, cutting ids to a text length.
"""
from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import GptkitError


def resolve_tokenizer(model: Any, tokenizer: Any, why: str) -> Any:
    tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tok is None:
        detail = getattr(model, "tokenizer_error", None)
        raise GptkitError(f"{why} needs a tokenizer: pass tokenizer=..., or load a model directory that "
                          "has vocab.json + merges.txt" + (f" ({detail})" if detail else ""))
    return tok


def _token_bytes(tokenizer: Any, ids: list[int]) -> bytes:
    if hasattr(tokenizer, "decode_bytes"):
        return tokenizer.decode_bytes(ids)
    return tokenizer.decode(ids).encode("utf-8")


class StopStrings:
    """Per-row incremental detokenisation that spots stop strings in the new text."""

    def __init__(self, tokenizer: Any, stops: Sequence[str], rows: int) -> None:
        self.tokenizer, self.stops = tokenizer, tuple(stops)
        self.longest = max(len(s) for s in self.stops)
        self.decoders = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in range(rows)]
        self.texts = [""] * rows

    def update(self, tokens: list[int], active: list[bool]) -> list[bool]:
        hits = []
        for i, (t, on) in enumerate(zip(tokens, active)):
            if not on:
                hits.append(False)
                continue
            piece = self.decoders[i].decode(_token_bytes(self.tokenizer, [t]))
            self.texts[i] += piece
            window = self.texts[i][-(len(piece) + self.longest - 1):] if piece else ""
            hits.append(any(s in window for s in self.stops))
        return hits


def first_stop(text: str, stops: Sequence[str]) -> int:
    """Index where the earliest stop string starts in text, or -1."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else -1


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """The ids of a prompt as transformers' tokenizer(text) gives them: what the tokenizer puts before
    a text (Llama's BOS; nothing for GPT-2 or Qwen), then the text's own ids."""
    return list(getattr(tokenizer, "prompt_prefix", ())) + tokenizer.encode(text)


def _encode_prompt(tokenizer: Any, prompt: Any) -> list[int]:
    if isinstance(prompt, str):
        ids = prompt_ids(tokenizer, prompt)
        if not ids:  # an empty prompt: start from end-of-text, as GPT-2 samples unconditionally
            eot = getattr(tokenizer, "eot_id", None)
            if eot is None:
                raise GptkitError("the prompt is empty and the tokenizer has no end-of-text token to start from")
            ids = [eot]
        return ids
    if isinstance(prompt, torch.Tensor):
        return prompt.reshape(-1).tolist()
    return list(prompt)


def _ids_within(tokenizer: Any, ids: list[int], n_chars: int) -> list[int]:
    """The longest prefix of ids whose text fits in the first n_chars characters."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    length = 0
    for k, t in enumerate(ids):
        length += len(decoder.decode(_token_bytes(tokenizer, [t])))
        if length > n_chars:
            return ids[:k]
    return ids
