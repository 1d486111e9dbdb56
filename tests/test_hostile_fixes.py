"""Issue 23's defects that are not a refusal of bad input: a config file taking every name the
flags take, a warm-up that fits the budget, a rerun sweep drawing new trials, finetune's epochs,
a BPE smaller than asked, and a full disk. Each test fails on the code before the fix.
"""
from __future__ import annotations

import errno
import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_hostile import assert_refused, run_cli, snapshot, visible_lines
from test_hostile_newer import FT, template  # noqa: F401 (the workspace fixture)
from test_hostile_newer import ws as newer_ws  # noqa: F401

pytest.importorskip("transformers")


@pytest.fixture
def ws(newer_ws):  # noqa: F811
    return newer_ws

TINY = {"preset": "tiny", "block_size": 16, "batch_size": 4, "eval_iters": 2, "eval_interval": 2}


def _toml(path: Path, d: dict) -> None:
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in d.items()))


def _train_rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "train"]


# ---------------------------------------------------------------------------- config files

def test_a_config_file_takes_every_name_the_flags_take(ws, capsys, tmp_path):
    """`train --config best.toml` (what the sweep prints) used to ignore data = ..., train on the
    standard library instead, and refuse samples, tokenizer, vocab_size, quiet."""
    _toml(ws / "c.toml", {**TINY, "data": "data", "out": "cfgrun", "max_iters": 2, "samples": 0, "quiet": True,
                          "tokenizer": "bytes", "vocab_size": 300})
    code, out, err = run_cli(["train", "--config", "c.toml"], capsys)
    assert code == 0, err
    used = json.loads((ws / "cfgrun" / "train_config.json").read_text())["data"]
    assert Path(used).resolve() == (ws / "data").resolve()
    assert not (tmp_path / "cache" / "data").exists(), "prepared the standard library instead"
    assert "--- sample" not in out and "model " not in err  # samples = 0, quiet = true


def test_a_flag_still_wins_over_the_config_file(ws, capsys):
    _toml(ws / "c.toml", {**TINY, "data": "nope", "out": "cfgrun", "max_iters": 2, "samples": 0, "quiet": True})
    code, out, err = run_cli(["train", "--config", "c.toml", "--data", "data"], capsys)
    assert code == 0, err


@pytest.mark.parametrize("key,value,pattern", [("samples", "3", r"samples must be a whole number, got '3'"),
                                               ("quiet", 1, r"quiet must be true or false"),
                                               ("config", "other.toml", r"cannot name another config")])
def test_a_config_value_of_the_wrong_type_is_one_line(ws, capsys, key, value, pattern):
    _toml(ws / "c.toml", {**TINY, "data": "data", "out": "cfgrun", key: value})
    before = snapshot(ws)
    code, out, err = run_cli(["train", "--config", "c.toml"], capsys)
    assert_refused(ws, before, code, err, pattern)


# ---------------------------------------------------------------------------- the lr schedule

def test_a_warm_up_longer_than_the_budget_is_shortened_and_said(ws, capsys):
    """--max-iters 20 with the default 30 warm-up steps used to stay in warm-up the whole run."""
    argv = ["train", "--data", "data", "--out", "wu", "--preset", "tiny", "--block-size", "16", "--batch-size", "4",
            "--eval-iters", "1", "--eval-interval", "10", "--log-interval", "1", "--samples", "0",
            "--lr", "0.001", "--min-lr", "0.0001"]
    code, out, err = run_cli([*argv, "--max-iters", "20"], capsys)
    assert code == 0, err
    assert "--warmup-iters 30 does not fit in --max-iters 20: warming up over 2 steps" in err
    lrs = [r["lr"] for r in _train_rows(ws / "wu")]
    assert max(lrs) == pytest.approx(1e-3) and lrs[-1] < 2e-4  # the peak reached, and decayed to the floor
    code, out, err = run_cli([*argv, "--max-iters", "30", "--resume"], capsys)
    assert code == 0, err
    said = re.search(r"resumed from step 20 .*lr now ([0-9.e-]+), ([0-9.e-]+) after it", err)
    assert said, err
    after = [r["lr"] for r in _train_rows(ws / "wu") if r["step"] > 20]
    assert len(after) == 10 and all(lr == pytest.approx(float(said.group(2)), rel=1e-2) for lr in after)


# ---------------------------------------------------------------------------- sweep

def test_a_rerun_sweep_draws_new_configurations(ws, capsys):
    """A rerun (after a kill, or with more --trials) used to draw its first new trial with the
    seed's first draw again: the configuration of trial 0."""
    argv = ["sweep", "--data", "data", "--out", "sw", "--budget-minutes", "0.02", "--preset", "tiny",
            "--block-size", "16", "--batch-size", "4", "--eval-iters", "1", "--eval-interval", "5", "-q"]
    assert run_cli([*argv, "--trials", "1"], capsys)[0] == 0
    code, out, err = run_cli([*argv, "--trials", "2"], capsys)
    assert code == 0, err
    import optuna
    study = optuna.load_study(study_name="gptkit-sweep", storage=f"sqlite:///{ws / 'sw' / 'study.db'}")
    params = [t.params for t in study.get_trials()]
    assert len(params) == 2 and params[0] != params[1]


# ---------------------------------------------------------------------------- finetune

def test_finetune_banner_counts_epochs_in_examples(ws, capsys):
    """The banner used to divide padded block tokens by target tokens (8.71 epochs for 0.49)."""
    argv = [a for a in FT if a != "--no-progress"] + ["--block-size", "64", "--batch-size", "4", "--score-examples", "0",
                                                      "--on-long", "truncate"]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    n_train = int(re.search(r"\(([\d,]+) train / [\d,]+ val examples\)", out + err).group(1))
    epochs = float(re.search(r"\(([\d.]+) epochs\)", err).group(1))
    assert epochs == pytest.approx(2 * 4 / n_train, abs=0.01)


# ---------------------------------------------------------------------------- prepare

def test_a_bpe_smaller_than_asked_is_said_on_the_terminal(ws, capsys):
    code, out, err = run_cli(["prepare", "corpus.txt", "--tokenizer", "bpe", "--vocab-size", "8192", "--out", "bpe",
                              "--workers", "1", "-q", "--val-fraction", "0.5"], capsys)
    assert code == 0, err
    have = json.loads((ws / "bpe" / "meta.json").read_text())["vocab_size"]
    assert have < 8192
    assert f"--vocab-size 8,192: the BPE ran out of pairs to merge at {have:,} ids" in err


# ---------------------------------------------------------------------------- a full disk

@pytest.mark.parametrize("where", ["train_state", "weights"])
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_temporary(ws, capsys, monkeypatch, where):
    import gptkit.hf as hf
    import gptkit.rundir as rundir
    if where == "train_state":
        def full(*a, **k):  # what torch.save says when a write fails
            raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing "
                               "file data/0: file write failed")
        monkeypatch.setattr(rundir.torch, "save", full)
        name = "train_state.pt"
    else:
        def full(*a, **k):  # a write(2) that fails names no file
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(hf, "save_file", full)
        name = "model.safetensors"
    code, out, err = run_cli(["train", "--data", "data", "--out", "full", "--preset", "tiny", "--block-size", "16",
                              "--batch-size", "4", "--eval-iters", "1", "--max-iters", "2", "--samples", "0", "-q"],
                             capsys)
    lines = visible_lines(err)
    assert code == 1 and "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("gptkit: error: ") and name in lines[0], lines[0]
    left = [p.name for p in (ws / "full").rglob("*") if p.name.endswith(".tmp")]
    assert left == [], left
