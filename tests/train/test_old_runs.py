"""Run directories written before the model config was reshaped (tests/fixtures/old_run: a GPT-2
and a Llama-layout run of today's code at the time, 3 steps each) still load and resume."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gptkit.hf import load_model
from gptkit.rundir import read_metrics
from gptkit.train import TrainConfig, train

OLD = Path(__file__).resolve().parents[1] / "fixtures" / "old_run"


@pytest.mark.parametrize("run, flags", [
    ("gpt2", {}),
    ("llama", dict(position_embedding="rope", norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=False)),
])
def test_an_old_run_directory_loads_and_resumes(tmp_path, run, flags):
    out = tmp_path / run
    shutil.copytree(OLD / run, out, symlinks=True)
    model = load_model(out)
    assert model.config.n_layer == 2 and model.config.n_kv_head == model.config.n_head
    cfg = TrainConfig(data=str(OLD / "data"), out=str(out), preset="tiny", max_iters=5, block_size=32, batch_size=2,
                      eval_iters=1, tensorboard=False, progress=False, resume=True, **flags)
    result = train(cfg)
    assert result.step == 5
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "eval"]
    assert steps[-1] == 5 and 3 in steps
