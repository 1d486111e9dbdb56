"""Control tokens after <|endoftext|>, as tokenizer_config.json keeps them for transformers.

A gptkit tokenizer's ids are its ordinary tokens (0..n-1), <|endoftext|> (n), then its control
tokens (n+1, ...: ChatML's <|im_start|> and <|im_end|> for a chat model). vocab.json holds the
ordinary tokens and <|endoftext|>, as ever; the control tokens are written to tokenizer_config.json
as transformers writes added tokens ("added_tokens_decoder": id -> content, special), with the
chat template beside them ("chat_template"), so that AutoTokenizer loads the same ids.
"""
from __future__ import annotations

from typing import Any

from gptkit.errors import GptkitError
from gptkit.tokenizer_json import config_chat_template

EOT = "<|endoftext|>"


def check_specials(specials: tuple[str, ...], ranks: dict[bytes, int], kind: str) -> tuple[str, ...]:
    """The control tokens, checked: non-empty strings, distinct, none <|endoftext|>, none spelling
    an ordinary token of the vocabulary (it would have two meanings)."""
    for s in specials:
        if not isinstance(s, str) or not s:
            raise GptkitError(f"{kind} tokenizer: control token {s!r} must be a non-empty string")
        if s == EOT or specials.count(s) > 1:
            raise GptkitError(f"{kind} tokenizer: control token {s!r} is given twice")
        if s.encode() in ranks:
            raise GptkitError(f"{kind} tokenizer: {s!r} is already an ordinary token of the vocabulary (id "
                              f"{ranks[s.encode()]}, plain text); as a control token it would have two meanings: "
                              "choose other control tokens")
    return specials


def _entry(content: str) -> dict[str, Any]:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": True}


def added_tokens_config(specials: tuple[str, ...], eot_id: int, chat_template: str | None) -> dict[str, Any]:
    """The tokenizer_config.json keys of the control tokens and the template ({} for neither)."""
    out: dict[str, Any] = {}
    if specials:
        out["added_tokens_decoder"] = {str(eot_id): _entry(EOT),
                                       **{str(eot_id + 1 + i): _entry(s) for i, s in enumerate(specials)}}
        out["additional_special_tokens"] = list(specials)
    if chat_template is not None:
        out["chat_template"] = chat_template
    return out


def read_added_tokens(config: dict[str, Any], eot_id: int, where: str) -> tuple[tuple[str, ...], str | None]:
    """(control tokens, chat template) of a tokenizer_config.json: the added tokens above
    <|endoftext|>'s id, which must follow it without gaps."""
    added = config.get("added_tokens_decoder") or {}
    if not isinstance(added, dict):
        raise GptkitError(f"{where}: added_tokens_decoder must be an object of id -> token")
    above = {}
    for key, entry in added.items():
        try:
            i = int(key)
        except ValueError:
            raise GptkitError(f"{where}: added_tokens_decoder key {key!r} is not a token id") from None
        content = entry.get("content") if isinstance(entry, dict) else None
        if not isinstance(content, str):
            raise GptkitError(f"{where}: added token {key} has no content string")
        if i > eot_id:
            above[i] = content
    specials = tuple(above[i] for i in sorted(above))
    if sorted(above) != list(range(eot_id + 1, eot_id + 1 + len(above))):
        raise GptkitError(f"{where}: added tokens above {EOT} ({eot_id}) must take the ids that follow it, "
                          f"without gaps; found {sorted(above)[:4]}")
    return specials, config_chat_template(config, where)
