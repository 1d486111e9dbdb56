"""Text around the ids: incremental detokenising, stop strings, prompt encoding, cutting ids to a
text length.
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


class TokenText:
    """Each token's bytes and display text, memoised (the engine asks once per token per step)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._bytes: dict[int, bytes] = {}
        self._text: dict[int, str] = {}

    def bytes(self, t: int) -> bytes:
        b = self._bytes.get(t)
        if b is None:
            b = _token_bytes(self.tokenizer, [t])
            if len(self._bytes) < 1_000_000:
                self._bytes[t] = b
        return b

    def text(self, t: int) -> str:
        """The token's own text ("bytes:\\xNN" for a partial UTF-8 sequence), as OpenAI shows it."""
        text = self._text.get(t)
        if text is None:
            b = self.bytes(t)
            try:
                text = b.decode("utf-8")
            except UnicodeDecodeError:
                text = "bytes:" + "".join(f"\\x{x:02x}" for x in b)
            if len(self._text) < 1_000_000:
                self._text[t] = text
        return text


class TextStream:
    """One sequence's incremental detokenising and stop strings: `push` a token, read `text`;
    `ready` is how much of it can be shown (never the start of a possible stop string, never half
    a character). A stop string cuts the text just before it and ends the stream."""

    def __init__(self, token_text: TokenText, stops: Sequence[str]) -> None:
        self.token_text, self.stops = token_text, tuple(stops)
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.stopped = False

    def push(self, t: int) -> bool:
        """Add token t's text; True if a stop string now appears (the text is cut before it)."""
        before = len(self.text)
        self.text += self.decoder.decode(self.token_text.bytes(t))
        return self._check(before)

    def flush(self) -> bool:
        """The end: decode what a partial character left behind; True if that completed a stop."""
        before = len(self.text)
        tail = self.decoder.decode(b"", final=True)
        if not tail:
            return False
        self.text += tail
        return self._check(before)

    def _check(self, before: int) -> bool:
        if not self.stops or len(self.text) == before:
            return False
        cut = first_stop(self.text, self.stops, max(0, before - self.hold))
        if cut < 0:
            return False
        self.text, self.stopped = self.text[:cut], True
        return True

    @property
    def ready(self) -> int:
        return len(self.text) if self.stopped or not self.stops else max(0, len(self.text) - self.hold)


def first_stop(text: str, stops: Sequence[str], start: int = 0) -> int:
    """Index where the earliest stop string starts in text (at or after start), or -1."""
    found = [i for i in (text.find(s, start) for s in stops) if i >= 0]
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
