"""What an output must be, compiled for a tokenizer: a JSON schema, any JSON object, or a regex.

Backed by llguidance (Microsoft's Rust constrained-decoding engine, as vLLM and SGLang use it):
a `Grammar` is the user's spec; `compile_grammar` checks it against a tokenizer and returns a
`CompiledGrammar` from which each generated row gets its own matcher (see processor.py).
Anything the library cannot compile, or a pattern that no text can match, is a `ConstraintError`
with one line saying why, raised before any token is generated.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..errors import GptkitError

# OpenAI's JSON mode writes compact JSON: whitespace between tokens would let a model pad forever.
JSON_OPTIONS = {"whitespace_flexible": False}


class ConstraintError(GptkitError):
    """A schema or regex that cannot constrain generation (the server answers 400)."""


@dataclass(frozen=True)
class Grammar:
    """kind: "json_schema" (source: the schema as JSON text), "json_object" (any JSON object) or
    "regex" (source: a pattern the whole output must match)."""
    kind: str
    source: str

    @classmethod
    def json_schema(cls, schema: Any) -> Grammar:
        """A JSON schema: a dict (or True), or its JSON text."""
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except (ValueError, RecursionError) as e:
                raise ConstraintError(f"the JSON schema is not valid JSON: {e}") from None
        if not isinstance(schema, (dict, bool)):
            raise ConstraintError(f"a JSON schema must be an object, got {type(schema).__name__}")
        try:
            return cls("json_schema", json.dumps(schema))  # key order kept: properties come out in it
        except (TypeError, ValueError, RecursionError) as e:
            raise ConstraintError(f"the JSON schema cannot be written as JSON: {e}") from None

    @classmethod
    def json_object(cls) -> Grammar:
        return cls("json_object", json.dumps({"type": "object"}))

    @classmethod
    def regex(cls, pattern: str) -> Grammar:
        if not isinstance(pattern, str) or not pattern:
            raise ConstraintError("the regex must be a non-empty string")
        return cls("regex", pattern)

    def llguidance(self) -> str:
        """The grammar in llguidance's own format (not yet checked)."""
        import llguidance as llg
        if self.kind == "regex":
            return llg.LLMatcher.grammar_from_regex(self.source)
        try:
            return llg.LLMatcher.grammar_from_json_schema(self.source, overrides=JSON_OPTIONS)
        except ValueError as e:
            raise ConstraintError(f"the JSON schema cannot be compiled: {e}") from None

    def describe(self) -> str:
        return {"json_schema": "JSON schema", "json_object": "JSON object", "regex": "regex"}[self.kind]


@dataclass(frozen=True)
class CompiledGrammar:
    """A grammar checked against one tokenizer: what a matcher is made from."""
    grammar: Grammar
    text: str  # llguidance's grammar
    tokenizer: Any  # llguidance.LLTokenizer
    vocab: int  # the tokenizer's ids: 0..vocab-1 (a model may have more logits: never allowed)
    eos: tuple[int, ...]


def _import() -> Any:
    try:
        import llguidance
    except ImportError:
        raise ConstraintError("structured output needs llguidance: pip install 'gptkit[constrain]'") from None
    return llguidance


@lru_cache(maxsize=8)
def _ll_tokenizer(tokenizer: Any, eos: tuple[int, ...]) -> Any:
    from llguidance.tiktoken import lltokenizer_from_encoding
    return lltokenizer_from_encoding(tokenizer._enc, n_vocab=tokenizer.vocab_size, eos_token=list(eos))


def ll_tokenizer(tokenizer: Any, eos: tuple[int, ...]) -> Any:
    """llguidance's view of a gptkit Tokenizer (built once per tokenizer: ~0.2 s for GPT-2's)."""
    _import()
    if not hasattr(tokenizer, "_enc"):
        raise ConstraintError(f"structured output needs a gptkit tokenizer, got {type(tokenizer).__name__}")
    return _ll_tokenizer(tokenizer, eos)


def compile_grammar(grammar: Grammar, tokenizer: Any, eos: Any = None) -> CompiledGrammar:
    """Check `grammar` for `tokenizer` (eos: the ids that end a row; default its end-of-text).
    ConstraintError, one line, if the library refuses it or if no text can match it."""
    llg = _import()
    ends = tuple(int(e) for e in ([tokenizer.eot_id] if eos is None else eos))
    lt = ll_tokenizer(tokenizer, ends)
    text = grammar.llguidance()
    error = llg.LLMatcher.validate_grammar(text, lt)
    if error and not error.startswith("WARNING"):
        raise ConstraintError(f"the {grammar.describe()} cannot be compiled: {_first_line(error)}")
    compiled = CompiledGrammar(grammar, text, lt, tokenizer.vocab_size, ends)
    m = llg.LLMatcher(lt, text, log_level=0)
    if m.is_error():
        raise ConstraintError(f"the {grammar.describe()} cannot be compiled: {_first_line(m.get_error())}")
    m.compute_bitmask()  # an empty language shows here: nothing allowed, the matcher in error
    if m.is_error() or (m.is_stopped() and not m.is_accepting()):
        raise ConstraintError(f"the {grammar.describe()} matches no text: nothing could be generated")
    return compiled


def _first_line(message: str) -> str:
    """llguidance's errors quote the grammar over several lines: keep what says why."""
    lines = [x.strip() for x in message.strip().splitlines() if x.strip()]
    why = next((x for x in lines if x.startswith("error:")), None)
    head = lines[0] if lines else "unknown error"
    if why is not None:
        return f"{head.rstrip(':')} ({why[len('error:'):].strip()})"
    return head
