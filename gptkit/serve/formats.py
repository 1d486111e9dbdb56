"""response_format -> the grammar a request's rows are constrained to (gptkit.constrain).

    {"type": "text"}                                   no constraint
    {"type": "json_object"}                            any JSON object
    {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}, "strict": ...}}

A schema llguidance cannot compile is a 400 naming response_format, raised before the request
reaches the engine, so nothing in flight is touched.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .protocol import APIError


def response_grammar(fmt: Any, tokenizer: Any, eos: Iterable[int]) -> Any:
    """The CompiledGrammar of a validated ResponseFormat, or None (no format, or "text")."""
    if fmt is None or fmt.type == "text":
        if fmt is not None and fmt.json_schema is not None:
            raise APIError(400, "response_format.json_schema needs type 'json_schema'", param="response_format")
        return None
    from ..constrain import ConstraintError, Grammar, compile_grammar
    try:
        if fmt.type == "json_object":
            grammar = Grammar.json_object()
        else:
            if fmt.json_schema is None or fmt.json_schema.schema_ is None:
                raise APIError(400, "response_format of type 'json_schema' needs json_schema.schema (a JSON schema)",
                               param="response_format")
            grammar = Grammar.json_schema(fmt.json_schema.schema_)
        return compile_grammar(grammar, tokenizer, sorted(eos))
    except ConstraintError as e:
        raise APIError(400, f"response_format: {e}", param="response_format", code="invalid_response_format") from None


def grammar_processor(compiled: Any) -> Any:
    """The engine's per-sequence processor factory for a compiled grammar."""
    from ..constrain import grammar_processor as make
    return make(compiled)
