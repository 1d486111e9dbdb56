"""gptkit.constrain.grammar: specs compiled for a tokenizer, and bad ones refused in one line."""
import pytest

from gptkit.constrain import ConstraintError, Grammar, GrammarConstraint, compile_grammar
from gptkit.tokenizer import bytes_tokenizer

pytest.importorskip("llguidance")


def test_json_schema_accepts_a_dict_or_its_text():
    a = Grammar.json_schema({"type": "integer"})
    b = Grammar.json_schema('{"type": "integer"}')
    assert a == b and a.kind == "json_schema"


@pytest.mark.parametrize("spec, why", [
    (lambda: Grammar.json_schema("{not json"), "not valid JSON"),
    (lambda: Grammar.json_schema([1, 2]), "must be an object"),
    (lambda: Grammar.regex(""), "non-empty"),
])
def test_bad_specs_are_refused_before_compiling(spec, why):
    with pytest.raises(ConstraintError, match=why):
        spec()


@pytest.mark.parametrize("grammar, why", [
    (Grammar.json_schema({"type": "strin"}), "JSON schema cannot be compiled: Invalid type: strin"),
    (Grammar.json_schema({"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}), "cannot be compiled"),
    (Grammar.regex("a(b"), "regex cannot be compiled: .*unclosed group"),
    (Grammar.regex(r"(?!a)b"), "regex cannot be compiled"),
    (Grammar.regex(r"[^\s\S]"), "regex matches no text"),
    (Grammar.json_schema({"type": "integer", "minimum": 5, "maximum": 1}), "matches no text|cannot be compiled"),
])
def test_what_cannot_constrain_is_one_clear_line(grammar, why):
    with pytest.raises(ConstraintError, match=why) as e:
        compile_grammar(grammar, bytes_tokenizer())
    assert "\n" not in str(e.value)


def test_a_regex_allows_exactly_its_first_bytes_then_only_end_of_text():
    tok = bytes_tokenizer()
    c = GrammarConstraint(compile_grammar(Grammar.regex("(ab|cd)"), tok), 1)
    assert c.allowed()[0].nonzero().flatten().tolist() == [ord("a"), ord("c")]
    c.advance([ord("c")])
    assert c.allowed()[0].nonzero().flatten().tolist() == [ord("d")]
    c.advance([ord("d")])
    assert c.complete(0)
    assert c.allowed()[0].nonzero().flatten().tolist() == [tok.eot_id]
    with pytest.raises(ConstraintError, match="not allowed"):
        c.advance([ord("x")])
