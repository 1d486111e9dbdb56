"""The batched, context-sharing scorer against one plain forward pass per request."""
from __future__ import annotations

import random

import pytest
import torch

from gptkit import GPT, GPTConfig, GptkitError
from gptkit.evals import loglikelihood


def _reference(model, ctx, cont):
    """Summed log p(continuation | context) from one unbatched forward pass over the whole sequence."""
    seq = torch.tensor([list(ctx) + list(cont)])
    with torch.no_grad():
        logp = torch.log_softmax(model(seq[:, :-1]).float(), -1)[0, len(ctx) - 1:]
    tgt = torch.tensor(cont)
    return float(logp.gather(-1, tgt[:, None]).sum()), bool((logp.argmax(-1) == tgt).all())


def _model(**kw):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=97, n_positions=48, n_embd=32, n_layer=2, n_head=4, **kw)
    model = GPT(cfg).eval()
    with torch.no_grad():  # a wide init: peaked distributions, so that some continuations are greedy
        for p in model.parameters():
            p.mul_(8.0 if p.dim() == 2 else 1.0)
    return model


def _requests(model, n_questions=12, seed=0):
    """Questions of varied lengths, each with 1-5 continuations (some of one token, one greedy)."""
    rng = random.Random(seed)
    reqs = []
    for _ in range(n_questions):
        ctx = [rng.randrange(97) for _ in range(rng.randint(1, 20))]
        for _ in range(rng.randint(1, 5)):
            reqs.append((ctx, [rng.randrange(97) for _ in range(rng.randint(1, 12))]))
        greedy = model.generate(torch.tensor([ctx]), max_new_tokens=3, do_sample=False)[0, len(ctx):].tolist()
        reqs.append((ctx, greedy))
    rng.shuffle(reqs)
    return reqs


@pytest.mark.parametrize("kw", [{}, dict(position_embedding="rope", norm="rmsnorm", gated_mlp=True,
                                         activation_function="silu", tie_word_embeddings=False)],
                         ids=["gpt2", "llama"])
@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_matches_one_pass_per_request(kw, batch_size):
    model = _model(**kw)
    reqs = _requests(model)
    got = loglikelihood(model, reqs, batch_size=batch_size)
    assert len(got) == len(reqs)
    greedy = 0
    for (ctx, cont), r in zip(reqs, got):
        lp, is_greedy = _reference(model, ctx, cont)
        assert r.logprob == pytest.approx(lp, abs=1e-5, rel=1e-6)
        assert r.num_tokens == len(cont)
        assert r.is_greedy == is_greedy
        greedy += is_greedy
    assert 0 < greedy < len(reqs)  # both outcomes were exercised


def test_request_at_the_models_context_limit():
    model = _model()
    ctx, cont = list(range(40)), list(range(9))  # 48 fed tokens: exactly n_positions
    other = ([5], list(range(30)))  # batched beside it: padding must not push positions past the limit
    got = loglikelihood(model, [(ctx, cont), other], batch_size=8)
    assert got[0].logprob == pytest.approx(_reference(model, ctx, cont)[0], abs=1e-5)
    assert got[1].logprob == pytest.approx(_reference(model, *other)[0], abs=1e-5)


def test_context_runs_once_for_its_continuations(monkeypatch):
    model = _model()
    fed = []
    orig = model.hidden_states
    monkeypatch.setattr(model, "hidden_states", lambda ids, *a, **k: fed.append(ids.numel()) or orig(ids, *a, **k))
    ctx = list(range(20))
    loglikelihood(model, [(ctx, [1, 2, 3]), (ctx, [4, 5]), (ctx, [6, 7, 8])], batch_size=8)
    assert fed == [20, 3 * 2]  # the context once, then the continuations without their last token


@pytest.mark.parametrize("req, msg", [
    (([], [1]), "empty context"),
    (([1], []), "empty continuation"),
    ((list(range(46)), [1, 2, 3, 4]), "needs 49 tokens of context .* model's context is 48"),
    (([1, 200], [1]), "token id 200, outside"),
])
def test_bad_requests_are_one_clear_error(req, msg):
    with pytest.raises(GptkitError, match=msg):
        loglikelihood(_model(), [([1], [2]), req])
