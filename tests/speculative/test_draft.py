"""gptkit.speculative.draft: prompt lookup, the draft model's cache, the same-tokenizer rule."""
import pytest
import torch

from gptkit.errors import GptkitError
from gptkit.model import GPT, GPTConfig
from gptkit.speculative import ModelDrafter, NgramDrafter, same_tokenizer
from gptkit.tokenizer import bytes_tokenizer


def test_ngram_takes_the_latest_longest_match():
    d = NgramDrafter(max_ngram=3)
    assert d.propose([1, 2, 3, 9, 1, 2, 3, 7, 1, 2, 3], 2) == ([7, 1], None)  # latest occurrence of 1 2 3
    assert d.propose([5, 6, 8, 6], 3) == ([8, 6], None)  # only the 1-gram matches
    assert d.propose([1, 2, 3], 4) == ([], None)
    assert d.propose([4], 4) == ([], None)


def test_model_drafter_feeds_only_what_its_cache_lacks():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=50, n_positions=64, n_embd=16, n_layer=1, n_head=2)).eval()
    greedy = lambda logits: (int(logits.argmax()), None)  # noqa: E731
    d = ModelDrafter(m, 64)
    seq = [1, 2, 3, 4]
    drafts, _ = d.propose(seq, 3, pick=greedy)
    ref = m.generate([seq], max_new_tokens=3)[0, 4:].tolist()
    assert drafts == ref
    d.accepted(1)  # one draft kept, then the target's own token 7
    seq = seq + drafts[:1] + [7]
    assert d.seen == 5
    drafts, _ = d.propose(seq, 2, pick=greedy)
    assert drafts == m.generate([seq], max_new_tokens=2)[0, len(seq):].tolist()


def test_a_draft_with_another_tokenizer_is_refused(small_bpe):
    a = GPT(GPTConfig(vocab_size=257, n_positions=32, n_embd=16, n_layer=1, n_head=2))
    b = GPT(GPTConfig(vocab_size=small_bpe.vocab_size, n_positions=32, n_embd=16, n_layer=1, n_head=2))
    a.tokenizer, b.tokenizer = bytes_tokenizer(), small_bpe
    with pytest.raises(GptkitError, match="another tokenizer"):
        same_tokenizer(a, b)
    b.tokenizer = bytes_tokenizer()
    same_tokenizer(a, b)
