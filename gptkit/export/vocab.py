"""A gptkit tokenizer as GGUF's tokenizer.ggml.* keys (llama.cpp's "gpt2" BPE, pre-tokenizer "gpt-2").

All three gptkit kinds are byte-level BPE split by GPT-2's regex, which is what llama.cpp's BPE
tokenizer computes with pre-tokenizer "gpt-2": tokens are written in GPT-2's byte-to-unicode
spelling (as in vocab.json), merges as "a b" lines in id order (merges.txt: llama.cpp merges by line
number, tiktoken by the id of the result; gptkit's merges.txt makes the two agree), <|endoftext|> as
a control token that is both BOS and EOS, and neither is added to a prompt (GPT-2 adds none).

The bytes tokenizer has no merges, but llama.cpp refuses a BPE vocabulary without the merges key
and gguf cannot write an empty array: it gets one placeholder merge of two <|endoftext|> tokens.
llama.cpp starts from one symbol per byte and only grows symbols by merging, so no symbol ever spells
<|endoftext|> and the placeholder never applies: the ids stay the byte values (tested against
llama.cpp's own tokenizer).

Ids past the tokenizer (a model whose vocab_size was rounded up) are unused "[PADi]" tokens, as
llama.cpp's converter writes them: llama.cpp needs one token per embedding row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import GptkitError
from ..tokenizer import EOT, _to_str

PRE_TOKENIZER = "gpt-2"
PLACEHOLDER_MERGE = f"{EOT} {EOT}"


@dataclass
class Vocab:
    """A tokenizer as llama.cpp reads it: model "gpt2" (byte-level BPE: merges, pre-tokenizer) or "llama"
    (SentencePiece-style: scores, the space prefix), token types (gguf.TokenType values), special ids."""
    kind: str  # gptkit's tokenizer kind: gpt2, bpe, bytes, tokenizer.json
    tokens: list[str]
    types: list[int]
    merges: list[str]
    special_ids: dict[str, int]  # bos, eos (unk, pad): tokenizer.ggml.<kind>_token_id
    model: str = "gpt2"
    pre: str | None = PRE_TOKENIZER
    scores: list[float] | None = None
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool | None = None

    @property
    def size(self) -> int:
        return len(self.tokens)

    def add_to(self, writer: Any) -> None:
        writer.add_tokenizer_model(self.model)
        if self.pre is not None:
            writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        if self.scores is not None:
            writer.add_token_scores(self.scores)
        writer.add_token_types(self.types)
        if self.merges:
            writer.add_token_merges(self.merges)
        for kind, i in self.special_ids.items():
            getattr(writer, f"add_{kind}_token_id")(i)
        writer.add_add_bos_token(self.add_bos)
        writer.add_add_eos_token(self.add_eos)
        if self.add_space_prefix is not None:
            writer.add_add_space_prefix(self.add_space_prefix)


def gguf_vocab(tokenizer: Any, n_vocab: int) -> Vocab:
    """The GGUF vocabulary of a gptkit Tokenizer for a model of `n_vocab` embedding rows (a family's
    tokenizer.json: vocab_json.py)."""
    from gguf import TokenType
    ranks, merges = getattr(tokenizer, "ranks", None), getattr(tokenizer, "merges", None)
    if not isinstance(ranks, dict) or merges is None or getattr(tokenizer, "eot_token", None) != EOT:
        raise GptkitError(f"tokenizer {tokenizer!r} cannot be written to GGUF (gptkit writes its byte-level BPE "
                          "tokenizers, gpt2, bpe and bytes, and the families' tokenizer.json)")
    if tokenizer.vocab_size > n_vocab:
        raise GptkitError(f"the tokenizer has {tokenizer.vocab_size} tokens, more than the model's vocab_size "
                          f"{n_vocab}")
    tokens = [""] * tokenizer.eot_id
    for token, i in ranks.items():
        tokens[i] = _to_str(token)
    specials = list(getattr(tokenizer, "specials", ()))  # a chat model's <|im_start|>, <|im_end|>
    tokens += [EOT, *specials]
    types = [TokenType.NORMAL] * tokenizer.eot_id + [TokenType.CONTROL] * (1 + len(specials))
    for i in range(len(tokens), n_vocab):
        tokens.append(f"[PAD{i}]")
        types.append(TokenType.UNUSED)
    lines = [f"{_to_str(a)} {_to_str(b)}" for a, b in merges] or [PLACEHOLDER_MERGE]
    return Vocab(tokenizer.kind, tokens, [int(t) for t in types], lines, {"bos": tokenizer.eot_id, "eos": tokenizer.eot_id})
