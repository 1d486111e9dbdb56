"""Speculative decoding through generate: greedy ids identical to plain decoding (n-gram and draft
model, batches, stop strings, streaming), sampled tokens distributed as the model's (chi-square on
a tiny vocabulary), and the refusals."""
import itertools

import pytest
import torch
from scipy.stats import chisquare

from gptkit.cli import main
from gptkit.errors import GptkitError
from gptkit.generate import generate_text
from gptkit.model import GPT, GPTConfig
from gptkit.tokenizer import bytes_tokenizer


def gpt(seed, vocab=257, n_embd=48, n_layer=2, std=None):
    torch.manual_seed(seed)
    m = GPT(GPTConfig(vocab_size=vocab, n_positions=128, n_embd=n_embd, n_layer=n_layer, n_head=2,
                      eos_token_id=vocab - 1)).eval()
    if std is not None:
        with torch.no_grad():
            m.transformer.wte.weight.normal_(0, std)
    return m


@pytest.fixture(scope="module")
def target():
    m = gpt(0)
    with torch.no_grad():  # peaked distributions, so greedy text repeats itself (n-gram drafts get kept)
        m.transformer.wte.weight.mul_(6)
    m.tokenizer = bytes_tokenizer()
    return m


@pytest.fixture(scope="module")
def draft():
    d = gpt(1, n_embd=32, n_layer=1)
    d.tokenizer = bytes_tokenizer()
    return d


PROMPTS = ["the cat sat on the mat; the cat sat on the", "def f(x):\n    return f(x)\ndef g(x):\n", "a"]


@pytest.mark.parametrize("k", [1, 3, 8])
def test_greedy_ids_are_plain_decodings(target, draft, k):
    tok = target.tokenizer
    for spec in ("ngram", draft):
        for p in PROMPTS:
            ids = [tok.encode(p)]
            ref = target.generate(ids, max_new_tokens=40)
            out = target.generate(ids, max_new_tokens=40, speculative=spec, num_speculative_tokens=k)
            assert torch.equal(out, ref), (spec, p, k)


def test_batches_stops_and_streams_are_plain_decodings(target, draft):
    tok = target.tokenizer
    kw = dict(max_new_tokens=30, stop=["at"])
    ref = generate_text(target, tok, PROMPTS, **kw)
    for spec in ("ngram", draft):
        assert generate_text(target, tok, PROMPTS, speculative=spec, **kw) == ref
        streamed = "".join(target.stream(PROMPTS[0], tokenizer=tok, speculative=spec, **kw))
        assert streamed == ref[0]["text"]


def exact_pair_distribution(model, prompt, V):
    """P(second, third new token) under the model, by enumerating the first and second."""
    with torch.no_grad():
        p1 = model(torch.tensor([prompt]))[0, -1].softmax(-1)
        two = torch.tensor([prompt + [a] for a in range(V)])
        p2 = model(two)[:, -1].softmax(-1)  # (a, b)
        three = torch.tensor([prompt + [a, b] for a, b in itertools.product(range(V), range(V))])
        p3 = model(three)[:, -1].softmax(-1).view(V, V, V)  # (a, b, c)
    joint = p1[:, None, None] * p2[:, :, None] * p3
    return joint.sum(0).flatten()  # (b, c)


@pytest.mark.parametrize("drafter", ["ngram", "model"])
def test_sampled_tokens_keep_the_models_distribution(drafter):
    V = 6
    target = gpt(2, vocab=V, n_embd=16, n_layer=1, std=1.0)
    spec = "ngram" if drafter == "ngram" else gpt(3, vocab=V, n_embd=16, n_layer=1, std=1.0)
    prompt = [0, 1, 2, 0, 1, 2, 0, 1]  # n-gram drafts exist at every step
    trials = 1500
    out = target.generate([prompt], max_new_tokens=3, do_sample=True, top_k=0, seed=0, eos_token_id=[],
                          speculative=spec, num_speculative_tokens=2, num_return_sequences=trials)
    pairs = out[:, len(prompt) + 1] * V + out[:, len(prompt) + 2]
    counts = torch.bincount(pairs, minlength=V * V).double()
    expected = exact_pair_distribution(target, prompt, V).double() * trials
    small = expected < 5  # pool the rare cells (chi-square needs >= 5 expected per cell)
    obs = torch.cat([counts[~small], counts[small].sum()[None]])
    exp = torch.cat([expected[~small], expected[small].sum()[None]])
    assert chisquare(obs.numpy(), exp.numpy() * obs.sum().item() / exp.sum().item()).pvalue > 1e-3


@pytest.mark.parametrize("kw, why", [
    (dict(speculative="ngram", num_beams=2), "speculative cannot be combined with num_beams"),
    (dict(speculative="ngram", repetition_penalty=1.2), "repetition_penalty"),
    (dict(speculative="ngram", regex="a+"), "json_schema / regex"),
    (dict(speculative="ngram", num_speculative_tokens=0), "num_speculative_tokens must be an integer >= 1"),
    (dict(speculative=3), "speculative must be 'ngram'"),
])
def test_refusals(target, kw, why):
    with pytest.raises(GptkitError, match=why):
        target.generate([[1, 2]], max_new_tokens=4, **kw)


def test_cli_speculative_and_a_draft_with_another_tokenizer(tmp_path, capsys, small_bpe):
    from gptkit.hf import save_model

    from conftest import save_tiny_bytes_gpt
    model = str(save_tiny_bytes_gpt(tmp_path / "target"))
    base = ["generate", "--model", model, "the cat the cat", "--no-do-sample", "--max-new-tokens", "20",
            "--dtype", "float32", "--no-stream"]
    assert main(base) == 0
    plain = capsys.readouterr().out
    assert main([*base, "--speculative", "ngram"]) == 0
    assert capsys.readouterr().out == plain
    assert main([*base, "--speculative", model]) == 0  # a model is its own perfect draft
    assert capsys.readouterr().out == plain
    torch.manual_seed(0)
    other = GPT(GPTConfig(vocab_size=small_bpe.vocab_size, n_positions=128, n_layer=1, n_head=2, n_embd=16))
    save_model(other, tmp_path / "other", small_bpe)
    assert main([*base, "--speculative", str(tmp_path / "other")]) != 0
    out, err = capsys.readouterr()
    assert out == "" and "another tokenizer" in err and len(err.strip().splitlines()) == 1
