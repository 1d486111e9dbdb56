"""Structured output: generation constrained to a JSON schema, any JSON object, or a regex.

    from gptkit.constrain import Grammar, compile_grammar, GrammarConstraint
    g = compile_grammar(Grammar.json_schema(schema), tokenizer)   # ConstraintError if it cannot be
    c = GrammarConstraint(g, rows)                                # per-row state: mask, advance

`generate(..., json_schema=..., regex=...)`, `gptkit generate --json-schema FILE --regex RE` and the
server's `response_format` all go through these. Backed by llguidance (chosen by measuring each
library's per-token cost on gptkit's tokenizers: benchmarks/bench_constrain.py).
"""
from .grammar import CompiledGrammar, ConstraintError, Grammar, compile_grammar
from .processor import GrammarConstraint, RowGrammar, grammar_processor, unpack_bitmask

__all__ = ["CompiledGrammar", "ConstraintError", "Grammar", "GrammarConstraint", "RowGrammar", "compile_grammar",
           "grammar_processor", "unpack_bitmask"]
