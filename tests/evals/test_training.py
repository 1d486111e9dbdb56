"""`train --eval-tasks`: accuracy at every evaluation in metrics.jsonl, TensorBoard and loss.png."""
from __future__ import annotations

import json

import pytest

from gptkit.cli import main
from gptkit.rundir import read_metrics


def _task(path, n=6, label=0):
    rows = [{"context": f"Question {i}: the answer is", "choices": [" yes", " no", " maybe"], "label": label}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ARGS = ["--preset", "tiny", "--block-size", "32", "--batch-size", "4", "--max-iters", "8", "--eval-interval", "4",
        "--eval-iters", "1", "--dtype", "float32", "--samples", "0", "-q"]


def test_task_accuracy_at_every_evaluation(byte_data, tmp_path):
    a, b = _task(tmp_path / "alpha.jsonl"), _task(tmp_path / "beta.jsonl", label=2)
    out = tmp_path / "run"
    assert main(["train", "--data", str(byte_data), "--out", str(out), "--eval-tasks", f"{a},{b}", *ARGS]) == 0
    evals = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [4, 8]
    for r in evals:
        for key in ("task/alpha/acc", "task/alpha/acc_norm", "task/beta/acc", "task/beta/acc_norm"):
            assert r[key] in (0.0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0), key
        # the same questions, one label apart: the answers the model picks score on one or the other
        assert r["task/alpha/acc"] + r["task/beta/acc"] <= 1.0
        assert r["task_s"] > 0
    assert (out / "loss.png").stat().st_size > 0
    tb = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = tb.EventAccumulator(str(out / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("task/alpha/acc_norm")] == [4, 8]


@pytest.mark.parametrize("row, msg", [
    ('{"context": "a", "choices": ["x"], "label": 3}', "bad.jsonl:1: label 3 is out of range for 1 choices"),
    ('{"context": "a", "choices": [], "label": 0}', "bad.jsonl:1: 'choices' must be a non-empty list"),
    ('{"context": "a", ', "bad.jsonl:1: not valid JSON"),
    ('{"context": "' + "x" * 300 + '", "choices": ["y"], "label": 0}', "question 1 needs 301 tokens"),
])
def test_bad_task_file_fails_before_step_one(byte_data, tmp_path, capsys, row, msg):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(row + "\n")
    out = tmp_path / "run"
    assert main(["train", "--data", str(byte_data), "--out", str(out), "--eval-tasks", str(bad), *ARGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gptkit: error: ") and msg in err[0]
    assert not (out / "metrics.jsonl").exists()
