"""gptkit.constrain.processor: the bitmask, the per-row masks, rollback."""
import pytest
import torch

from gptkit.constrain import Grammar, GrammarConstraint, compile_grammar, unpack_bitmask
from gptkit.tokenizer import bytes_tokenizer

pytest.importorskip("llguidance")


def test_unpack_bitmask_reads_bit_j_of_word_w_as_token_32w_plus_j():
    bits = torch.tensor([[1 | -(1 << 31), 0b100]], dtype=torch.int32)
    allowed = unpack_bitmask(bits, 40)
    assert allowed[0].nonzero().flatten().tolist() == [0, 31, 34]


def test_rows_are_independent_and_padded_logits_are_never_allowed():
    tok = bytes_tokenizer()
    c = GrammarConstraint(compile_grammar(Grammar.regex("[0-9]+"), tok), 2)
    c.advance([ord("1"), ord("2")])
    c.advance([ord("3"), 0], active=[True, False])  # row 1 inactive: its token is not consumed
    assert c.consumed == [2, 1]
    scores = torch.zeros(2, tok.vocab_size + 7)  # a model with 7 padded logits
    out = c.mask(scores)
    assert torch.isinf(out[:, tok.vocab_size:]).all()
    digits = [ord(d) for d in "0123456789"]
    for row in range(2):
        assert sorted(torch.isfinite(out[row]).nonzero().flatten().tolist()) == digits + [tok.eot_id]
    only = c.mask(scores[1:], rows=[1])
    assert torch.equal(only, out[1:])


def test_rollback_undoes_consumed_tokens():
    tok = bytes_tokenizer()
    c = GrammarConstraint(compile_grammar(Grammar.regex("abc"), tok), 1)
    c.advance([ord("a"), ], rows=[0])
    c.advance([ord("b")])
    c.rollback(0, 1)
    assert c.consumed == [1]
    assert c.allowed()[0].nonzero().flatten().tolist() == [ord("b")]
