"""A family's tokenizer.json (gptkit/tokenizer_json.py) as GGUF's tokenizer.ggml.* keys, as llama.cpp's
converter (convert_hf_to_gguf.py, gguf's SpecialVocab) writes it, for llama.cpp to tokenize as the
`tokenizers` library does:

  byte-level BPE (Llama-3, Qwen2/Qwen3, SmolLM2, GPT-2's)   tokenizer.ggml.model "gpt2": the vocabulary in
      its byte-level spelling, merges as "a b" lines in rank order, and tokenizer.ggml.pre, the
      pre-tokenizer llama.cpp hard-codes, recognised from tokenizer.json's pre_tokenizer itself (the
      converter hashes a test text's ids instead, which only knows the published vocabularies):
      "gpt-2" (ByteLevel's own regex), "smollm" (single digits, then GPT-2's regex), "llama-bpe"
      (Llama-3's regex; llama.cpp ignores merges for whole words there, so tokenizer.json must say
      ignore_merges), "qwen2" (Qwen2's regex). Any other pre-tokenizer is refused: llama.cpp would
      split the text otherwise. An NFC normalizer (Qwen's) is written as the converter writes it:
      llama.cpp does not normalize, so text not already in NFC may tokenize differently there.
  SentencePiece-style BPE with byte fallback (Llama-2, Mistral)   tokenizer.ggml.model "llama": each
      token's score is minus the rank of its first merge, so llama.cpp's SentencePiece merging (the
      adjacent pair whose concatenation scores highest) follows the merge order. That is BPE's result
      where every two tokens that concatenate to a token are one of its merges, each token's merges
      adjacent in rank, as the converters from SentencePiece write them; a tokenizer.json with other
      merges is refused, as is one without all 256 <0xNN> pieces. The space prefix (Metaspace's
      prepend_scheme, or the legacy Prepend normalizer) is tokenizer.ggml.add_space_prefix; llama.cpp
      also adds it after a special token parsed in the text, where prepend_scheme "first" does not.

Token types: added special tokens CONTROL, other added tokens USER_DEFINED, <0xNN> pieces BYTE, the unk
token UNKNOWN; ids the tokenizer leaves free (a vocab_size rounded up) "[PADi]" UNUSED. BOS and EOS are
added as transformers' tokenizer(text) adds them (gptkit's prompt_prefix / prompt_suffix); the chat
template goes in beside (gguf.py).
"""
from __future__ import annotations

import json
import re
from typing import Any

from ..errors import GptkitError
from ..tokenizer_json import JsonTokenizer
from .vocab import Vocab

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
               r"\s+(?!\S)|\s+")
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
_BYTES_ONLY = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}


def _split(regex: str) -> dict[str, Any]:
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}, _BYTES_ONLY]}


# llama.cpp's pre-tokenizer -> (tokenizer.json's pre_tokenizer, the ignore_merges llama.cpp runs it with)
PRE_TOKENIZERS: dict[str, tuple[dict[str, Any], bool]] = {
    "gpt-2": (_BYTE_LEVEL, False),
    "smollm": ({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, _BYTE_LEVEL]},
               False),
    "llama-bpe": (_split(LLAMA3_REGEX), True),
    "qwen2": (_split(QWEN2_REGEX), False),
}
NORMALIZERS = (None, {"type": "NFC"})
_BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")
_LEGACY = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                               {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}


def _canonical(node: Any) -> Any:
    """A pre-tokenizer as compared: offsets-only settings (trim_offsets) dropped."""
    if isinstance(node, dict):
        return {k: _canonical(v) for k, v in node.items() if k != "trim_offsets"}
    if isinstance(node, list):
        return [_canonical(v) for v in node]
    return node


def json_vocab(tok: JsonTokenizer, n_vocab: int) -> Vocab:
    """The GGUF vocabulary of a tokenizer.json tokenizer for a model of `n_vocab` embedding rows, or a
    GptkitError naming what llama.cpp would tokenize otherwise."""
    d = tok.pipeline()
    model = d["model"]
    if model.get("type") != "BPE":
        raise GptkitError(f"{tok.where}: a {model.get('type')} tokenizer is not exported to GGUF (gptkit writes "
                          "BPE tokenizers: byte-level, or SentencePiece-style with byte fallback)")
    if tok.vocab_size > n_vocab:
        raise GptkitError(f"the tokenizer has {tok.vocab_size} tokens, more than the model's vocab_size {n_vocab}")
    if tok.byte_level:
        vocab = _byte_level(tok, d, n_vocab)
    elif model.get("byte_fallback"):
        vocab = _sentencepiece(tok, d, n_vocab)
    else:
        raise GptkitError(f"{tok.where}: a BPE tokenizer neither byte-level nor with byte fallback has no llama.cpp "
                          "tokenizer; it is not exported to GGUF")
    vocab.add_bos, vocab.add_eos = _adds(tok, vocab.special_ids)
    return vocab


def _byte_level(tok: JsonTokenizer, d: dict[str, Any], n_vocab: int) -> Vocab:
    pre = _canonical(d.get("pre_tokenizer"))
    name = next((k for k, (want, _) in PRE_TOKENIZERS.items() if pre == want), None)
    if name is None:
        raise GptkitError(f"{tok.where}: llama.cpp has no pre-tokenizer that splits text as this tokenizer.json's "
                          f"pre_tokenizer does (it has GPT-2's, SmolLM's, Llama-3's and Qwen2's); not exported to GGUF")
    ignore = bool(d["model"].get("ignore_merges", False))
    if ignore != PRE_TOKENIZERS[name][1]:
        raise GptkitError(f"{tok.where}: ignore_merges is {str(ignore).lower()}, but llama.cpp's {name!r} "
                          f"pre-tokenizer runs with {str(not ignore).lower()}; not exported to GGUF")
    if d.get("normalizer") not in NORMALIZERS:
        raise GptkitError(f"{tok.where}: normalizer {d['normalizer'].get('type')!r} is not computed by llama.cpp; "
                          "not exported to GGUF")
    tokens, types = _tokens(tok, d, n_vocab, lambda piece: 1)
    return Vocab(tok.kind, tokens, types, [_merge_line(m) for m in d["model"]["merges"]], _special_ids(tok, d),
                 pre=name)


def _merge_line(m: Any) -> str:
    """A merge as llama.cpp's merges key holds it ("a b"; a space inside a part as gguf's SpecialVocab writes it)."""
    a, b = m.split(" ", 1) if isinstance(m, str) else m
    return " ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in (a, b))


def _sentencepiece(tok: JsonTokenizer, d: dict[str, Any], n_vocab: int) -> Vocab:
    vocab = d["model"]["vocab"]
    missing = [f"<0x{b:02X}>" for b in range(256) if f"<0x{b:02X}>" not in vocab]
    if missing:
        raise GptkitError(f"{tok.where}: byte fallback without the piece {missing[0]} (llama.cpp needs all 256 "
                          "<0xNN> pieces); not exported to GGUF")
    prefix = _space_prefix(tok, d)
    scores = _scores(tok, d)
    unk = d["model"].get("unk_token")
    tokens, types = _tokens(tok, d, n_vocab, lambda piece: 6 if _BYTE_PIECE.fullmatch(piece) else
                            2 if piece == unk else 1)
    values = [scores.get(t, 0.0) if ty == 1 else 0.0 for t, ty in zip(tokens, types)]
    ids = _special_ids(tok, d)
    if unk is not None and unk in vocab:
        ids["unk"] = vocab[unk]
    return Vocab(tok.kind, tokens, types, [], ids, model="llama", pre=None, scores=values, add_space_prefix=prefix)


def _space_prefix(tok: JsonTokenizer, d: dict[str, Any]) -> bool:
    """Whether a "▁" goes before the text: Metaspace's prepend_scheme, or the legacy Prepend normalizer."""
    pre, norm = d.get("pre_tokenizer"), d.get("normalizer")
    if pre is None and norm == _LEGACY:
        return True
    if isinstance(pre, dict) and pre.get("type") == "Metaspace" and pre.get("replacement") == "▁" and norm is None:
        if pre.get("split", True):
            raise GptkitError(f"{tok.where}: Metaspace with split=true (words merged apart) is not how llama.cpp's "
                              "SentencePiece tokenizer runs; not exported to GGUF")
        return pre.get("prepend_scheme", "always") != "never"
    raise GptkitError(f"{tok.where}: a SentencePiece-style tokenizer.json whose normalizer and pre_tokenizer are "
                      "not Metaspace's (or the legacy Prepend + Replace) has no llama.cpp tokenizer; not exported to GGUF")


def _scores(tok: JsonTokenizer, d: dict[str, Any]) -> dict[str, float]:
    """Each merged token's score, minus the rank of its first merge; refused unless llama.cpp's merging
    by concatenation and score computes BPE's merges (see the module docstring)."""
    vocab, merges = d["model"]["vocab"], [m.split(" ", 1) if isinstance(m, str) else m for m in d["model"]["merges"]]
    first: dict[str, int] = {}
    last = ""
    for rank, (a, b) in enumerate(merges):
        t = a + b
        if t in first and t != last:
            raise GptkitError(f"{tok.where}: the merges of {t!r} are not adjacent in rank, so llama.cpp's SentencePiece "
                              "tokenizer (one score per token) would merge in another order; not exported to GGUF")
        first.setdefault(t, rank)
        last = t
    pairs = {(a, b) for a, b in merges}
    symbol = lambda s: s in vocab or len(s) == 1  # noqa: E731 (llama.cpp starts from one symbol per character)
    for t in vocab:
        for k in range(1, len(t)):
            if symbol(t[:k]) and symbol(t[k:]) and (t[:k], t[k:]) not in pairs:
                raise GptkitError(f"{tok.where}: {t[:k]!r} + {t[k:]!r} make the token {t!r} but are no merge, so "
                                  "llama.cpp's SentencePiece tokenizer would merge them where BPE does not; not "
                                  "exported to GGUF")
    return {t: -float(rank) for t, rank in first.items()}


def _tokens(tok: JsonTokenizer, d: dict[str, Any], n_vocab: int, kind: Any) -> tuple[list[str], list[int]]:
    """Every id's text and type (gguf.TokenType: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    6 byte); `kind(piece)` types the vocabulary's own pieces."""
    tokens: list[str | None] = [None] * n_vocab
    types = [5] * n_vocab
    for piece, i in d["model"]["vocab"].items():
        tokens[i], types[i] = piece, kind(piece)
    for t in d.get("added_tokens", []):
        i = t["id"]
        tokens[i] = t["content"]
        if types[i] not in (2, 6):  # the unk token and the byte pieces keep their types
            types[i] = 3 if t.get("special") else 4
    return [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)], types


def _special_ids(tok: JsonTokenizer, d: dict[str, Any]) -> dict[str, int]:
    """BOS (the end-of-text token where the tokenizer names none: llama.cpp needs one), EOS, and pad."""
    id_of = {**d["model"]["vocab"], **{t["content"]: t["id"] for t in d.get("added_tokens", [])}}
    ids = {"bos": id_of.get(tok.bos_token or "", tok.eot_id), "eos": id_of.get(tok.eos_token or "", tok.eot_id)}
    try:
        pad = json.loads(tok.files.get("tokenizer_config.json", "{}")).get("pad_token")
    except (ValueError, AttributeError, RecursionError):  # JsonTokenizer read it already: never here
        pad = None
    pad = pad.get("content") if isinstance(pad, dict) else pad
    if isinstance(pad, str) and pad in id_of:
        ids["pad"] = id_of[pad]
    return ids


def _adds(tok: JsonTokenizer, ids: dict[str, int]) -> tuple[bool, bool]:
    """add_bos / add_eos: what transformers' tokenizer(text) puts around a text, if llama.cpp can say it."""
    prefix, suffix = tuple(tok.prompt_prefix), tuple(tok.prompt_suffix)
    if prefix not in ((), (ids["bos"],)) or suffix not in ((), (ids["eos"],)):
        raise GptkitError(f"{tok.where}: the post-processor puts {list(prefix)} before and {list(suffix)} after a "
                          "text, more than llama.cpp's one BOS and one EOS; not exported to GGUF")
    return bool(prefix), bool(suffix)
