"""gptkit.speculative.verify: greedy acceptance, and rejection sampling that keeps p exactly."""
import torch
from scipy.stats import chisquare

from gptkit.speculative import accept_greedy, accept_sampled


def test_greedy_keeps_the_agreeing_prefix_then_the_targets_token():
    logits = torch.full((4, 5), -1.0)
    for j, t in enumerate([2, 3, 1, 4]):
        logits[j, t] = 1.0
    assert accept_greedy([2, 3, 0], logits) == (2, 1)
    assert accept_greedy([2, 3, 1], logits) == (3, 4)
    assert accept_greedy([0], logits[:2]) == (0, 2)
    assert accept_greedy([], logits[:1]) == (0, 2)


def _first_token_frequencies(p, q, drafts_from_q, trials, seed=0):
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(p.size(1))
    for _ in range(trials):
        if drafts_from_q:
            x = int(torch.multinomial(q[0], 1, generator=g))
            n, nxt = accept_sampled([x], q, p, g)
        else:  # a deterministic (n-gram) guess: always token 1
            n, nxt = accept_sampled([1], None, p, g)
            x = 1
        counts[x if n == 1 else nxt] += 1
    return counts


def test_the_first_emitted_token_is_distributed_as_p():
    """Whatever q drafts from, the token emitted at the draft's position follows p (chi-square)."""
    p = torch.tensor([[0.1, 0.4, 0.2, 0.3], [0.25, 0.25, 0.25, 0.25]])
    q = torch.tensor([[0.5, 0.1, 0.3, 0.1]])
    trials = 6000
    for from_q in (True, False):
        counts = _first_token_frequencies(p, q, from_q, trials)
        stat = chisquare(counts.numpy(), (p[0] * trials).numpy())
        assert stat.pvalue > 1e-3, (from_q, counts, stat)


def test_a_draft_equal_to_p_is_always_kept_and_the_bonus_follows_p():
    p = torch.tensor([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    g = torch.Generator().manual_seed(1)
    bonus = torch.zeros(3)
    for _ in range(3000):
        n, nxt = accept_sampled([1], p[:1], p, g)
        assert n == 1
        bonus[nxt] += 1
    assert chisquare(bonus.numpy(), (p[1] * 3000).numpy()).pvalue > 1e-3
