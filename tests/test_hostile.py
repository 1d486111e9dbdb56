"""Hostile input, for every command: what a new user who types the wrong thing gets.

The contract (README, "Bad input"): one line `gptkit: error: ...` naming the problem (the flag
by its command-line name), a non-zero exit, no traceback, nothing deleted that gptkit did not
create, and no half-written output.

`test_sweep` drives the CLI table-driven, each case in a fresh copy of a small workspace (a text
corpus, a prepared data directory, a tiny trained run, broken files of every kind), and checks all
five points: the workspace afterwards holds exactly the files it held before, byte for byte.
Cases run in-process (`gptkit.cli.main`, an uncaught exception is the traceback) unless marked
`proc`; GPTKIT_HOSTILE_SUBPROCESS=1 runs every case as a real `python -m gptkit` process.

The regression tests below the sweep pin the defects of issue 8 that are not a bad flag: wrong
numbers with exit 0, data mixed or lost, Ctrl-C, divergence, stale caches and temp files.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gptkit.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from conftest import write_docstring_corpus

SUBPROCESS = os.environ.get("GPTKIT_HOSTILE_SUBPROCESS") == "1"
TINY = ["--preset", "tiny", "--block-size", "16", "--batch-size", "4", "--eval-iters", "2", "--samples", "0", "-q"]


# ---------------------------------------------------------------------------- the workspace

def _gk(*argv: str, cwd: Path | None = None) -> None:
    """Build a fixture with the CLI; it must succeed."""
    here = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        code = main([str(a) for a in argv])
    finally:
        os.chdir(here)
    assert code == 0, argv


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "ws"
    root.mkdir()
    corpus = write_docstring_corpus(tmp_path_factory.mktemp("hostile-corpus"))
    lines = (corpus / "docstrings.jsonl").read_text().splitlines()
    docs = [json.loads(line)["text"] for line in lines]
    (root / "corpus.txt").write_text("\n\n".join(docs[:60]))
    (root / "docs.jsonl").write_text("\n".join(lines[:150]) + "\n")
    (root / "other.txt").write_text("\n\n".join(docs[150:260]))
    (root / "notes").mkdir()
    (root / "notes" / "a.txt").write_text(docs[0])
    (root / "notes" / "b.txt").write_text(docs[1])
    (root / "mydocs").mkdir()
    (root / "mydocs" / "important.txt").write_text("do not delete me\n")
    (root / "emptydir").mkdir()
    (root / "empty.txt").write_text("")
    (root / "afile").write_text("a file, not a directory\n")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)) * 8)
    (root / "nul.txt").write_bytes(b"text\0with\0nul\0bytes\0" * 50)
    (root / "bad.txt").write_bytes(b"valid text, then \xff\xfe invalid bytes\n")
    (root / "deep.jsonl").write_text('{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    (root / "badjson.jsonl").write_text('{"text": "unterminated\n')
    (root / "nofield.jsonl").write_text('{"body": "some text"}\n')
    (root / "intfield.jsonl").write_text('{"text": 3}\n')
    (root / "bad.txt.gz").write_bytes(b"this is not gzip data at all")
    blob = gzip.compress(b"some text " * 1000)
    (root / "trunc.txt.gz").write_bytes(blob[: len(blob) // 2])
    (root / "bad.json").write_text("{")
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "type.json").write_text('{"lr": "fast"}')
    (root / "unknown.json").write_text('{"learning_rate": 1}')
    (root / "list.json").write_text("[1, 2]")
    (root / "bad.toml").write_text("lr = = 3")
    (root / "long.txt").write_text("x" * 600)

    # --seed 3: corpus.txt draws train and other.txt val (the split is a coin per source and document)
    _gk("prepare", "corpus.txt", "other.txt", "--tokenizer", "bytes", "--out", "data", "--val-fraction", "0.5",
        "--seed", "3", "--workers", "1", "-q", cwd=root)
    _gk("prepare", "corpus.txt", "--tokenizer", "bytes", "--out", "data0", "--val-fraction", "0", "--workers", "1",
        "-q", cwd=root)
    # --seed 7: both documents draw val, so the train split is empty (prepare warns)
    _gk("prepare", "corpus.txt", "other.txt", "--tokenizer", "bytes", "--out", "dataval", "--val-fraction", "0.5",
        "--seed", "7", "--workers", "1", "-q", cwd=root)
    _gk("train", "--data", "data", "--out", "run", "--max-iters", "2", "--eval-interval", "2", *TINY, cwd=root)
    # Two BPE vocabularies of the same size, from different text.
    _gk("prepare", "corpus.txt", "--tokenizer", "bpe", "--vocab-size", "300", "--out", "bpeA", "--val-fraction",
        "0.5", "--workers", "1", "-q", cwd=root)
    _gk("prepare", "other.txt", "--tokenizer", "bpe", "--vocab-size", "300", "--out", "bpeB", "--val-fraction",
        "0.5", "--workers", "1", "-q", cwd=root)
    _gk("train", "--data", "bpeA", "--out", "runA", "--max-iters", "2", "--eval-interval", "2", *TINY, cwd=root)

    # A gptkit data directory with a foreign file in it.
    shutil.copytree(root / "data", root / "datafor")
    (root / "datafor" / "my-notes.txt").write_text("mine\n")
    # A model whose weights were cut short (a copy, not the run's hard links).
    (root / "trunc").mkdir()
    for f in (root / "run").iterdir():
        if f.is_file():
            shutil.copyfile(f, root / "trunc" / f.name)
    w = (root / "trunc" / "model.safetensors").read_bytes()
    (root / "trunc" / "model.safetensors").write_bytes(w[: len(w) // 2])
    # A pytorch_model.bin that would run code if unpickled.
    (root / "pickle").mkdir()
    shutil.copyfile(root / "run" / "config.json", root / "pickle" / "config.json")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > pwned.txt",))
    torch.save({"transformer.wte.weight": Evil()}, root / "pickle" / "pytorch_model.bin")
    return root


@pytest.fixture
def ws(template, tmp_path, monkeypatch) -> Path:
    w = tmp_path / "ws"
    shutil.copytree(template, w, symlinks=True)
    monkeypatch.chdir(w)
    monkeypatch.setenv("GPTKIT_CACHE", str(tmp_path / "cache"))
    return w


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root (hidden ones too) -> a digest of its content ("dir" / "link -> x")."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link -> " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def visible_lines(err: str) -> list[str]:
    """The non-blank lines a terminal would show: a progress bar redraws its line with \\r and clears
    it when it closes."""
    return [seen for line in err.split("\n") if (seen := line.split("\r")[-1]).strip()]


def run_cli(argv: list[str], capsys, proc: bool = False, cwd: Path | None = None,
            timeout: float = 120) -> tuple[int, str, str]:
    if proc or SUBPROCESS:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                            os.environ.get("PYTHONPATH", "")])}
        r = subprocess.run([sys.executable, "-m", "gptkit", *argv], capture_output=True, text=True,
                           timeout=timeout, cwd=cwd, env=env)
        return r.returncode, r.stdout, r.stderr
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------- the sweep

TRAIN = ["train", "--data", "data", "--out", "new", *TINY]
RESUME = ["train", "--data", "data", "--out", "run", "--resume", *TINY]
EVAL = ["eval", "--model", "run", "--data", "data"]
GEN = ["generate", "--model", "run", "hello"]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")

# (id, argv, pattern the error line must match (case-insensitive), options)
CASES = [
    # -- no command, unknown command, unknown flag
    ("no-command", [], r"command", {}),
    ("unknown-command", ["frobnicate"], r"frobnicate", {}),
    ("unknown-flag", ["train", "--learning-rate", "1"], r"--learning-rate", {}),
    # -- prepare: inputs
    ("prepare-no-inputs", ["prepare", "--out", "out"], r"inputs", {}),
    ("prepare-missing", ["prepare", "nope.txt", "--out", "out"], r"nope\.txt", {}),
    ("prepare-empty-file", ["prepare", "empty.txt", "--tokenizer", "bytes", "--out", "out"], r"empty", {}),
    ("prepare-empty-dir", ["prepare", "emptydir", "--tokenizer", "bytes", "--out", "out"], r"emptydir", {}),
    ("prepare-binary-named", ["prepare", "image.png", "--tokenizer", "bytes", "--out", "out"], r"binary", {}),
    ("prepare-binary-txt", ["prepare", "nul.txt", "--tokenizer", "bytes", "--out", "out"], r"binary", {}),
    ("prepare-decode-error", ["prepare", "bad.txt", "--tokenizer", "bytes", "--out", "out", "--on-decode-error",
                              "error"], r"bad\.txt.*--on-decode-error", {}),
    ("prepare-decode-choice", ["prepare", "bad.txt", "--out", "out", "--on-decode-error", "ignore"],
     r"--on-decode-error.*ignore", {}),
    ("prepare-deep-jsonl", ["prepare", "deep.jsonl", "--tokenizer", "bytes", "--out", "out"], r"deep\.jsonl.*deep",
     {}),
    ("prepare-bad-json", ["prepare", "badjson.jsonl", "--tokenizer", "bytes", "--out", "out"], r"invalid JSON", {}),
    ("prepare-no-field", ["prepare", "nofield.jsonl", "--tokenizer", "bytes", "--out", "out"], r"--field", {}),
    ("prepare-int-field", ["prepare", "intfield.jsonl", "--tokenizer", "bytes", "--out", "out"], r"not a string", {}),
    ("prepare-bad-gzip", ["prepare", "bad.txt.gz", "--tokenizer", "bytes", "--out", "out"], r"gzip", {}),
    ("prepare-trunc-gzip", ["prepare", "trunc.txt.gz", "--tokenizer", "bytes", "--out", "out"], r"gzip", {}),
    # -- prepare: tokenizer and vocabulary
    ("prepare-vocab-0", ["prepare", "corpus.txt", "--tokenizer", "bpe", "--vocab-size", "0", "--out", "out"],
     r"--vocab-size", {}),
    ("prepare-vocab-neg", ["prepare", "corpus.txt", "--tokenizer", "bpe", "--vocab-size", "-5", "--out", "out"],
     r"--vocab-size", {}),
    ("prepare-vocab-huge", ["prepare", "corpus.txt", "--tokenizer", "bpe", "--vocab-size", "1000000000", "--out",
                            "out"], r"--vocab-size", {"proc": True}),
    ("prepare-vocab-corpus", ["prepare", "notes", "--tokenizer", "bpe", "--vocab-size", "200000", "--out", "out"],
     r"--vocab-size", {}),
    ("prepare-vocab-bytes", ["prepare", "corpus.txt", "--tokenizer", "bytes", "--vocab-size", "300", "--out",
                             "out"], r"--vocab-size", {}),
    ("prepare-tokenizer", ["prepare", "corpus.txt", "--tokenizer", "nosuch", "--out", "out"], r"nosuch", {}),
    ("prepare-tokenizer-dir", ["prepare", "corpus.txt", "--tokenizer", "emptydir", "--out", "out"], r"emptydir", {}),
    # -- prepare: numbers
    ("prepare-val-1", ["prepare", "corpus.txt", "--val-fraction", "1", "--out", "out"], r"--val-fraction", {}),
    ("prepare-val-neg", ["prepare", "corpus.txt", "--val-fraction", "-0.1", "--out", "out"], r"--val-fraction", {}),
    ("prepare-val-nan", ["prepare", "corpus.txt", "--val-fraction", "nan", "--out", "out"], r"--val-fraction", {}),
    ("prepare-workers-0", ["prepare", "corpus.txt", "--workers", "0", "--out", "out"], r"--workers", {}),
    ("prepare-workers-neg", ["prepare", "corpus.txt", "--workers", "-2", "--out", "out"], r"--workers", {}),
    # -- prepare: where it writes
    ("prepare-out-foreign", ["prepare", "corpus.txt", "--tokenizer", "bytes", "--out", "mydocs"], r"mydocs", {}),
    ("prepare-overwrite-foreign", ["prepare", "corpus.txt", "--tokenizer", "bytes", "--out", "mydocs",
                                   "--overwrite"], r"mydocs", {}),
    ("prepare-overwrite-input", ["prepare", "notes", "--tokenizer", "bytes", "--out", "notes", "--overwrite"],
     r"notes", {}),
    ("prepare-overwrite-input-file", ["prepare", "datafor/my-notes.txt", "--tokenizer", "bytes", "--out", "datafor",
                                      "--overwrite"], r"datafor", {}),
    ("prepare-overwrite-extra-file", ["prepare", "corpus.txt", "--tokenizer", "bytes", "--out", "datafor",
                                      "--overwrite"], r"my-notes\.txt", {}),
    ("prepare-overwrite-dot", ["prepare", "corpus.txt", "--tokenizer", "bytes", "--out", ".", "--overwrite"],
     r"--out", {}),
    ("prepare-out-under-file", ["prepare", "corpus.txt", "--tokenizer", "bytes", "--out", "afile/data"], r"afile",
     {}),
    ("prepare-out-is-file", ["prepare", "corpus.txt", "--tokenizer", "bytes", "--out", "afile"], r"afile", {}),
    ("prepare-out-empty", ["prepare", "corpus.txt", "--tokenizer", "bytes", "--out", ""], r"--out", {}),
    # -- train: data and files
    ("train-data-missing", ["train", "--data", "nope", "--out", "new", *TINY], r"nope", {}),
    ("train-data-emptydir", ["train", "--data", "emptydir", "--tokenizer", "bytes", "--out", "new", *TINY],
     r"emptydir", {}),
    ("train-val-0", ["train", "--data", "data0", "--out", "new", *TINY], r"--val-fraction", {}),
    ("train-empty-train", ["train", "--data", "dataval", "--out", "new", *TINY], r"empty train.*--val-fraction", {}),
    ("train-raw-vocab-0", ["train", "--data", "corpus.txt", "--vocab-size", "0", "--out", "new", *TINY],
     r"--vocab-size", {}),
    ("train-raw-tokenizer", ["train", "--data", "corpus.txt", "--tokenizer", "nosuch", "--out", "new", *TINY],
     r"nosuch", {}),
    ("train-out-under-file", ["train", "--data", "data", "--out", "afile/run", *TINY], r"afile", {}),
    ("train-out-is-file", ["train", "--data", "data", "--out", "afile", *TINY], r"afile", {}),
    ("train-out-exists", ["train", "--data", "data", "--out", "run", *TINY], r"--resume", {}),
    ("train-out-foreign", ["train", "--data", "data", "--out", "mydocs", *TINY], r"mydocs", {}),
    ("train-resume-nothing", ["train", "--data", "data", "--out", "new", "--resume", *TINY], r"new", {}),
    ("train-resume-n-embd", [*RESUME, "--max-iters", "4", "--n-embd", "128"], r"--n-embd", {}),
    ("train-resume-n-layer", [*RESUME, "--max-iters", "4", "--n-layer", "3"], r"--n-layer", {}),
    ("train-resume-block", [*RESUME, "--max-iters", "4", "--block-size", "8"], r"--block-size", {}),
    ("train-resume-preset", [*RESUME, "--max-iters", "4", "--preset", "mini"], r"--preset", {}),
    ("train-resume-no-bias", [*RESUME, "--max-iters", "4", "--no-bias"], r"--bias|--no-bias", {}),
    ("train-resume-finished", [*RESUME, "--max-iters", "2"], r"--max-iters", {}),
    ("train-resume-spent", [*RESUME, "--max-iters", "4", "--max-minutes", "0.00001"], r"--max-minutes", {}),
    ("train-resume-rope", [*RESUME, "--max-iters", "4", "--position-embedding", "rope", "--norm", "rmsnorm", "--mlp",
                           "swiglu"], r"--position-embedding", {}),
    ("train-resume-tokenizer", ["train", "--data", "bpeB", "--out", "runA", "--resume", "--max-iters", "4", *TINY],
     r"tokenizer", {}),
    ("train-init-from-missing", [*TRAIN, "--init-from", "nope"], r"nope", {}),
    ("train-init-from-trunc", [*TRAIN, "--init-from", "trunc"], r"trunc", {}),
    ("train-init-from-tokenizer", ["train", "--data", "bpeB", "--out", "new", "--init-from", "runA", *TINY],
     r"tokenizer", {}),
    # -- train: options
    ("train-preset", [*TRAIN, "--preset", "gpt5"], r"preset", {}),
    ("train-block-0", [*TRAIN, "--block-size", "0"], r"--block-size", {}),
    ("train-block-huge", [*TRAIN, "--block-size", "4096"], r"--block-size", {}),
    ("train-block-data", ["train", "--data", "data", "--out", "new", "--preset", "tiny", "--n-positions", "100000",
                          "--block-size", "60000", "-q"], r"--block-size", {}),
    ("train-batch-0", [*TRAIN, "--batch-size", "0"], r"--batch-size", {}),
    ("train-accum-0", [*TRAIN, "--grad-accum", "0"], r"--grad-accum", {}),
    ("train-lr-inf", [*TRAIN, "--lr", "inf"], r"--lr", {}),
    ("train-lr-nan", [*TRAIN, "--lr", "nan"], r"--lr", {}),
    ("train-lr-neg", [*TRAIN, "--lr", "-1"], r"--lr", {}),
    ("train-lr-word", [*TRAIN, "--lr", "fast"], r"--lr", {}),
    ("train-min-lr-neg", [*TRAIN, "--min-lr", "-1"], r"--min-lr", {}),
    ("train-min-lr-nan", [*TRAIN, "--min-lr", "nan"], r"--min-lr", {}),
    ("train-decay-0", [*TRAIN, "--lr-decay-iters", "0"], r"--lr-decay-iters", {}),
    ("train-max-iters-0", [*TRAIN, "--max-iters", "0"], r"--max-iters", {}),
    ("train-max-minutes-0", [*TRAIN, "--max-minutes", "0"], r"--max-minutes", {}),
    ("train-max-minutes-inf", [*TRAIN, "--max-minutes", "inf"], r"--max-minutes", {}),
    ("train-warmup-neg", [*TRAIN, "--warmup-iters", "-1"], r"--warmup-iters", {}),
    ("train-clip-neg", [*TRAIN, "--grad-clip", "-1"], r"--grad-clip", {}),
    ("train-wd-nan", [*TRAIN, "--weight-decay", "nan"], r"--weight-decay", {}),
    ("train-wd-neg", [*TRAIN, "--weight-decay", "-1"], r"--weight-decay", {}),
    ("train-beta1", [*TRAIN, "--beta1", "1.5"], r"--beta1", {}),
    ("train-beta2-neg", [*TRAIN, "--beta2", "-0.1"], r"--beta2", {}),
    ("train-dropout", [*TRAIN, "--dropout", "1.5"], r"--dropout", {}),
    ("train-n-head", [*TRAIN, "--n-head", "3"], r"--n-head", {}),
    ("train-n-layer-0", [*TRAIN, "--n-layer", "0"], r"--n-layer", {}),
    ("train-n-positions-0", [*TRAIN, "--n-positions", "0"], r"--n-positions", {}),
    ("train-eval-interval-0", [*TRAIN, "--eval-interval", "0"], r"--eval-interval", {}),
    ("train-eval-iters-0", [*TRAIN, "--eval-iters", "0"], r"--eval-iters", {}),
    ("train-log-interval-0", [*TRAIN, "--log-interval", "0"], r"--log-interval", {}),
    ("train-samples-neg", [*TRAIN, "--samples", "-1"], r"--samples", {}),
    ("train-dtype", [*TRAIN, "--dtype", "fp8"], r"--dtype", {}),
    ("train-strategy", [*TRAIN, "--strategy", "zero3"], r"--strategy", {}),
    ("train-dist-timeout", [*TRAIN, "--dist-timeout", "0"], r"--dist-timeout", {}),
    ("train-device-cuda", [*TRAIN, "--device", "cuda"], r"cuda", {"marks": NO_CUDA}),
    ("train-device-bogus", [*TRAIN, "--device", "banana"], r"--device", {}),
    ("train-config-missing", [*TRAIN, "--config", "nope.json"], r"nope\.json", {}),
    ("train-config-bad", [*TRAIN, "--config", "bad.json"], r"bad\.json", {}),
    ("train-config-toml", [*TRAIN, "--config", "bad.toml"], r"bad\.toml", {}),
    ("train-config-deep", [*TRAIN, "--config", "deep.json"], r"deep\.json", {}),
    ("train-config-list", [*TRAIN, "--config", "list.json"], r"list\.json", {}),
    ("train-config-type", [*TRAIN, "--config", "type.json"], r"lr", {}),
    ("train-config-unknown", [*TRAIN, "--config", "unknown.json"], r"learning_rate", {}),
    # -- eval
    ("eval-model-missing", ["eval", "--model", "nope", "--data", "data"], r"nope", {}),
    ("eval-data-missing", ["eval", "--model", "run", "--data", "nope"], r"nope", {}),
    ("eval-model-trunc", ["eval", "--model", "trunc", "--data", "data"], r"trunc", {}),
    ("eval-model-pickle", ["eval", "--model", "pickle", "--data", "data"], r"pytorch_model\.bin", {}),
    ("eval-model-is-data", ["eval", "--model", "data", "--data", "data"], r"config\.json", {}),
    ("eval-data-is-model", ["eval", "--model", "run", "--data", "run"], r"meta\.json", {}),
    ("eval-block-0", [*EVAL, "--block-size", "0"], r"--block-size", {}),
    ("eval-block-huge", [*EVAL, "--block-size", "99999"], r"--block-size", {}),
    ("eval-batch-0", [*EVAL, "--batch-size", "0"], r"--batch-size", {}),
    ("eval-max-batches-0", [*EVAL, "--max-batches", "0"], r"--max-batches", {}),
    ("eval-split-choice", [*EVAL, "--split", "test"], r"--split.*test", {}),
    ("eval-dtype-choice", [*EVAL, "--dtype", "fp8"], r"--dtype", {}),
    ("eval-no-val", ["eval", "--model", "run", "--data", "data0"], r"--split train|--val-fraction", {}),
    ("eval-tokenizer", ["eval", "--model", "runA", "--data", "bpeB"], r"tokenizer", {}),
    ("eval-bytes-vs-bpe", ["eval", "--model", "run", "--data", "bpeA"], r"tokenizer|vocabulary", {}),
    # -- generate
    ("gen-model-missing", ["generate", "--model", "nope", "hi"], r"nope", {}),
    ("gen-model-trunc", ["generate", "--model", "trunc", "hi"], r"trunc", {}),
    ("gen-model-pickle", ["generate", "--model", "pickle", "hi"], r"pytorch_model\.bin", {}),
    ("gen-model-file", ["generate", "--model", "corpus.txt", "hi"], r"corpus\.txt", {}),
    ("gen-model-data", ["generate", "--model", "data", "hi"], r"config\.json", {}),
    ("gen-max-new-neg", [*GEN, "--max-new-tokens", "-1"], r"--max-new-tokens", {}),
    ("gen-max-new-huge", [*GEN, "--max-new-tokens", "100000"], r"context|--max-new-tokens", {}),
    ("gen-long-prompt", ["generate", "--model", "run", "x" * 600, "--max-new-tokens", "5"], r"context", {}),
    ("gen-temperature-0", [*GEN, "--temperature", "0"], r"--temperature", {}),
    ("gen-temperature-nan", [*GEN, "--temperature", "nan"], r"--temperature", {}),
    ("gen-top-p", [*GEN, "--top-p", "2"], r"--top-p", {}),
    ("gen-top-p-nan", [*GEN, "--top-p", "nan"], r"--top-p", {}),
    ("gen-top-k-neg", [*GEN, "--top-k", "-1"], r"--top-k", {}),
    ("gen-min-p", [*GEN, "--min-p", "2"], r"--min-p", {}),
    ("gen-rep-penalty", [*GEN, "--repetition-penalty", "0"], r"--repetition-penalty", {}),
    ("gen-rep-penalty-inf", [*GEN, "--repetition-penalty", "inf"], r"--repetition-penalty", {}),
    ("gen-ngram-neg", [*GEN, "--no-repeat-ngram-size", "-1"], r"--no-repeat-ngram-size", {}),
    ("gen-beams-0", [*GEN, "--num-beams", "0"], r"--num-beams", {}),
    ("gen-n-0", [*GEN, "-n", "0"], r"--num-return-sequences", {}),
    ("gen-n-greedy", [*GEN, "-n", "3", "--no-do-sample"], r"--do-sample", {}),
    ("gen-n-beams", [*GEN, "--num-beams", "2", "-n", "3"], r"--num-return-sequences", {}),
    ("gen-length-penalty-nan", [*GEN, "--length-penalty", "nan", "--num-beams", "2"], r"--length-penalty", {}),
    ("gen-eos-huge", [*GEN, "--eos-token-id", "999999"], r"--eos-token-id", {}),
    ("gen-eos-neg", [*GEN, "--eos-token-id", "-1"], r"--eos-token-id", {}),
    ("gen-stop-empty", [*GEN, "--stop", ""], r"--stop", {}),
    ("gen-seed-neg", [*GEN, "--seed", "-1"], r"--seed", {}),
    ("gen-context-choice", [*GEN, "--context", "wrap"], r"--context", {}),
    ("gen-quantize-choice", [*GEN, "--quantize", "int4"], r"--quantize", {}),
    ("gen-dtype-choice", [*GEN, "--dtype", "fp8"], r"--dtype", {}),
    ("gen-device-cuda", [*GEN, "--device", "cuda"], r"cuda", {"marks": NO_CUDA}),
    ("gen-device-bogus", [*GEN, "--device", "banana"], r"--device", {}),
]


def _params():
    for name, argv, pattern, opts in CASES:
        marks = opts.get("marks", ())
        yield pytest.param(argv, pattern, opts.get("proc", False), id=name,
                           marks=marks if isinstance(marks, (list, tuple)) else [marks])


def assert_refused(ws: Path, before: dict[str, str], code, err: str, pattern: str) -> None:
    """One `gptkit: error:` line matching pattern, a non-zero exit, no traceback, and the workspace
    exactly as it was (nothing changed, deleted or left behind)."""
    lines = visible_lines(err)
    assert code not in (0, None), f"exit {code}: {err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{err}"
    assert lines[0].startswith("gptkit: error: "), lines[0]
    assert not re.match(r"gptkit: error: \w+(Error|Exception):", lines[0]), f"a raw exception: {lines[0]}"
    assert re.search(pattern, lines[0], re.IGNORECASE), f"{pattern!r} not in {lines[0]!r}"
    assert len(lines[0]) < 400, lines[0]
    after = snapshot(ws)
    assert {k: v for k, v in before.items() if after.get(k) != v} == {}, "changed or deleted"
    assert sorted(set(after) - set(before)) == [], "left behind"


@pytest.mark.parametrize("argv,pattern,proc", list(_params()))
def test_sweep(ws, capsys, argv, pattern, proc):
    before = snapshot(ws)
    code, out, err = run_cli(argv, capsys, proc=proc, cwd=ws)
    assert_refused(ws, before, code, err, pattern)
    assert not (ws / "pwned.txt").exists()


def test_sweep_covers_every_command():
    from gptkit.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    covered = {argv[0] for _, argv, _, _ in CASES if argv}
    assert {"prepare", "train", "eval", "generate"} <= covered & set(sub.choices)


# ---------------------------------------------------------------------------- data loss

def test_overwrite_replaces_a_gptkit_data_dir(ws, capsys):
    code, out, err = run_cli(["prepare", "other.txt", "--tokenizer", "bytes", "--out", "data", "--overwrite",
                              "--workers", "1", "-q"], capsys)
    assert code == 0, err
    meta = json.loads((ws / "data" / "meta.json").read_text())
    assert meta["documents"] == 1 and not list(ws.glob(".data.*"))


def test_no_bias_saves_a_gpt2_with_zero_biases(ws, capsys):
    transformers = pytest.importorskip("transformers")
    import gptkit
    code, out, err = run_cli(["train", "--data", "data", "--out", "nb", "--no-bias", "--max-iters", "2",
                              "--eval-interval", "2", *TINY], capsys)
    assert code == 0, err
    model = gptkit.load_model("nb")
    assert model.config.bias is False
    hf = transformers.AutoModelForCausalLM.from_pretrained("nb").eval()
    ids = torch.tensor([model.tokenizer.encode("def parse(text):")])
    with torch.no_grad():
        assert torch.allclose(model(ids), hf(ids).logits, atol=1e-4)
    code, out, err = run_cli(["train", "--data", "data", "--out", "nb", "--no-bias", "--resume", "--max-iters", "3",
                              "--eval-interval", "3", *TINY], capsys)
    assert code == 0, err


def test_what_trains_is_checked_savable_before_the_first_step():
    from gptkit.errors import GptkitError
    from gptkit.hf import check_saveable
    from gptkit.model import GPT, GPTConfig
    small = dict(vocab_size=50, n_positions=8, n_embd=8, n_layer=1, n_head=2)
    assert check_saveable(GPT(GPTConfig(**small, bias=False))).model_type == "gpt2"  # zero biases
    assert check_saveable(GPT(GPTConfig(**small, position_embedding="rope", norm="rmsnorm", gated_mlp=True,
                                        activation_function="silu", bias=False))).model_type == "llama"
    with pytest.raises(GptkitError, match="no transformers equivalent"):
        check_saveable(GPT(GPTConfig(**small, position_embedding="rope")))


def test_a_one_document_corpus_that_draws_val_still_trains(ws, capsys):
    from gptkit.data.prepare import _is_val
    seed = next(s for s in range(100) if _is_val(s, 0, 0, 0.5))  # the one document draws val
    code, out, err = run_cli(["prepare", "corpus.txt", "--tokenizer", "bytes", "--out", "d1", "--val-fraction", "0.5",
                              "--seed", str(seed), "--workers", "1", "-q"], capsys)
    assert code == 0, err
    splits = json.loads((ws / "d1" / "meta.json").read_text())["splits"]
    total = splits["train"]["tokens"] + splits["val"]["tokens"]
    assert splits["train"]["tokens"] == pytest.approx(total / 2, abs=2)


def test_raw_text_cache_follows_the_content(ws, capsys):
    argv = ["train", "--data", "notes", "--tokenizer", "bytes", "--max-iters", "1", "--eval-interval", "1",
            "--preset", "tiny", "--block-size", "8", "--batch-size", "2", "--eval-iters", "1", "--samples", "0",
            "-q"]
    (ws / "notes" / "a.txt").write_text("first version of the notes, " * 40)
    code, out, err = run_cli([*argv, "--out", "r1"], capsys)
    assert code == 0 and "Preparing" in err, err
    code, out, err = run_cli([*argv, "--out", "r2"], capsys)
    assert code == 0 and "Preparing" not in err, err  # unchanged: reused
    (ws / "notes" / "a.txt").write_text("the second version, quite different, " * 40)
    code, out, err = run_cli([*argv, "--out", "r3"], capsys)
    assert code == 0 and "Preparing" in err, err  # changed: prepared again
    state = [json.loads((ws / r / "train_config.json").read_text())["data"] for r in ("r1", "r2", "r3")]
    assert state[0] == state[1] != state[2]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def test_ctrl_c_before_the_first_checkpoint_saves_one(ws, capsys):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "gptkit", "train", "--data", "data", "--out", "cc",
                             "--max-iters", "100000", "--eval-interval", "100000", *TINY],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ws)
    _wait_for(ws / "cc" / "train_config.json", proc)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    m = re.search(r"interrupted at step (\d+)", err)
    assert m, err
    step = int(m.group(1))
    assert step >= 1 and (ws / "cc" / "checkpoints" / "last").exists()
    code, out, err = run_cli(["train", "--data", "data", "--out", "cc", "--resume", "--max-iters", str(step + 1),
                              "--eval-interval", "100000", *TINY], capsys)
    assert code == 0, err
    assert f"resumed from step {step}" in err


def test_resume_says_where_it_resumed(ws, capsys):
    code, out, err = run_cli([*RESUME, "--max-iters", "3", "--eval-interval", "3"], capsys)
    assert code == 0, err
    assert "resumed from step 2" in err


def test_stale_temp_files_are_cleaned_on_the_next_run(ws, capsys):
    dead = _dead_pid()
    (ws / f".out.tmp-{dead}").mkdir()
    (ws / f".out.tmp-{dead}" / "train_000000.bin").write_bytes(b"\0" * 64)
    (ws / "run" / f".loss.png.{dead}.x1y2.tmp").write_bytes(b"half a png")
    (ws / "run" / "checkpoints" / ".step-00000009.tmp").mkdir()
    (ws / "run" / "checkpoints" / ".step-00000009.tmp" / "model.safetensors").write_bytes(b"half")
    code, out, err = run_cli(["prepare", "corpus.txt", "--tokenizer", "bytes", "--out", "out", "--workers", "1",
                              "-q"], capsys)
    assert code == 0, err
    code, out, err = run_cli([*RESUME, "--max-iters", "3", "--eval-interval", "3"], capsys)
    assert code == 0, err
    left = [p.name for p in [*ws.iterdir(), *(ws / "run").iterdir(), *(ws / "run" / "checkpoints").iterdir()]
            if p.name.startswith(".")]
    assert left == [], left


# ---------------------------------------------------------------------------- silently wrong numbers

def _eval(capsys, *argv: str) -> tuple[dict, str]:
    code, out, err = run_cli(["eval", "--model", "run", "--data", "data", "--json", *argv], capsys)
    assert code == 0, err
    return json.loads(out), err


def test_eval_defaults_to_the_training_block_size(ws, capsys):
    default, err = _eval(capsys)
    assert not err.strip()
    at16, _ = _eval(capsys, "--block-size", "16")
    assert default["loss"] == pytest.approx(at16["loss"], abs=1e-6)
    assert default.get("block_size") == 16
    beyond, err = _eval(capsys, "--block-size", "64")
    assert re.search(r"warning: .*64.*16", err), err


def test_final_eval_covers_the_whole_val_split(ws, capsys):
    from gptkit.train import TrainConfig, train
    result = train(TrainConfig(data="data", out="full", preset="tiny", block_size=16, batch_size=4, max_iters=2,
                               eval_interval=2, eval_iters=1, progress=False))
    meta = json.loads((ws / "data" / "meta.json").read_text())
    windows = sum((s["tokens"] - 1) // 16 for s in meta["splits"]["val"]["shards"])
    assert result.val["eval_tokens"] == windows * 16
    code, out, err = run_cli(["eval", "--model", "full", "--data", "data", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["loss"] == pytest.approx(result.val["loss"], abs=1e-4)


def _strict_json_lines(path: Path) -> list[dict]:
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(ws, capsys):
    before = (ws / "run" / "model.safetensors").read_bytes()
    code, out, err = run_cli([*RESUME, "--max-iters", "40", "--eval-interval", "20", "--log-interval", "1",
                              "--lr", "1e30", "--warmup-iters", "0"], capsys)
    errors = [line for line in visible_lines(err) if line.startswith("gptkit: error")]
    assert code != 0 and len(errors) == 1 and "Traceback" not in err, err
    assert re.search(r"gptkit: error: .*(nan|inf|non-finite|diverge)", errors[0], re.IGNORECASE), errors[0]
    assert (ws / "run" / "model.safetensors").read_bytes() == before
    assert os.readlink(ws / "run" / "checkpoints" / "last") == "step-00000002"
    _strict_json_lines(ws / "run" / "metrics.jsonl")


def test_val_fraction_0_prepares_train_only_data_and_says_so(ws, capsys):
    code, out, err = run_cli(["prepare", "corpus.txt", "--tokenizer", "bytes", "--out", "d0", "--val-fraction", "0",
                              "--workers", "1", "-q"], capsys)
    assert code == 0, err
    assert re.search(r"warning: .*no validation", err, re.IGNORECASE), err
    code, out, err = run_cli(["eval", "--model", "run", "--data", "d0", "--split", "train", "--json"], capsys)
    assert code == 0, err


def test_a_tiny_validation_split_is_named(ws, capsys):
    code, out, err = run_cli(["prepare", "docs.jsonl", "--tokenizer", "bytes", "--out", "d1", "--workers", "1",
                              "-q"], capsys)
    assert code == 0, err
    meta = json.loads((ws / "d1" / "meta.json").read_text())
    assert meta["splits"]["val"]["documents"] <= 3
    assert re.search(r"warning: .*validation split .*--val-fraction", err, re.IGNORECASE), err


def test_the_summary_counts_replaced_and_skipped_documents(ws, capsys):
    code, out, err = run_cli(["prepare", "bad.txt", "corpus.txt", "--tokenizer", "bytes", "--out", "d1",
                              "--workers", "1", "-q"], capsys)
    assert code == 0, err
    assert re.search(r"1 document.* replaced", out), out
    code, out, err = run_cli(["prepare", "bad.txt", "corpus.txt", "--tokenizer", "bytes", "--out", "d2",
                              "--workers", "1", "-q", "--on-decode-error", "skip"], capsys)
    assert code == 0, err
    assert re.search(r"1 document.* skipped", out), out
    (ws / "mixed").mkdir()
    shutil.copy(ws / "nul.txt", ws / "mixed")
    shutil.copy(ws / "corpus.txt", ws / "mixed")
    code, out, err = run_cli(["prepare", "mixed", "--tokenizer", "bytes", "--out", "d3", "--workers", "1", "-q"],
                             capsys)
    assert code == 0, err
    assert re.search(r"1 binary file skipped", out), out


def test_prepare_progress_counts_text_bytes(ws, capsys):
    (ws / "big.txt.gz").write_bytes(gzip.compress(b"the same line of text, again and again\n" * 5000))
    code, out, err = run_cli(["prepare", "big.txt.gz", "--tokenizer", "bytes", "--out", "d1", "--workers", "1"],
                             capsys)
    assert code == 0, err
    assert "/195k" in err, err  # the bar's total: 195,000 bytes of text (the file on disk is ~1 kB)
    assert "0.2 MB" in out


# ---------------------------------------------------------------------------- generation

def test_batched_generation_decodes_without_padding(ws):
    import gptkit
    model = gptkit.load_model("run")
    tok = model.tokenizer
    out = model.generate([tok.encode("a"), tok.encode("a much longer prompt")], max_new_tokens=3)
    text = tok.decode(out[0], skip_special_tokens=True)
    assert text.startswith("a") and "<|endoftext|>" not in text


def test_readme_num_return_sequences_matches_the_code(ws):
    import gptkit
    from gptkit.errors import GptkitError
    model = gptkit.load_model("run")
    ids = torch.tensor([model.tokenizer.encode("summarize:")])
    with pytest.raises(GptkitError, match="do_sample"):
        model.generate(ids, num_return_sequences=5)
    assert model.generate(ids, num_return_sequences=5, do_sample=True, max_new_tokens=2).shape[0] == 5
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "and says so" not in readme
    assert re.search(r"model\.generate\(ids, num_return_sequences=5\)` (is an error|raises)", readme)


@pytest.mark.parametrize("dtype,quantize", [(None, None), ("bfloat16", None), ("float16", None), (None, "int8"),
                                            ("bfloat16", "int8")])
def test_load_and_generate_in_any_grad_mode(ws, dtype, quantize):
    import gptkit
    modes = {"inference_mode": torch.inference_mode, "no_grad": torch.no_grad, "plain": torch.enable_grad}
    for load_mode in modes.values():
        with load_mode():
            model = gptkit.load_model("run", dtype=dtype, quantize=quantize)
        for gen_mode in modes.values():
            with gen_mode():
                out = model.generate([[1, 2, 3]], max_new_tokens=2)
                assert out.shape == (1, 5)
                model(torch.tensor([[1, 2, 3]]))
