"""Generation: parity with transformers' generate on identical weights, sampling statistics,
batching, stop strings, streaming and the context rule (int8: test_quantize.py; the CLI:
tests/cli/test_generate_cli.py)."""
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

transformers = pytest.importorskip("transformers")
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from gptkit import load_model  # noqa: E402
from gptkit.engine.processors import banned_ngram_tokens  # noqa: E402
from gptkit.errors import GptkitError  # noqa: E402
from gptkit.generate import generate, generate_text, stream  # noqa: E402

from conftest import EOS  # noqa: E402
from conftest import build_random_gpt2 as build  # noqa: E402

transformers.logging.set_verbosity_error()


def prompts(n=4, lo=3, hi=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (int(torch.randint(lo, hi + 1, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]


def hf_batch(rows):
    """Left-padded ids and mask, built independently of gptkit."""
    T = max(map(len, rows))
    ids = torch.tensor([[EOS] * (T - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


# ---------------------------------------------------------------------------- parity

def test_greedy_equals_transformers_and_rows_stop_on_their_own(tiny):
    hf, m = tiny
    x = torch.randint(0, 256, (6, 7), generator=torch.Generator().manual_seed(1))
    ref = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=25, do_sample=False)
    out = m.generate(x, max_new_tokens=25)
    assert torch.equal(out, ref)
    ended = (out[:, 7:] == EOS).any(1)
    assert ended.any() and not ended.all(), "the fixture should make some rows stop early"


def test_greedy_with_left_padding_equals_transformers_and_one_by_one(tiny):
    hf, m = tiny
    rows = prompts(5)
    ids, mask = hf_batch(rows)
    ref = hf.generate(ids, attention_mask=mask, max_new_tokens=20, do_sample=False)
    assert torch.equal(m.generate(ids, attention_mask=mask, max_new_tokens=20), ref)
    batched = m.generate(rows, max_new_tokens=20)  # ragged lists are left-padded by gptkit
    assert torch.equal(batched, ref)
    T = ids.size(1)
    for i, r in enumerate(rows):
        alone = m.generate([r], max_new_tokens=20)[0, len(r):]
        new = batched[i, T:]
        assert torch.equal(new[: alone.numel()], alone)
        assert (new[alone.numel():] == EOS).all()  # stopped early: padded after


@pytest.mark.parametrize("length_penalty", [1.0, 0.0, 2.0, -1.0])
@pytest.mark.parametrize("early_stopping", [False, True, "never"])
def test_beam_search_equals_transformers(tiny, length_penalty, early_stopping):
    hf, m = tiny
    x = torch.randint(0, 256, (3, 6), generator=torch.Generator().manual_seed(2))
    kw = dict(max_new_tokens=12, num_beams=4, length_penalty=length_penalty, early_stopping=early_stopping,
              num_return_sequences=3)
    ref = hf.generate(x, attention_mask=torch.ones_like(x), do_sample=False, **kw)
    out = m.generate(x, **kw)
    assert out.shape == ref.shape and torch.equal(out, ref)


def test_beam_search_finishes_hypotheses_early_in_the_fixture(tiny):
    _, m = tiny
    x = torch.randint(0, 256, (3, 6), generator=torch.Generator().manual_seed(2))
    out = m.generate(x, max_new_tokens=12, num_beams=4, num_return_sequences=4, length_penalty=0.0)
    assert (out[:, 6:] == EOS).any(1).any()  # the parity test above covers finished hypotheses


def test_beam_search_with_padding_and_processors_equals_transformers(tiny):
    hf, m = tiny
    rows = prompts(3, seed=3)
    ids, mask = hf_batch(rows)
    kw = dict(max_new_tokens=10, num_beams=3, num_return_sequences=2, repetition_penalty=1.3,
              no_repeat_ngram_size=2)
    ref = hf.generate(ids, attention_mask=mask, do_sample=False, **kw)
    assert torch.equal(m.generate(ids, attention_mask=mask, **kw), ref)
    assert torch.equal(m.generate(rows, **kw), ref)


@pytest.mark.parametrize("kw", [dict(repetition_penalty=1.5), dict(repetition_penalty=0.7),
                                dict(no_repeat_ngram_size=2), dict(no_repeat_ngram_size=1),
                                dict(repetition_penalty=1.2, no_repeat_ngram_size=3)])
def test_greedy_processors_equal_transformers(tiny, kw):
    hf, m = tiny
    x = torch.randint(0, 256, (3, 6), generator=torch.Generator().manual_seed(4))
    ref = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=15, do_sample=False, **kw)
    assert torch.equal(m.generate(x, max_new_tokens=15, **kw), ref)
    if kw.get("no_repeat_ngram_size") == 1:
        return  # transformers counts left padding as tokens here (it bans the pad id); gptkit does not
    rows = prompts(4, seed=4)
    ids, mask = hf_batch(rows)
    ref = hf.generate(ids, attention_mask=mask, max_new_tokens=15, do_sample=False, **kw)
    assert torch.equal(m.generate(ids, attention_mask=mask, max_new_tokens=15, **kw), ref)


def test_no_repeat_ngram_bans():
    assert banned_ngram_tokens([1, 2, 3, 1, 2], 3) == [3]
    assert banned_ngram_tokens([1, 2, 1, 2, 1], 2) == [2, 2]
    assert banned_ngram_tokens([5, 6], 3) == []
    assert sorted(banned_ngram_tokens([4, 5, 4], 1)) == [4, 4, 5]


def test_top_k_1_sampling_equals_greedy(tiny):
    _, m = tiny
    rows = prompts(4, seed=5)
    greedy = m.generate(rows, max_new_tokens=20)
    assert torch.equal(m.generate(rows, max_new_tokens=20, do_sample=True, top_k=1, seed=123), greedy)
    assert torch.equal(m.generate(rows, max_new_tokens=20, do_sample=True, top_k=1, temperature=3.0), greedy)


def test_batched_beam_search_equals_one_by_one(tiny):
    _, m = tiny
    rows = prompts(3, seed=6)
    batched = m.generate(rows, max_new_tokens=10, num_beams=4)
    T = max(map(len, rows))
    for i, r in enumerate(rows):
        alone = m.generate([r], max_new_tokens=10, num_beams=4)[0, len(r):]
        new = batched[i, T:]
        assert torch.equal(new[: alone.numel()], alone) and (new[alone.numel():] == EOS).all()


@pytest.mark.slow
def test_gpt2_124m_shape_greedy_and_beams_equal_transformers(tmp_path):
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config()).eval()  # 124M, random weights: nothing is downloaded
    hf.save_pretrained(tmp_path)
    m = load_model(tmp_path)
    x = torch.randint(0, 50257, (1, 12), generator=torch.Generator().manual_seed(0))
    ref = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=8, do_sample=False)
    assert torch.equal(m.generate(x, max_new_tokens=8), ref)
    kw = dict(max_new_tokens=4, num_beams=4, num_return_sequences=2)
    ref = hf.generate(x, attention_mask=torch.ones_like(x), do_sample=False, **kw)
    assert torch.equal(m.generate(x, **kw), ref)


# ---------------------------------------------------------------------------- sampling statistics

def filtered_distribution(logits, temperature=1.0, top_k=0, top_p=1.0, min_p=None):
    """The next-token distribution after the warpers, computed independently in float64 numpy."""
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    keep = np.ones_like(p, dtype=bool)
    order = np.argsort(-p, kind="stable")
    if top_k:
        keep &= p >= p[order[top_k - 1]]
    if top_p < 1.0:
        q = np.where(keep, p, 0)
        q /= q.sum()
        by = np.argsort(q, kind="stable")  # ascending: drop the low tail holding <= 1 - top_p
        tail = np.cumsum(q[by]) <= 1 - top_p
        tail[-1] = False
        keep[by[tail]] = False
    if min_p is not None:
        q = np.where(keep, p, 0)
        q /= q.sum()
        keep &= q >= min_p * q.max()
    out = np.where(keep, p, 0)
    return out / out.sum()


@pytest.mark.parametrize("kw", [dict(temperature=1.0, top_k=0), dict(temperature=0.7, top_k=0),
                                dict(temperature=1.3, top_k=12), dict(top_k=0, top_p=0.6),
                                dict(temperature=0.8, top_k=40, top_p=0.9), dict(top_k=0, min_p=0.2)])
def test_sampling_matches_the_filtered_distribution(tiny, kw):
    _, m = tiny
    prompt = [32, 116, 104, 101]  # ' the': a spread-out next-token distribution
    with torch.no_grad():
        logits = m(torch.tensor([prompt]))[0, -1].double().numpy()
    expected = filtered_distribution(logits, **{k: v for k, v in kw.items()})
    n = 20000
    out = generate(m, [prompt], max_new_tokens=1, do_sample=True, num_return_sequences=n, seed=1234, **kw)
    counts = np.bincount(out[:, -1].numpy(), minlength=expected.size)
    assert counts[expected == 0].sum() == 0, "a filtered token was sampled"
    kept = np.flatnonzero(expected > 0)
    assert kept.size >= 2
    exp = expected[kept] * n
    obs = counts[kept].astype(np.float64)
    big = exp >= 5  # pool the rare tokens into one bin, as the chi-square test requires
    exp_b = np.append(exp[big], exp[~big].sum()) if (~big).any() else exp
    obs_b = np.append(obs[big], obs[~big].sum()) if (~big).any() else obs
    chi2, p = stats.chisquare(obs_b, exp_b)
    assert p > 1e-3, (kw, chi2, p, exp_b.size)


def test_sampling_detects_a_wrong_distribution(tiny):
    """The statistical test has teeth: the same draws fail against temperature 1.3's distribution."""
    _, m = tiny
    prompt = [32, 116, 104, 101]  # ' the': a spread-out next-token distribution
    with torch.no_grad():
        logits = m(torch.tensor([prompt]))[0, -1].double().numpy()
    wrong = filtered_distribution(logits, temperature=1.3)
    out = generate(m, [prompt], max_new_tokens=1, do_sample=True, top_k=0, num_return_sequences=20000, seed=1234)
    counts = np.bincount(out[:, -1].numpy(), minlength=wrong.size)
    big = wrong * 20000 >= 5
    exp = np.append(wrong[big] * 20000, wrong[~big].sum() * 20000)
    obs = np.append(counts[big], counts[~big].sum()).astype(np.float64)
    assert stats.chisquare(obs, exp)[1] < 1e-6


def test_seed_makes_sampling_reproducible(tiny):
    _, m = tiny
    rows = prompts(3, seed=7)
    a = m.generate(rows, max_new_tokens=15, do_sample=True, seed=5)
    assert torch.equal(a, m.generate(rows, max_new_tokens=15, do_sample=True, seed=5))
    assert not torch.equal(a, m.generate(rows, max_new_tokens=15, do_sample=True, seed=6))
    torch.manual_seed(0)  # without seed=, torch's global generator decides (as in transformers)
    b = m.generate(rows, max_new_tokens=15, do_sample=True)
    torch.manual_seed(0)
    assert torch.equal(b, m.generate(rows, max_new_tokens=15, do_sample=True))


def test_num_return_sequences_with_sampling_and_beams(tiny):
    _, m = tiny
    out = m.generate(prompts(2, lo=4, hi=4), max_new_tokens=6, do_sample=True, num_return_sequences=3, seed=0)
    assert out.shape == (6, 10)
    beams = m.generate(prompts(2, lo=4, hi=4), max_new_tokens=6, do_sample=True, num_beams=3,
                       num_return_sequences=2, seed=0)  # beam sampling
    assert beams.shape[0] == 4


# ---------------------------------------------------------------------------- errors and context

@pytest.mark.parametrize("kw,needle", [
    (dict(num_return_sequences=2), "needs do_sample=True or num_beams > 1"),
    (dict(num_beams=2, num_return_sequences=3), "must be <= num_beams"),
    (dict(do_sample=True, temperature=0.0), "temperature must be > 0"),
    (dict(top_p=0.0), "top_p must be in (0, 1]"),
    (dict(min_p=1.5), "min_p must be in [0, 1]"),
    (dict(repetition_penalty=0.0), "repetition_penalty must be > 0"),
    (dict(early_stopping="sometimes"), "early_stopping must be"),
    (dict(max_new_tokens=64), "must be smaller than the model's context"),
    (dict(context="wrap"), "context must be"),
])
def test_bad_options_are_clear_errors(tiny, kw, needle):
    _, m = tiny
    with pytest.raises(GptkitError) as e:
        m.generate([[1, 2, 3]], **kw)
    assert needle in str(e.value)


def test_bad_inputs_are_clear_errors(tiny, tmp_path):
    _, m = tiny
    build(tmp_path, tokenizer=False)
    with pytest.raises(GptkitError, match="needs a tokenizer"):
        load_model(tmp_path).generate([1, 2, 3], stop=["ok"])
    with pytest.raises(GptkitError, match="outside the model's vocabulary"):
        m.generate([[1, 2, 999]])
    with pytest.raises(GptkitError, match="left padding"):
        m.generate(torch.tensor([[1, 2, 3]]), attention_mask=torch.tensor([[1, 1, 0]]))
    with pytest.raises(GptkitError, match="empty"):
        m.generate(torch.zeros(1, 0, dtype=torch.long))


def test_context_rule_error_or_truncate_from_the_left(tiny):
    _, m = tiny
    long = list(range(1, 61))  # 60 tokens + 10 new > 64
    with pytest.raises(GptkitError, match="exceeds the model's context of 64 tokens"):
        m.generate([long], max_new_tokens=10)
    with pytest.warns(UserWarning, match="keeping only the last 54 prompt tokens"):
        out = m.generate([long], max_new_tokens=10, context="truncate")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = m.generate([long[-54:]], max_new_tokens=10)
    assert torch.equal(out, ref) and out.shape[1] <= 64
    with pytest.warns(UserWarning):  # ragged batch: each row keeps its own last tokens
        out = m.generate([long, long[-20:]], max_new_tokens=10, context="truncate")
    short = m.generate([long[-20:]], max_new_tokens=10)[0, 20:]
    assert torch.equal(out[1, 54:54 + short.numel()], short)


# ---------------------------------------------------------------------------- text: stop strings, streaming

class Script(torch.nn.Module):
    """An output layer that makes the model emit a fixed byte script (then end-of-text)."""

    def __init__(self, data: bytes, vocab=257):
        super().__init__()
        self.ids, self.vocab, self.calls = list(data) + [EOS], vocab, 0

    def forward(self, h):
        t = self.ids[min(self.calls, len(self.ids) - 1)]
        self.calls += 1
        out = torch.full((*h.shape[:-1], self.vocab), -10.0)
        out[..., t] = 10.0
        return out


@pytest.fixture()
def scripted(tiny):
    _, m = tiny
    original = m.lm_head

    def use(text: str):
        m.lm_head = Script(text.encode())
        return m
    yield use
    m.lm_head = original


def test_stream_never_splits_a_multibyte_character(scripted):
    text = "naïve café: 日本語 😀!"
    m = scripted(text)
    pieces = list(stream(m, "x", max_new_tokens=60))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert len(pieces) > 5  # yielded as produced, not at the end
    m = scripted(text)
    assert "".join(m.stream("x", max_new_tokens=60)) == text  # the model's own method


def test_stop_strings_are_cut_from_text_and_end_generation(scripted):
    m = scripted("Hello, world!\n\nBye now")
    assert "".join(stream(m, "x", max_new_tokens=40, stop=["\n\n"])) == "Hello, world!"
    m = scripted("Hello, world!\n\nBye now")
    r = generate_text(m, m.tokenizer, "x", max_new_tokens=40, stop=["\n\n", "wor"])[0]
    assert r["text"] == "Hello, " and r["finish_reason"] == "stop"
    assert bytes(r["token_ids"]).decode() == "Hello, "
    m = scripted("Hello, world!\n\nBye now")
    ids = m.generate(m.tokenizer.encode("x"), max_new_tokens=40, stop="\n\n")
    assert bytes(ids[0, 1:].tolist()).decode() == "Hello, world!\n\n"  # ids keep the completing token
    m = scripted("Hello")
    r = generate_text(m, m.tokenizer, "x", max_new_tokens=40)[0]
    assert r["text"] == "Hello" and r["finish_reason"] == "eos"
    m = scripted("Hello")
    r = generate_text(m, m.tokenizer, "x", max_new_tokens=3)[0]
    assert r["text"] == "Hel" and r["finish_reason"] == "length"


def test_stop_strings_stop_each_row_of_a_batch(tiny):
    _, m = tiny
    tok = m.tokenizer
    texts = ["The cat", "A", "Zebra crossing"]
    free = generate_text(m, tok, texts, max_new_tokens=30, do_sample=False)
    longest = max(range(len(texts)), key=lambda i: len(free[i]["text"]))
    needle = free[longest]["text"][6:8]  # a stop string from the middle of one row's free text
    assert needle
    got = generate_text(m, tok, texts, max_new_tokens=30, do_sample=False, stop=[needle])
    for f, g in zip(free, got):
        i = f["text"].find(needle)
        if i >= 0:
            assert g["text"] == f["text"][:i] and g["finish_reason"] == "stop"
        else:
            assert g == f
    assert got[longest]["finish_reason"] == "stop"


def test_stop_strings_end_beam_hypotheses(tiny):
    _, m = tiny
    kw = dict(max_new_tokens=20, num_beams=3, num_return_sequences=3, length_penalty=0.0)
    free = generate_text(m, m.tokenizer, "The cat", **kw)
    needle = free[0]["text"][4:6]
    got = generate_text(m, m.tokenizer, "The cat", stop=[needle], **kw)
    assert all(needle not in g["text"] for g in got)
    assert any(g["finish_reason"] == "stop" for g in got)


def test_stream_equals_generate_text(tiny):
    _, m = tiny
    streamed = "".join(stream(m, "Hello", max_new_tokens=30, do_sample=True, seed=3, top_p=0.9))
    r = generate_text(m, m.tokenizer, "Hello", max_new_tokens=30, do_sample=True, seed=3, top_p=0.9)[0]
    assert streamed == r["text"]
