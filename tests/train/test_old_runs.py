"""Run directories written before the model config was reshaped (tests/fixtures/old_run: a GPT-2
and a Llama-layout run of today's code at the time, 3 steps each) still load and resume."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gptkit.cli import main
from gptkit.hf import load_model
from gptkit.rundir import read_metrics
from gptkit.train import TrainConfig, train

OLD = Path(__file__).resolve().parents[1] / "fixtures" / "old_run"


@pytest.mark.parametrize("run, flags", [
    ("gpt2", {}),
    ("llama", dict(position_embedding="rope", norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=False)),
    ("llama", {}),  # no model option repeated: the run's own
])
def test_an_old_run_directory_loads_and_resumes(tmp_path, run, flags):
    out = tmp_path / run
    shutil.copytree(OLD / run, out, symlinks=True)
    model = load_model(out)
    assert model.config.n_layer == 2 and model.config.n_kv_head == model.config.n_head
    cfg = TrainConfig.from_dict(dict(data=str(OLD / "data"), out=str(out), preset="tiny", max_iters=5, block_size=32,
                                     batch_size=2, eval_iters=1, tensorboard=False, progress=False, resume=True,
                                     **flags))  # the options under their names of the time (tie_embeddings)
    result = train(cfg)
    assert result.step == 5
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "eval"]
    assert steps[-1] == 5 and 3 in steps


# ---------------------------------------------------------------------------- run_v2: resumed exactly

V2 = Path(__file__).resolve().parents[1] / "fixtures" / "run_v2"  # written by tests/fixtures/make_run_v2.py


def _flag(name: str, value: object) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else flag.replace("--", "--no-", 1)]
    return [flag, str(value)]


def _v2_run(tmp_path: Path, run: str) -> tuple[Path, dict]:
    out = tmp_path / run
    shutil.copytree(V2 / run, out, symlinks=True)
    return out, json.loads((out / "expected.json").read_text())


@pytest.mark.parametrize("run", ["gpt2", "llama_gqa"])
def test_a_v2_run_directory_loads_with_the_same_logits(tmp_path, run):
    out, expected = _v2_run(tmp_path, run)
    model = load_model(out)
    with torch.no_grad():
        logits = model(torch.tensor(expected["probe"]))[0, -1]
    assert torch.allclose(logits, torch.tensor(expected["probe_logits_last"]), rtol=0, atol=1e-6)
    assert model.config.n_kv_head == expected["flags"].get("n_kv_head", 2)


@pytest.mark.parametrize("run", ["gpt2", "llama_gqa"])
def test_a_v2_run_directory_resumes_exactly_through_the_cli(tmp_path, run, capsys):
    """The old flag spellings (--mlp swiglu, --no-tie-embeddings) resume the run as written; the losses of
    steps 4-6 and the val loss at 6 are the uninterrupted run's."""
    out, expected = _v2_run(tmp_path, run)
    argv = ["train", "--resume", "--out", str(out), "--data", str(OLD / "data"), "--max-iters", "6", "-q",
            "--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--n-positions", "32", "--device", "cpu",
            "--block-size", "16", "--batch-size", "2", "--lr", "3e-3", "--warmup-iters", "2", "--eval-interval", "3",
            "--eval-iters", "1", "--log-interval", "1", "--dtype", "float32", "--seed", "7", "--no-tensorboard", "--samples", "0"]
    for name, value in expected["flags"].items():
        argv += _flag(name, value)
    assert main(argv) == 0, capsys.readouterr().err
    rows = read_metrics(out / "metrics.jsonl")
    train_loss = {str(r["step"]): r["loss"] for r in rows if r["kind"] == "train"}
    val_loss = {str(r["step"]): r["val_loss"] for r in rows if r["kind"] == "eval"}
    assert train_loss == pytest.approx(expected["train_loss"], rel=1e-6, abs=0)
    assert val_loss == pytest.approx(expected["val_loss"], rel=1e-6, abs=0)


@pytest.mark.parametrize("run", ["gpt2", "llama_gqa"])
def test_a_v2_run_resumes_exactly_without_its_model_flags(tmp_path, capsys, run):
    """--resume takes the model (and the windows) from the run: no model flag, no --block-size, no
    --preset repeated; the continuation is the uninterrupted run's all the same."""
    out, expected = _v2_run(tmp_path, run)
    argv = ["train", "--resume", "--out", str(out), "--data", str(OLD / "data"), "--max-iters", "6", "-q",
            "--device", "cpu", "--batch-size", "2", "--lr", "3e-3", "--warmup-iters", "2", "--eval-interval", "3",
            "--eval-iters", "1", "--log-interval", "1", "--dtype", "float32", "--seed", "7", "--no-tensorboard",
            "--samples", "0"]
    assert main(argv) == 0, capsys.readouterr().err
    rows = read_metrics(out / "metrics.jsonl")
    train_loss = {str(r["step"]): r["loss"] for r in rows if r["kind"] == "train"}
    assert train_loss == pytest.approx(expected["train_loss"], rel=1e-6, abs=0)
    assert load_model(out).config.architecture() == load_model(V2 / run).config.architecture()


@pytest.mark.parametrize("flag, value, field", [("--n-layer", "3", "n-layer"), ("--n-kv-head", "2", "n-kv-head"),
                                                ("--mlp", "gelu", "mlp"), ("--block-size", "8", "block-size")])
def test_a_flag_that_contradicts_the_run_is_refused_by_name(tmp_path, capsys, flag, value, field):
    out, _ = _v2_run(tmp_path, "llama_gqa")
    before = sorted(p.name for p in out.rglob("*"))
    argv = ["train", "--resume", "--out", str(out), "--data", str(OLD / "data"), "--max-iters", "6", "-q",
            "--device", "cpu", "--no-tensorboard", "--samples", "0", flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"gptkit: error: --{field} {value} does not match the run"), err
    assert sorted(p.name for p in out.rglob("*")) == before
