"""Hostile input for the newer commands (score, sweep, lr-find, finetune, summarize/translate,
prepare --merge, serve), table-driven like tests/test_hostile.py and with its helpers: every case
is one line `gptkit: error: ...` naming the problem, a non-zero exit, no traceback, and the
workspace afterwards byte for byte as before (nothing written, overwritten or left behind).

The regression tests below the sweep pin the issue-23 defects that are not a refusal: a resumed
run taking its own preset.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_hostile import TINY, _gk, assert_refused, run_cli, snapshot

from conftest import build_random_gpt2

pytest.importorskip("transformers")

PAIRS = [{"source": f"the {i}th sentence about parsing files and text", "target": f"der {i}te Satz"}
         for i in range(40)]


def _jsonl(path: Path, rows: list) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def _corrupt_shards(d: Path) -> None:
    """Every token of every shard 65535, beyond a 257-id vocabulary (sizes unchanged)."""
    for shard in d.glob("*.bin"):
        if shard.name != "documents.bin":
            shard.write_bytes(b"\xff" * shard.stat().st_size)


def _with(argv: list[str], flag: str, value: str) -> list[str]:
    """argv with flag's value replaced."""
    i = argv.index(flag)
    return [*argv[:i + 1], value, *argv[i + 2:]]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile-newer") / "ws"
    root.mkdir()
    build_random_gpt2(root / "tiny", n_positions=64, n_embd=32)  # a GPT-2 directory, bytes tokenizer
    (root / "emptydir").mkdir()
    deep = '{"source": ' + "[" * 100_000 + "]" * 100_000 + ', "target": "x"}'
    # task data
    _jsonl(root / "pairs.jsonl", PAIRS)
    (root / "pairs.txt").write_text("".join(p["source"] + "\n" for p in PAIRS))
    (root / "short.csv").write_text("source,target\nfine,gut\nonly one cell\n")
    (root / "noheader.csv").write_text('"a long first record,\nover several\nlines, quoted\nwhole",der Satz\n'
                                       "second,zweite\n")
    _jsonl(root / "deep.jsonl", [deep])
    (root / "deep-template.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "partdeep").mkdir()
    (root / "partdeep" / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    _jsonl(root / "emptytarget.jsonl", [{"source": "a", "target": "x"}, {"source": "b", "target": ""}])
    _jsonl(root / "mixedtarget.jsonl", [{"source": "a", "target": "x"}, {"source": "b"}])
    # a finished translate run's output, its settings file lost
    _jsonl(root / "done.jsonl", [{"index": 0, "origin": "pairs.jsonl:1", "source": PAIRS[0]["source"],
                                  "prompt": "p", "output": "o", "finish_reason": "stop"}])
    # task outputs for score
    good = [{"index": i, "source": p["source"], "output": p["target"], "target": p["target"]}
            for i, p in enumerate(PAIRS[:5])]
    _jsonl(root / "out.jsonl", good)
    _jsonl(root / "out-int.jsonl", [{**good[0], "output": 5}])
    _jsonl(root / "out-null.jsonl", [{**good[0], "output": None}])
    _jsonl(root / "out-index-str.jsonl", [{**good[0], "index": "5"}])
    _jsonl(root / "out-dup.jsonl", [good[0], good[1], {**good[2], "index": 0}])
    _jsonl(root / "out-deep.jsonl", [deep])
    # sweep spaces
    spaces = {
        "inf": "[lr]\nlow = 1e-3\nhigh = inf\nlog = true\n",
        "neglr": "[lr]\nlow = -1e-3\nhigh = 1e-2\n",
        "frac": "[n_layer]\nlow = 1.5\nhigh = 4\n",
        "mlp": '[mlp]\nchoices = ["gelu", "mystery"]\n',
        "swiglu": '[mlp]\nchoices = ["gelu", "swiglu"]\n',
        "empty": "",
        "unknown": "[learning_rate]\nchoices = [1e-3]\n",
        "both": "[lr]\nchoices = [1e-3]\nlow = 1e-3\nhigh = 1e-2\n",
        "batch": "[batch_size]\nchoices = [8, 16]\n",
    }
    for name, text in spaces.items():
        (root / f"space-{name}.toml").write_text(text)
    # data: a prepared directory, a copy with ids beyond its vocabulary, and two parts of one prepare
    corpus = "\n\n".join(p["source"] * 20 for p in PAIRS)
    (root / "corpus.txt").write_text(corpus)
    _gk("prepare", "corpus.txt", "--tokenizer", "bytes", "--out", "data", "--val-fraction", "0.5", "--workers", "1",
        "-q", cwd=root)
    shutil.copytree(root / "data", root / "databad")
    _corrupt_shards(root / "databad")
    (root / "docs").mkdir()
    for i in range(4):
        (root / "docs" / f"{i}.txt").write_text(corpus[i * 500:(i + 1) * 500 + 3000])
    for i in range(2):
        _gk("prepare", "docs", "--tokenizer", "bytes", "--out", f"part{i}", "--num-shards", "2", "--shard-index",
            str(i), "--val-fraction", "0.5", "--workers", "1", "-q", cwd=root)
    shutil.copytree(root / "part1", root / "part1bad")
    _corrupt_shards(root / "part1bad")
    _gk("train", "--data", "data", "--out", "run", "--max-iters", "2", "--eval-interval", "2", *TINY, cwd=root)
    return root


@pytest.fixture
def ws(template, tmp_path, monkeypatch) -> Path:
    w = tmp_path / "ws"
    shutil.copytree(template, w, symlinks=True)
    monkeypatch.chdir(w)
    monkeypatch.setenv("GPTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a name that is no directory is not looked up online
    return w


SUM = ["summarize", "--model", "tiny"]
TR = ["translate", "--model", "tiny", "--target-lang", "German"]
FT = ["finetune", "--task", "translate", "--target-lang", "German", "--data", "pairs.jsonl", "--init-from", "tiny",
      "--out", "ft", "--val-fraction", "0.3", "--block-size", "32", "--max-iters", "2", "--no-progress"]
TINY_TRAIN = ["--preset", "tiny", "--block-size", "16", "--batch-size", "4", "--eval-iters", "2", "-q"]
SWEEP = ["sweep", "--data", "data", "--out", "sw", "--budget-minutes", "0.05", "--trials", "2", *TINY_TRAIN]
LRF = ["lr-find", "--data", "data", "--plot", "lr.png", "--preset", "tiny", "--block-size", "16", "--batch-size", "4",
       "-q"]

# (id, argv, pattern the error line must match (case-insensitive))
CASES = [
    # -- score: the outputs file
    ("score-output-int", ["score", "out-int.jsonl"], r"out-int\.jsonl:1: \"output\" is int, not text"),
    ("score-output-null", ["score", "out-null.jsonl"], r"\"output\" is null"),
    ("score-index-str", ["score", "out-index-str.jsonl"], r"\"index\" is '5', not a whole number"),
    ("score-index-dup", ["score", "out-dup.jsonl"], r"out-dup\.jsonl:3: index 0 again \(line 1"),
    ("score-deep", ["score", "out-deep.jsonl"], r"nested too deeply"),
    ("score-dir", ["score", "emptydir"], r"emptydir: a directory"),
    ("score-missing", ["score", "nope.jsonl"], r"nope\.jsonl: no such file"),
    ("score-bootstrap-huge", ["score", "out.jsonl", "--bootstrap", "1000000000"], r"--bootstrap must be in 1\.\.100000"),
    ("score-bootstrap-0", ["score", "out.jsonl", "--bootstrap", "0"], r"--bootstrap"),
    ("score-metric", ["score", "out.jsonl", "--metrics", "bleu,meteor"], r"meteor"),
    # -- summarize / translate: task files
    ("sum-data-txt", [*SUM, "--data", "pairs.txt"], r"pairs\.txt: .*\.jsonl, \.csv, \.tsv or \.parquet.*--input"),
    ("sum-short-csv", [*SUM, "--data", "short.csv"], r"short\.csv:3: 1 cell\(s\), the header has 2"),
    ("sum-headerless-csv", [*SUM, "--data", "noheader.csv"], r"no field 'source' \(the first row names the columns"),
    ("sum-deep", [*SUM, "--data", "deep.jsonl"], r"deep\.jsonl:1: the JSON is nested too deeply"),
    ("sum-empty-target", [*SUM, "--data", "emptytarget.jsonl"], r"emptytarget\.jsonl:2: empty target"),
    ("sum-missing-target", [*SUM, "--data", "mixedtarget.jsonl"], r"mixedtarget\.jsonl:2: no target .*lines before it have one"),
    ("sum-data-dir", [*SUM, "--data", "emptydir"], r"emptydir: a directory"),
    ("sum-data-missing", [*SUM, "--data", "nope.jsonl"], r"nope\.jsonl: no such file"),
    ("tr-shots-deep", [*TR, "--data", "pairs.jsonl", "--shots", "1", "--shots-from", "deep.jsonl"],
     r"deep\.jsonl:1: the JSON is nested too deeply"),
    ("sum-resume-no-settings", [*SUM, "--data", "pairs.jsonl", "--out", "done.jsonl", "--limit", "2", "--max-new-tokens", "4"],
     r"done\.jsonl holds 1 outputs but not the settings"),
    ("sum-template-deep", [*SUM, "--template", "deep-template.json", "x"], r"deep-template\.json: .*nested too deeply"),
    ("sum-template-dir", [*SUM, "--template", "emptydir", "x"], r"--template emptydir: a directory"),
    ("sum-input-dir", [*SUM, "--input", "emptydir"], r"--input emptydir: a directory"),
    ("tr-model-missing", [*TR, "--data", "pairs.jsonl", "--model", "nope/x"], r"nope/x"),
    # -- finetune
    ("ft-lora-dropout-big", [*FT, "--lora", "--lora-dropout", "1.5"], r"--lora-dropout must be in \[0, 1\)"),
    ("ft-lora-dropout-neg", [*FT, "--lora", "--lora-dropout", "-0.1"], r"--lora-dropout"),
    ("ft-lora-alpha-0", [*FT, "--lora", "--lora-alpha", "0"], r"--lora-alpha must be > 0"),
    ("ft-lora-alpha-neg", [*FT, "--lora", "--lora-alpha", "-4"], r"--lora-alpha"),
    ("ft-lora-r-0", [*FT, "--lora", "--lora-r", "0"], r"--lora-r must be >= 1"),
    ("ft-lora-r-huge", [*FT, "--lora", "--lora-r", "100000"], r"--lora-r 100000 is more than the model's width \(32\)"),
    ("ft-init-from-missing", _with(FT, "--init-from", "nope"), r"--init-from .*nope"),
    ("ft-data-txt", [*FT, "--data", "pairs.txt"], r"pairs\.txt"),
    ("ft-merge-no-lora", [*FT, "--merge"], r"--merge .*--lora"),
    # -- sweep: the space, checked before trial 1
    ("sweep-space-missing", [*SWEEP, "--space", "nope.toml"], r"--space nope\.toml: file not found"),
    ("sweep-space-inf", [*SWEEP, "--space", "space-inf.toml"], r"lr: high must be a finite number"),
    ("sweep-space-neg-lr", [*SWEEP, "--space", "space-neglr.toml"], r"lr = -0\.001 cannot train"),
    ("sweep-space-frac", [*SWEEP, "--space", "space-frac.toml"], r"n_layer is a whole number"),
    ("sweep-space-mlp", [*SWEEP, "--space", "space-mlp.toml"], r"mlp = 'mystery'"),
    ("sweep-space-swiglu", [*SWEEP, "--space", "space-swiglu.toml"], r"mlp = 'swiglu' cannot train"),
    ("sweep-space-empty", [*SWEEP, "--space", "space-empty.toml"], r"the space is empty"),
    ("sweep-space-unknown", [*SWEEP, "--space", "space-unknown.toml"], r"learning_rate is not a training option"),
    ("sweep-space-both", [*SWEEP, "--space", "space-both.toml"], r"choices cannot be given together"),
    ("sweep-space-fixed", [*SWEEP, "--space", "space-batch.toml"], r"batch_size is searched, but .* fix it to 4"),
    ("sweep-space-dir", [*SWEEP, "--space", "emptydir"], r"--space emptydir: a directory"),
    ("sweep-trials-0", [*SWEEP, "--trials", "0"], r"--trials"),
    ("sweep-budget-0", [*SWEEP, "--budget-minutes", "0"], r"--budget-minutes"),
    # -- lr-find
    ("lrfind-range", [*LRF, "--start-lr", "1", "--end-lr", "0.1"], r"--start-lr"),
    ("lrfind-steps", [*LRF, "--steps", "3"], r"--steps"),
    ("lrfind-bad-shard", [*_with(LRF, "--data", "databad"), "--steps", "10"], r"token id 65535, beyond the vocabulary"),
    # -- prepare --merge and reading shards
    ("merge-bad-part", ["prepare", "--merge", "part0", "part1bad", "--out", "merged", "-q"],
     r"--merge: shard .*part1bad.* holds token id 65535, beyond the vocabulary of 257"),
    ("merge-deep-meta", ["prepare", "--merge", "part0", "partdeep", "--out", "merged"], r"partdeep.*nested too deeply"),
    ("merge-missing-part", ["prepare", "--merge", "part0", "--out", "merged"], r"part\(s\) 1 of 2 missing"),
    ("eval-bad-shard", ["eval", "--model", "run", "--data", "databad"], r"token id 65535, beyond the vocabulary"),
    # -- serve
    ("serve-model-missing", ["serve", "--model", "nope/x", "--port", "0"], r"nope/x"),
    ("serve-max-queue-0", ["serve", "--model", "tiny", "--max-queue", "0"], r"--max-queue"),
    ("serve-template-dir", ["serve", "--model", "tiny", "--chat-template", "emptydir"], r"emptydir: a directory"),
    ("serve-template-missing", ["serve", "--model", "tiny", "--chat-template", "nope.jinja"], r"nope\.jinja"),
]


@pytest.mark.parametrize("argv,pattern", [pytest.param(a, p, id=i) for i, a, p in CASES])
def test_sweep(ws, capsys, argv, pattern):
    before = snapshot(ws)
    code, out, err = run_cli(argv, capsys, cwd=ws)
    assert_refused(ws, before, code, err, pattern)


def test_sweep_covers_the_newer_commands():
    covered = {a[0] for _, a, _ in CASES} | {"merge" for _, a, _ in CASES if "--merge" in a}
    assert {"score", "sweep", "lr-find", "finetune", "summarize", "translate", "merge", "serve"} <= covered


# ---------------------------------------------------------------------------- not refusals

def test_resume_without_preset_takes_the_runs_own(ws, capsys):
    """A tiny run resumed without --preset used to be refused as "--preset mini does not match"."""
    argv = ["train", "--data", "data", "--out", "run", "--resume", "--max-iters", "4", *TINY]
    argv.remove("--preset")
    argv.remove("tiny")
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "resumed from step 2" in out + err
