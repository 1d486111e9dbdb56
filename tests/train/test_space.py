"""The sweep's search space (gptkit/train/space.py): every bad dimension refused before trial 1,
naming its key; the built-in space leaves alone what the user fixed; suggestions by option type."""
from __future__ import annotations

import pytest

from gptkit.errors import GptkitError
from gptkit.train.space import DEFAULT_SPACE, check_space, load_space, suggest

optuna = pytest.importorskip("optuna")

BAD = [
    ("neg-lr", "[lr]\nlow = -1e-3\nhigh = 1e-2\n", r"lr = -0\.001 cannot train.*lr must be > 0"),
    ("frac-layers", "[n_layer]\nlow = 1.5\nhigh = 4\n", r"n_layer is a whole number: low = 1\.5"),
    ("unknown-mlp", '[mlp]\nchoices = ["gelu", "nope"]\n', r"mlp = 'nope' cannot train"),
    ("swiglu-default", '[mlp]\nchoices = ["gelu", "swiglu"]\n', r"mlp = 'swiglu' cannot train"),
    ("empty", "", r"the space is empty"),
    ("empty-dim", "[lr]\n", r"lr needs choices"),
    ("empty-choices", "[lr]\nchoices = []\n", r"lr: choices must be a non-empty list"),
    ("unknown-option", "[learning_rate]\nchoices = [1]\n", r"learning_rate is not a training option"),
    ("unknown-key", '[lr]\nlow = 1e-3\nhigh = 1e-2\nscale = "log"\n', r"lr: unknown key\(s\) scale"),
    ("choices-and-range", "[lr]\nchoices = [1e-3]\nlow = 1e-3\nhigh = 1e-2\n", r"lr: choices cannot be given together"),
    ("inf-log", "[lr]\nlow = 1e-3\nhigh = inf\nlog = true\n", r"lr: high must be a finite number"),
    ("low-above-high", "[lr]\nlow = 1e-2\nhigh = 1e-3\n", r"lr: low .* must be below high"),
    ("log-zero", "[warmup_iters]\nlow = 0\nhigh = 10\nlog = true\n", r"log = true needs low > 0"),
    ("range-of-text", "[mlp]\nlow = 1\nhigh = 2\n", r"mlp is not a number"),
    ("set-by-sweep", "[max_minutes]\nchoices = [1.0]\n", r"max_minutes cannot be searched"),
    ("fixed-by-a-flag", "[batch_size]\nchoices = [8, 16]\n", r"batch_size is searched, but the flags .* fix it to 4"),
    ("n-embd-vs-n-head", "[n_embd]\nchoices = [64, 65]\n", r"n_embd = 65 cannot train.*divisible"),
]


@pytest.mark.parametrize("text, pattern", [pytest.param(t, p, id=i) for i, t, p in BAD])
def test_a_bad_space_is_refused_naming_its_key(tmp_path, byte_data, text, pattern):
    path = tmp_path / "space.toml"
    path.write_text(text)
    base = {"data": str(byte_data), "preset": "tiny", "batch_size": 4, "max_minutes": 1.0}
    with pytest.raises(GptkitError, match=pattern) as e:
        space, _ = load_space(str(path), base)
        check_space(space, base, f"--space {path}")
    assert str(e.value).startswith(f"--space {path}")


def test_a_good_space_passes(tmp_path, byte_data):
    path = tmp_path / "space.toml"
    path.write_text('[lr]\nlow = 1e-3\nhigh = 1e-2\nlog = true\n[n_layer]\nlow = 1\nhigh = 3\n')
    base = {"data": str(byte_data), "preset": "tiny", "position_embedding": "rope", "norm": "rmsnorm", "mlp": "swiglu",
            "bias": False, "max_minutes": 1.0}
    space, fixed = load_space(str(path), base)
    check_space(space, base, "s")
    assert fixed == []


def test_the_built_in_space_leaves_the_users_flags_and_preset_alone():
    space, fixed = load_space(None, {"preset": "tiny", "batch_size": 4})
    assert set(space) == {"lr", "warmup_iters"}  # tiny fixes n_layer and n_embd, --batch-size the batch
    assert fixed == ["n_layer", "n_embd", "batch_size"]
    assert load_space(None, {})[0] == DEFAULT_SPACE
    with pytest.raises(GptkitError, match="nothing to search"):
        load_space(None, {k: 1 for k in DEFAULT_SPACE})


def test_suggestions_follow_the_option_type():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    p = suggest(trial, {"lr": {"low": 1, "high": 2}, "n_layer": {"low": 2, "high": 4}, "mlp": {"choices": ["gelu"]}})
    assert isinstance(p["lr"], float) and isinstance(p["n_layer"], int) and p["mlp"] == "gelu"
