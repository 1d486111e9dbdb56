import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gptkit.errors import GptkitError
from gptkit.hf import load_model
from gptkit.rundir import read_metrics
from gptkit.train import TrainConfig, lr_at, train, with_default_lr


def small_cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), preset="tiny", block_size=32, batch_size=8, max_iters=20,
                lr=3e-3, warmup_iters=2, eval_interval=10, eval_iters=4, log_interval=1, progress=False,
                dropout=0.1, dtype="float32", seed=7)
    return TrainConfig(**{**base, **kw})


def train_losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]


def test_lr_schedule_warmup_cosine_floor():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_iters=10, max_iters=110)
    lrs = [lr_at(i, cfg) for i in range(120)]
    assert lrs[0] < lrs[5] < lrs[9] < 1.0  # linear warm-up
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:110], lrs[11:111]))  # cosine decay is monotone
    assert lrs[60] == pytest.approx(0.55)  # halfway: (1 + 0.1) / 2
    assert lrs[115] == pytest.approx(0.1)


def test_default_lr_follows_the_preset_unless_given():
    assert with_default_lr(TrainConfig(preset="gpt2")).lr == 6e-4
    assert with_default_lr(TrainConfig(preset="mini")).lr == 3e-3
    assert with_default_lr(TrainConfig(init_from="gpt2")).lr == 1e-4  # fine-tuning: small steps
    assert with_default_lr(TrainConfig(preset="gpt2", lr=1e-3)).lr == 1e-3


def test_run_writes_hf_model_metrics_plot_and_learns(byte_data, tmp_path):
    res = train(small_cfg(byte_data, tmp_path / "run", max_iters=60, eval_interval=30, dropout=0.0))
    run = tmp_path / "run"
    for f in ("config.json", "model.safetensors", "vocab.json", "merges.txt", "metrics.jsonl", "loss.png",
              "train_config.json", "checkpoints/last/train_state.pt"):
        assert (run / f).exists(), f
    assert json.loads((run / "config.json").read_text())["model_type"] == "gpt2"
    losses = train_losses(run)
    assert losses[-1] < losses[0] - 1.0
    assert res.step == 60 and res.val["bits_per_byte"] < 8.0  # beats the 8 bits of raw bytes
    m = load_model(run)
    assert m.tokenizer is not None and m.config.vocab_size == 257
    assert len(list((run / "checkpoints").glob("step-*"))) == 1  # older checkpoints are pruned


def test_resume_continues_the_same_loss_curve(byte_data, tmp_path):
    train(small_cfg(byte_data, tmp_path / "full"))
    # Stop at step 10 (same schedule: lr_decay_iters pinned), then resume to 20.
    train(small_cfg(byte_data, tmp_path / "split", max_iters=10, lr_decay_iters=20))
    train(small_cfg(byte_data, tmp_path / "split", resume=True))
    full, split = train_losses(tmp_path / "full"), train_losses(tmp_path / "split")
    assert len(full) == len(split) == 20
    assert split == pytest.approx(full, abs=1e-5)
    a, b = load_model(tmp_path / "full"), load_model(tmp_path / "split")
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-5), n


@pytest.mark.slow
def test_sigkill_mid_training_resumes_from_last_checkpoint(byte_data, tmp_path):
    args = ["--data", str(byte_data), "--preset", "tiny", "--block-size", "32", "--batch-size", "8",
            "--max-iters", "400", "--lr", "3e-3", "--warmup-iters", "2", "--eval-interval", "20",
            "--eval-iters", "2", "--log-interval", "1", "--dtype", "float32", "--samples", "0", "-q"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "gptkit", "train", "--out", str(run), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = run / "checkpoints" / "last"
    deadline = time.time() + 120
    while time.time() < deadline and not (last.exists() and os.readlink(last) >= "step-00000040"):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), proc.stderr.read().decode()
    killed_at = int(os.readlink(last).split("-")[1])
    assert 0 < killed_at < 400
    # The interrupted run resumes; an uninterrupted twin runs to the same step.
    stop = killed_at + 20
    for out, extra in ((run, ["--resume"]), (tmp_path / "ref", [])):
        r = subprocess.run([sys.executable, "-m", "gptkit", "train", "--out", str(out), *args, *extra,
                            "--max-iters", str(stop), "--lr-decay-iters", "400"], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    assert train_losses(run) == pytest.approx(train_losses(tmp_path / "ref"), abs=1e-5)
    assert len(train_losses(run)) == stop


def test_bad_configs_are_clear_errors(byte_data, tmp_path):
    with pytest.raises(GptkitError, match="larger than the model's context"):
        train(small_cfg(byte_data, tmp_path / "a", block_size=1000))
    with pytest.raises(GptkitError, match="fewer than block_size"):
        train(small_cfg(byte_data, tmp_path / "b", block_size=100_000, n_positions=200_000))
    with pytest.raises(GptkitError, match="unknown preset"):
        train(small_cfg(byte_data, tmp_path / "c", preset="nope"))
    with pytest.raises(GptkitError, match="nothing to resume|no checkpoint"):
        train(small_cfg(byte_data, tmp_path / "d", resume=True))
    with pytest.raises(GptkitError, match="lr must be"):
        train(small_cfg(byte_data, tmp_path / "e", lr=0))
    train(small_cfg(byte_data, tmp_path / "f", max_iters=2, eval_interval=2))
    with pytest.raises(GptkitError, match="already holds a run"):
        train(small_cfg(byte_data, tmp_path / "f", max_iters=2))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_max_minutes_stops_and_saves(byte_data, tmp_path):
    res = train(small_cfg(byte_data, tmp_path / "t", max_iters=10**6, max_minutes=0.05, eval_interval=10**6))
    assert res.stopped_by == "max_minutes" and 0 < res.step < 10**6
    assert (tmp_path / "t" / "model.safetensors").exists()
    assert math.isfinite(res.val["loss"])


def test_banner_auto_precision_and_timestamped_metrics(byte_data, tmp_path, capsys):
    t0 = time.time()
    train(small_cfg(byte_data, tmp_path / "run", max_iters=4, eval_interval=4, dtype="auto", progress=True))
    err = capsys.readouterr().err
    for needle in ("parameters (preset tiny", "threads", "tokens/step (batch 8 x block 32 x accum 1)",
                   "M train tokens (", "epochs)", f"output    {tmp_path / 'run'}"):
        assert needle in err, needle
    ran = json.loads((tmp_path / "run" / "train_config.json").read_text())["dtype"]
    assert ran in ("float32", "bfloat16") and f", {ran} (auto" in err  # the pick, and why
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert all(t0 <= r["time"] <= time.time() for r in rows) and {r["kind"] for r in rows} == {"train", "eval"}
    # a resumed run keeps the precision its first part ran in
    train(small_cfg(byte_data, tmp_path / "run", max_iters=6, eval_interval=2, dtype="auto", resume=True,
                    progress=True))
    assert "auto: as the run being resumed" in capsys.readouterr().err


# A training process whose second checkpoint write stops at a chosen point (writes a marker, then
# waits to be killed): half-way through model.safetensors, or with the weights written but not
# the training state.
KILL_DURING_WRITE = r"""
import os, sys, time
from pathlib import Path
import gptkit.hf, gptkit.rundir
marker, where = Path(sys.argv[1]), sys.argv[2]
calls = {"n": 0}
real_save_file, real_save_state = gptkit.hf.save_file, gptkit.rundir.save_train_state

def hang():
    marker.write_text("writing")
    while True:
        time.sleep(1)

def save_file(sd, path, metadata=None):
    calls["n"] += 1
    if where == "weights" and calls["n"] == 2:
        real_save_file(sd, path, metadata=metadata)
        with open(path, "r+b") as f:  # leave it half-written, as a kill mid-write would
            f.truncate(os.path.getsize(path) // 2)
        hang()
    return real_save_file(sd, path, metadata=metadata)

def save_train_state(directory, state):
    if where == "state" and calls["n"] == 2:
        hang()
    return real_save_state(directory, state)

gptkit.hf.save_file, gptkit.rundir.save_train_state = save_file, save_train_state
from gptkit.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("where", ["weights", "state"])
def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one(byte_data, tmp_path, where):
    args = ["--data", str(byte_data), "--preset", "tiny", "--block-size", "32", "--batch-size", "8",
            "--max-iters", "40", "--lr", "3e-3", "--warmup-iters", "2", "--eval-interval", "10",
            "--eval-iters", "2", "--log-interval", "1", "--dtype", "float32", "--samples", "0", "-q"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run, marker = tmp_path / "run", tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, "-c", KILL_DURING_WRITE, str(marker), where, "train", "--out", str(run),
                             *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not marker.exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), proc.stderr.read().decode()[-2000:]
    last = run / "checkpoints" / "last"
    assert os.readlink(last) == "step-00000010"  # the checkpoint being written never became `last`
    assert list((run / "checkpoints").glob(".step-00000020*"))  # its half-written staging directory
    m = load_model(run)  # the top-level model is still the previous checkpoint's, whole
    assert torch.equal(m.transformer.wte.weight, load_model(last).transformer.wte.weight)
    # --resume continues from step 10 and follows an uninterrupted run exactly
    for out, extra in ((run, ["--resume"]), (tmp_path / "ref", [])):
        r = subprocess.run([sys.executable, "-m", "gptkit", "train", "--out", str(out), *args, *extra,
                            "--max-iters", "30", "--lr-decay-iters", "40"], env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    assert len(train_losses(run)) == 30
    assert train_losses(run) == pytest.approx(train_losses(tmp_path / "ref"), abs=1e-5)
    assert not list((run / "checkpoints").glob(".step-*"))  # the leftover staging directory is gone
