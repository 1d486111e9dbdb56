"""Budget-aware learning-rate schedules: GPT-2's cosine exactly on iterations, completion inside
a time budget, and what a resumed run with a larger budget does."""
from __future__ import annotations

import math

import pytest

from gptkit.errors import GptkitError
from gptkit.train.schedule import Schedule, extend


def _gpt2_cosine(it, lr, min_lr, warmup, decay):  # the schedule gptkit always had (nanoGPT's)
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it >= decay:
        return min_lr
    ratio = (it - warmup) / max(1, decay - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def test_iteration_cosine_is_gpt2s_schedule():
    s = Schedule(kind="cosine", lr=3e-3, min_lr=3e-4, warmup_iters=30, horizon_iters=600)
    for it in range(700):
        assert s.lr_at(it) == pytest.approx(_gpt2_cosine(it, 3e-3, 3e-4, 30, 600), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("kind", ["cosine", "wsd"])
def test_time_budget_completes_warmup_and_decay(kind):
    budget, step_s = 60.0, 0.05  # 1200 steps fit
    s = Schedule(kind=kind, lr=1e-3, min_lr=1e-4, warmup_iters=20, horizon_iters=None, budget_s=budget)
    lrs = [s.lr_at(it, it * step_s) for it in range(int(budget / step_s) + 1)]
    assert max(lrs) == pytest.approx(1e-3, rel=1e-3)
    assert lrs[5] < lrs[19] < 1e-3  # warming up
    assert lrs[-1] == pytest.approx(1e-4)  # decayed by the end of the budget
    assert lrs[int(0.75 * len(lrs))] < 1e-3 * 0.9 or kind == "wsd"
    if kind == "wsd":
        assert lrs[len(lrs) // 2] == 1e-3  # flat in the middle
        assert lrs[int(0.9 * len(lrs))] < 1e-3
    assert all(b <= a + 1e-15 for a, b in zip(lrs[25:], lrs[26:]))  # monotone after warm-up


def test_iterations_and_minutes_together_follow_whichever_ends_first():
    s = Schedule(lr=1e-3, min_lr=0.0, warmup_iters=0, horizon_iters=1000, budget_s=10.0)
    assert s.progress(100, 5.0) == 0.5  # time is the tighter budget
    assert s.progress(800, 5.0) == 0.8  # iterations are
    assert s.lr_at(100, 10.0) == 0.0


def test_resume_state_round_trips():
    s = Schedule(kind="wsd", lr=1e-3, min_lr=1e-4, warmup_iters=10, horizon_iters=None, budget_s=100.0)
    for it in range(50):
        s.lr_at(it, it * 0.5)
    t = Schedule.from_state(s.state())
    assert [t.lr_at(it, it * 0.5) for it in range(50, 300)] == [s.lr_at(it, it * 0.5) for it in range(50, 300)]


def test_extend_cosine_keeps_the_old_horizon_by_default_and_says_so():
    old = Schedule(lr=1e-3, min_lr=1e-4, warmup_iters=10, horizon_iters=2000)
    for it in range(300):
        before = old.lr_at(it)
    new = Schedule(lr=1e-3, min_lr=1e-4, warmup_iters=10, horizon_iters=4000)
    s, msg = extend(old, new, 300, 0.0)
    assert "keeps its horizon of 2000 steps" in msg and "--extend" in msg
    assert s.lr_at(300) == pytest.approx(old.lr_at(300)) and abs(s.lr_at(300) - before) < 2e-6
    assert s.lr_at(2500) == 1e-4
    s, msg = extend(old, new, 300, 0.0, "stretch")
    assert "stretched" in msg and s.lr_at(300) > old.lr_at(300)  # the jump the user asked for
    s, msg = extend(old, new, 300, 0.0, "rewarm")
    assert "re-warming" in msg and s.lr_at(300) < 1e-4 and s.lr_at(310) == pytest.approx(1e-3)
    assert s.lr_at(3999) < 1.01e-4


def test_extend_wsd_before_its_cooldown_just_lengthens_the_flat_part():
    old = Schedule(kind="wsd", lr=1e-3, min_lr=1e-4, warmup_iters=10, horizon_iters=2000, cooldown=0.2)
    for it in range(1000):
        old.lr_at(it)
    new = Schedule(kind="wsd", lr=1e-3, min_lr=1e-4, warmup_iters=10, horizon_iters=4000, cooldown=0.2)
    s, msg = extend(old, new, 1000, 0.0)
    assert "stretched" in msg
    assert s.lr_at(1000) == 1e-3 and s.lr_at(3000) == 1e-3 and s.lr_at(3999) < 1.1e-4
    same, msg = extend(old, Schedule.from_state(old.state()), 1000, 0.0)
    assert "continues exactly" in msg


@pytest.mark.parametrize("kw, words", [
    (dict(kind="step"), "--schedule"), (dict(lr=float("nan")), "--lr"), (dict(lr=1e-3, min_lr=1e-2), "--min-lr"),
    (dict(cooldown=0.0), "--cooldown"), (dict(horizon_iters=None, budget_s=None), "budget"),
])
def test_bad_schedules_are_refused(kw, words):
    with pytest.raises(GptkitError, match=words):
        Schedule(**{"lr": 1e-3, "min_lr": 1e-4, **kw})
    with pytest.raises(GptkitError, match="--extend"):
        extend(Schedule(), Schedule(), 0, 0.0, "sideways")
