"""End to end through the CLI: prepare -> train -> eval -> generate, and its bad-input contract."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gptkit.cli import main
from gptkit.data import unigram_entropy


@pytest.fixture
def corpus(docstring_corpus) -> Path:
    return docstring_corpus


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


TRAIN = ["--preset", "tiny", "--block-size", "64", "--batch-size", "16", "--lr", "3e-3", "--warmup-iters", "10",
         "--eval-iters", "8", "--samples", "0", "-q"]


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer,extra,iters", [("bytes", [], 500), ("bpe", ["--vocab-size", "512"], 300),
                                                   ("gpt2", [], 200)])
def test_prepare_train_eval_generate(tmp_path, capsys, corpus, tokenizer, extra, iters):
    data, run_dir = tmp_path / "data", tmp_path / "run"
    # --keep-duplicates: the docstring corpus repeats inherited docstrings; this test is about the
    # commands working together (dedup is tested in tests/data), with the margin measured on it
    code, out, err = run(capsys, "prepare", str(corpus), "--tokenizer", tokenizer, *extra, "--out", str(data),
                         "--val-fraction", "0.15", "--workers", "1", "--keep-duplicates", "-q")
    assert code == 0, err
    assert "tokens" in out and "MB/s" in out
    code, out, err = run(capsys, "train", "--data", str(data), "--out", str(run_dir), "--max-iters", str(iters),
                         "--eval-interval", str(iters), *TRAIN)
    assert code == 0, err
    code, out, err = run(capsys, "eval", "--model", str(run_dir), "--data", str(data), "--json")
    assert code == 0, err
    metrics = json.loads(out)
    h1 = unigram_entropy(data)
    # A context-free model cannot beat the unigram entropy; a trained GPT must, by a margin.
    assert metrics["loss"] < h1 - 0.4, (metrics, h1)
    assert metrics["bits_per_byte"] > 0 and metrics["perplexity"] > 1
    code, out, err = run(capsys, "generate", "--model", str(run_dir), "The", "--max-new-tokens", "20",
                         "--seed", "1", "-n", "2", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2 and all(r["token_ids"] and isinstance(r["text"], str) for r in rows)


@pytest.mark.parametrize("argv,needle", [
    (["prepare", "/no/such/file.txt", "--out", "OUT"], "/no/such/file.txt"),
    (["train", "--data", "/no/such/dir", "--out", "OUT"], "/no/such/dir"),
    (["train", "--data", "DATA", "--out", "OUT", "--preset", "gpt5"], "unknown preset"),
    (["train", "--data", "DATA", "--out", "OUT", "--block-size", "4096"], "larger than the model's context"),
    (["train", "--data", "DATA", "--out", "OUT", "--max-iters", "0"], "max_iters must be >= 1"),
    (["train", "--data", "DATA", "--out", "OUT", "--config", "/no/cfg.json"], "config file not found"),
    (["eval", "--model", "/no/model", "--data", "DATA"], "/no/model"),
    (["generate", "--model", "MODEL_TRUNC", "hi"], "model.safetensors"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, corpus, argv, needle):
    data = tmp_path / "data"
    small = tmp_path / "small.txt"
    small.write_text((corpus / "docstrings.jsonl").read_text()[:20000])
    main(["prepare", str(small), "--tokenizer", "bytes", "--out", str(data), "--workers", "1", "-q"])
    trunc = tmp_path / "model"
    main(["train", "--data", str(data), "--out", str(trunc), "--preset", "tiny", "--block-size", "16",
          "--max-iters", "2", "--eval-interval", "2", "--samples", "0", "-q"])
    weights = trunc / "model.safetensors"
    blob = weights.read_bytes()
    weights.unlink()  # a hard link into checkpoints/: replace it rather than truncating both
    weights.write_bytes(blob[: len(blob) // 2])
    subst = {"OUT": str(tmp_path / "out"), "DATA": str(data), "MODEL_TRUNC": str(trunc)}
    argv = [subst.get(a, a) for a in argv]
    r = subprocess.run([sys.executable, "-m", "gptkit", *argv], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gptkit: error:") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_debug_shows_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gptkit", "--debug", "eval", "--model", "/no/model", "--data", "x"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_config_file_with_flag_override(tmp_path, capsys, corpus):
    data = tmp_path / "data"
    main(["prepare", str(corpus), "--tokenizer", "bytes", "--out", str(data), "--workers", "1", "-q"])
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"preset": "tiny", "block_size": 32, "max_iters": 5, "eval_interval": 5,
                               "batch_size": 4}))
    code, out, err = run(capsys, "train", "--data", str(data), "--out", str(tmp_path / "r"), "--config", str(cfg),
                         "--max-iters", "3", "--eval-interval", "3", "--samples", "0", "-q")
    assert code == 0, err
    saved = json.loads((tmp_path / "r" / "train_config.json").read_text())
    assert saved["max_iters"] == 3 and saved["block_size"] == 32 and saved["preset"] == "tiny"
    cfg.write_text(json.dumps({"learning_rate": 1}))
    code, out, err = run(capsys, "train", "--data", str(data), "--out", str(tmp_path / "r2"), "--config", str(cfg))
    assert code == 2 and "unknown training option(s) learning_rate" in err


def test_train_on_raw_text_prepares_it_once(tmp_path, capsys, corpus, monkeypatch):
    monkeypatch.setenv("GPTKIT_CACHE", str(tmp_path / "cache"))
    argv = ["train", "--data", str(corpus), "--tokenizer", "bytes", "--preset", "tiny", "--block-size", "32",
            "--max-iters", "3", "--eval-interval", "3", "--samples", "1", "-q"]
    code, out, err = run(capsys, *argv, "--out", str(tmp_path / "r1"))
    assert code == 0, err
    assert "Preparing" in err and "sample" in out
    prepared = list((tmp_path / "cache" / "data").iterdir())
    assert len(prepared) == 1 and (prepared[0] / "meta.json").is_file()
    code, out, err = run(capsys, *argv, "--out", str(tmp_path / "r2"))
    assert code == 0 and "Preparing" not in err  # reused, not prepared again


def test_default_out_never_collides_with_an_earlier_run(tmp_path, capsys, corpus, monkeypatch):
    monkeypatch.setenv("GPTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--data", str(corpus), "--tokenizer", "bytes", "--preset", "tiny", "--block-size", "32",
            "--max-iters", "2", "--eval-interval", "2", "--samples", "0", "-q"]
    for expected in ("runs/stdlib", "runs/stdlib-2"):
        code, out, err = run(capsys, *argv)
        assert code == 0, err
        assert f"model saved in {expected} " in out


def test_every_option_of_every_command_has_help_and_default():
    import argparse

    from gptkit.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) >= {"prepare", "train", "eval", "generate"}
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            where = f"gptkit {name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and len(action.help) > 12, where
            if not action.required and action.nargs != "+":
                assert "(default: " in action.help, where
