"""`gptkit lr-find` (the model and optimizer are left as they were) and `gptkit sweep` (Optuna,
resumable after a kill mid-trial, best config usable by `train --config`)."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch

from gptkit.data import TokenShards
from gptkit.model import GPT, GPTConfig
from gptkit.train import TrainConfig
from gptkit.train.lr_find import lr_range_test, plot
from gptkit.train.optim import make_optimizer

optuna = pytest.importorskip("optuna")


def test_lr_find_leaves_model_and_optimizer_untouched(byte_data, tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=257, n_positions=32, n_embd=32, n_layer=2, n_head=2))
    opt = make_optimizer(model, "adamw", 1e-3, 0.1, (0.9, 0.95), torch.device("cpu"))
    model(torch.randint(0, 257, (2, 16)), targets=torch.randint(0, 257, (2, 16))).backward()
    opt.step()  # the optimizer has state worth keeping
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_before = {k: {n: t.clone() for n, t in s.items()} for k, s in opt.state_dict()["state"].items()}
    cfg = TrainConfig(data=str(byte_data), block_size=16, batch_size=4, lr=1e-3, dtype="float32")
    r = lr_range_test(model, TokenShards(byte_data, "train"), cfg, 1e-5, 10.0, 60, optimizer=opt)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, s in opt.state_dict()["state"].items():
        assert all(torch.equal(t, opt_before[k][n]) for n, t in s.items())
    assert r.lrs == sorted(r.lrs) and r.lrs[0] == pytest.approx(1e-5)
    assert r.suggested_lr == pytest.approx(r.min_loss_lr / 10) and 1e-5 < r.min_loss_lr < 10
    assert min(r.losses) < r.losses[0]
    png = plot(r, tmp_path / "lr.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lr_find_cli(byte_data, tmp_path):
    p = subprocess.run([sys.executable, "-m", "gptkit", "lr-find", "--data", str(byte_data), "--preset", "tiny",
                        "--block-size", "16", "--batch-size", "4", "--steps", "40", "--dtype", "float32",
                        "--plot", str(tmp_path / "lr.png")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "suggested lr:" in p.stdout and (tmp_path / "lr.png").is_file()
    bad = subprocess.run([sys.executable, "-m", "gptkit", "lr-find", "--data", str(byte_data), "--start-lr", "1",
                          "--end-lr", "0.1"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--start-lr" in bad.stderr


def _sweep_cmd(byte_data, out, space):
    return [sys.executable, "-m", "gptkit", "sweep", "--data", str(byte_data), "--out", str(out), "--space", str(space),
            "--budget-minutes", "0.06", "--trials", "3", "--preset", "tiny", "--block-size", "16",
            "--batch-size", "4", "--eval-interval", "5", "--eval-iters", "1", "--dtype", "float32", "-q"]


def test_a_killed_sweep_resumes(byte_data, tmp_path):
    space = tmp_path / "space.toml"
    space.write_text('[lr]\nlow = 1e-3\nhigh = 1e-2\nlog = true\n[n_embd]\nchoices = [32, 64]\n')
    out = tmp_path / "sweep"
    proc = subprocess.Popen(_sweep_cmd(byte_data, out, space), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (out / "trial-000" / "checkpoints" / "last").exists():  # mid-trial: after its first checkpoint
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    p = subprocess.run(_sweep_cmd(byte_data, out, space), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "best: trial" in p.stdout
    states = [s for (s,) in sqlite3.connect(out / "study.db").execute("select state from trials order by number")]
    assert states.count("FAIL") == 1 and states.count("COMPLETE") + states.count("PRUNED") == 3
    assert (out / "results.csv").is_file() and (out / "sweep.png").is_file() and any((out / "tb").iterdir())
    # the re-queued trial continued the killed one's run directory, from its checkpoint
    import json
    metrics = [json.loads(line) for line in (out / "trial-000" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] > 5
    # the best config trains as it is
    best = out / "best.toml"
    r = subprocess.run([sys.executable, "-m", "gptkit", "train", "--config", str(best), "--out", str(tmp_path / "b"),
                        "--max-minutes", "0.02", "--samples", "0", "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # a changed command does not silently mix into the study
    changed = subprocess.run(_sweep_cmd(byte_data, out, space) + ["--weight-decay", "0.05"], capture_output=True, text=True)
    assert changed.returncode == 2 and "other options" in changed.stderr


@pytest.mark.parametrize("start, end, pattern", [
    (1e-3, 1e-2, "still falling at the end of the ramp"),  # a short ramp in the falling part
    (3.0, 1e4, "lowest at the start of the ramp"),          # far too high: it only rises
])
def test_lr_find_warns_when_the_minimum_is_at_an_edge(byte_data, start, end, pattern):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=257, n_positions=32, n_embd=32, n_layer=2, n_head=2))
    cfg = TrainConfig(data=str(byte_data), block_size=16, batch_size=4, lr=1e-3, dtype="float32")
    with pytest.warns(UserWarning, match=pattern):
        lr_range_test(model, TokenShards(byte_data, "train"), cfg, start, end, 30)


def test_lr_find_is_quiet_when_the_minimum_is_inside(byte_data, recwarn):
    from gptkit.train.lr_find import LRFindResult, edge_warnings
    r = LRFindResult(lrs=[1e-4 * 1.1 ** i for i in range(100)], losses=[abs(i - 50) for i in range(100)])
    r.min_loss_lr, r.suggested_lr = r.lrs[50], r.lrs[50] / 10
    assert edge_warnings(r, 50, 100, 1e-4, r.lrs[-1]) == []
    assert "below --start-lr" in edge_warnings(r, 50, 100, 1e-2, r.lrs[-1])[0]  # suggested 1.2e-3
