"""The training recipe's pieces in a real run: the time-budget schedule (and its resume), a
larger budget on resume said out loud, models saved in Llama's layout, Muon, TensorBoard, and
every new option refused before the first step when it cannot work."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gptkit.errors import GptkitError
from gptkit.hf import load_model
from gptkit.rundir import read_metrics
from gptkit.train import TrainConfig, model_config, train
from gptkit.train import loop as loop_module

LLAMA = dict(position_embedding="rope", norm="rmsnorm", mlp="swiglu", bias=False)


def small_cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), preset="tiny", block_size=32, batch_size=8, max_iters=20,
                lr=3e-3, warmup_iters=2, eval_interval=5, eval_iters=2, log_interval=1, progress=False,
                dtype="float32", seed=7, tensorboard=False)
    return TrainConfig(**{**base, **kw})


def rows(out: Path, kind: str = "train") -> list[dict]:
    return [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == kind]


@pytest.fixture
def fake_clock(monkeypatch):
    """Each training step takes exactly 0.5 s of 'wall time': the time budget becomes exact."""
    now = [0.0]
    real_step = loop_module.train_step

    def step(*a, **kw):
        now[0] += 0.5
        return real_step(*a, **kw)
    monkeypatch.setattr(loop_module, "train_step", step)
    monkeypatch.setattr(loop_module, "_clock", lambda: now[0])
    return now


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_time_budget_schedule_completes_and_resume_continues_the_same_curve(byte_data, tmp_path, fake_clock,
                                                                          schedule):
    kw = dict(max_iters=10_000, max_minutes=12 / 60, schedule=schedule, cooldown=0.5)  # 12 s = 24 steps
    full = train(small_cfg(byte_data, tmp_path / "full", **kw))
    assert full.stopped_by == "max_minutes" and full.step == 24
    lrs = [r["lr"] for r in rows(tmp_path / "full")]
    assert max(lrs) == pytest.approx(3e-3, rel=0.05) and lrs[-1] == pytest.approx(3e-4, rel=0.1)  # decayed in time
    # the same run stopped after its eval at step 10 (as a kill would), then resumed
    fake_clock[0] = 0.0
    stopped = train(small_cfg(byte_data, tmp_path / "split", **kw), on_eval=lambda step, val, p: step == 10)
    assert stopped.step == 10 and stopped.stopped_by == "on_eval"
    fake_clock[0] = 1000.0  # wall time passes between the runs: it does not count
    train(small_cfg(byte_data, tmp_path / "split", resume=True, **kw))
    a, b = rows(tmp_path / "full"), rows(tmp_path / "split")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert [r["lr"] for r in b] == pytest.approx([r["lr"] for r in a], rel=1e-12)
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], abs=1e-5)


def test_resume_with_a_larger_max_iters_says_what_the_schedule_does(byte_data, tmp_path):
    base = [sys.executable, "-m", "gptkit", "train", "--data", str(byte_data), "--out", str(tmp_path / "r"),
            "--preset", "tiny", "--block-size", "32", "--batch-size", "4", "--eval-interval", "10",
            "--eval-iters", "1", "--log-interval", "1", "--dtype", "float32", "--samples", "0", "-q",
            "--warmup-iters", "2", "--no-tensorboard"]
    subprocess.run(base + ["--max-iters", "10"], check=True, capture_output=True)
    p = subprocess.run(base + ["--max-iters", "20", "--resume"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "resumed from step 10" in p.stderr and "keeps its horizon of 10 steps" in p.stderr
    lrs = {r["step"]: r["lr"] for r in rows(tmp_path / "r")}
    assert lrs[11] == pytest.approx(3e-4) and all(lrs[s] == lrs[11] for s in range(12, 21))  # old horizon: min_lr
    assert lrs[11] <= lrs[10]  # no jump
    p = subprocess.run(base + ["--max-iters", "30", "--resume", "--extend", "rewarm"], capture_output=True, text=True)
    assert p.returncode == 0 and "re-warming" in p.stderr
    lrs = {r["step"]: r["lr"] for r in rows(tmp_path / "r")}
    assert lrs[21] < lrs[23] and max(lrs[s] for s in range(21, 31)) == pytest.approx(3e-3, rel=0.05)


def test_llama_options_train_save_in_llama_layout_and_resume(byte_data, tmp_path):
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "llama"
    train(small_cfg(byte_data, out, max_iters=10, lr_decay_iters=20, qk_norm=True, tie_word_embeddings=False,
                    zero_init=True, optimizer="muon", **LLAMA))
    train(small_cfg(byte_data, out, max_iters=20, resume=True, qk_norm=True, tie_word_embeddings=False,
                    zero_init=True, optimizer="muon", **LLAMA))
    ref = tmp_path / "ref"
    train(small_cfg(byte_data, ref, max_iters=20, qk_norm=True, tie_word_embeddings=False, zero_init=True,
                    optimizer="muon", **LLAMA))
    assert [r["loss"] for r in rows(out)] == pytest.approx([r["loss"] for r in rows(ref)], abs=1e-5)  # Muon resumes
    ours = load_model(out)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(theirs).__name__ == "Qwen3ForCausalLM"
    x = torch.randint(0, 257, (2, 32))
    with torch.no_grad():
        assert (ours(x) - theirs(x).logits).abs().max() <= 1e-4


def test_tensorboard_event_files(byte_data, tmp_path):
    train(small_cfg(byte_data, tmp_path / "tb", max_iters=5, tensorboard=True))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tmp_path / "tb" / "tb"))
    acc.Reload()
    assert {"train/loss", "train/lr", "val/loss", "val/bits_per_byte"} <= set(acc.Tags()["scalars"])
    assert len(acc.Scalars("train/loss")) == 5


@pytest.mark.parametrize("kw, words", [
    (dict(position_embedding="rope"), "no transformers equivalent"),
    (dict(norm="rmsnorm"), "learned position embeddings with rmsnorm"),
    (dict(LLAMA, logit_softcap=30.0), "logit_softcap"),
    (dict(LLAMA, qk_norm=True, bias=True), "qk_norm with biases"),
    (dict(mlp="geglu"), "unknown --mlp"),
    (dict(schedule="linear"), "unknown --schedule"),
    (dict(optimizer="sgd"), "unknown --optimizer"),
    (dict(muon_lr=0.02), "--optimizer is not muon"),
    (dict(cooldown=0.0), "cooldown"),
    (dict(rope_theta=float("nan")), "rope_theta"),
    (dict(min_lr=1.0), "--min-lr"),
    (dict(preset="cpu-1min"), "unknown preset"),
])
def test_every_new_option_is_checked_before_the_first_step(byte_data, tmp_path, kw, words, monkeypatch):
    def no_step(*a, **k):
        raise AssertionError("a training step ran")
    monkeypatch.setattr(loop_module, "train_step", no_step)
    with pytest.raises(GptkitError, match=words):
        train(small_cfg(byte_data, tmp_path / "bad", **kw))
    assert not (tmp_path / "bad").exists()


def test_budget_recipe_fills_only_what_is_not_given():
    cfg = TrainConfig.from_dict({"preset": "cpu-10min", "lr": 1e-3})
    assert cfg.lr == 1e-3 and cfg.max_minutes == 10 and cfg.position_embedding == "rope"
    api = TrainConfig(preset="cpu-10min", n_layer=2).apply_recipe()
    assert api.n_layer == 2 and api.gated_mlp and api.activation_function == "silu"


def test_a_recipes_derived_parts_yield_to_the_flags_given():
    adamw = TrainConfig.from_dict({"preset": "cpu-10min", "optimizer": "adamw"})
    adamw.validate()  # the recipe's muon_lr is Muon's: it goes with --optimizer adamw
    assert adamw.optimizer == "adamw" and adamw.muon_lr is None and adamw.n_layer == 6 and adamw.lr == 3e-3
    with pytest.raises(GptkitError, match="--optimizer is not muon"):  # one the user gave still counts
        TrainConfig.from_dict({"preset": "cpu-10min", "optimizer": "adamw", "muon_lr": 0.02}).validate()
    longer = TrainConfig.from_dict({"preset": "cpu-10min", "block_size": 512})
    longer.validate()  # the recipe's context grows to the block asked for
    assert longer.n_positions == 512
    assert TrainConfig.from_dict({"preset": "cpu-10min", "block_size": 64}).n_positions == 128
    api = TrainConfig(preset="cpu-10min", block_size=512).apply_recipe()
    assert api.n_positions == 512 and api.muon_lr == 0.02
    gelu = TrainConfig.from_dict({"preset": "cpu-10min", "mlp": "gelu"})
    gelu.validate()  # the recipe's SwiGLU yields to the --mlp shorthand, not only to its own fields
    assert not model_config(gelu, 257, 256).gated_mlp
