"""Where every command may write (gptkit/outputs.py), driven through the CLI table-driven like
tests/test_hostile.py: an output that is one of the command's inputs (by path, symlink or hard
link), a file or directory gptkit did not write, a dangling link, a directory where a file goes, a
missing parent. Each case: one line `gptkit: error: ...`, a non-zero exit, no traceback, and the
workspace byte for byte as before (nothing overwritten, nothing left behind).

Below the table: what the rules still let through (a command's own earlier outputs, a link to a
directory gptkit made).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_hostile import assert_refused, run_cli, snapshot
from test_hostile_newer import FT, LRF, SUM, SWEEP, TR, _with, template  # noqa: F401 (the workspace fixture)
from test_hostile_newer import ws as newer_ws  # noqa: F401

pytest.importorskip("transformers")


@pytest.fixture
def ws(newer_ws):  # noqa: F811
    """The newer commands' workspace, plus a user's files where a careless --out would land."""
    w = newer_ws
    (w / "mine").mkdir()
    (w / "mine" / "results.csv").write_text("my,own\n1,2\n")
    (w / "mine" / "best.toml").write_text("# my notes\n")
    (w / "notes.txt").write_text("my notes, not gptkit's\n")
    (w / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    os.symlink("no-such-target", w / "dangling")
    os.link(w / "pairs.jsonl", w / "pairs-link.jsonl")
    os.symlink("pairs.jsonl", w / "pairs-sym.jsonl")
    os.symlink("out.jsonl", w / "out-sym.jsonl")
    return w


QUICK = ["--max-iters", "2", "--preset", "tiny", "--block-size", "16", "--batch-size", "4", "--samples", "0", "-q"]
OWN = r"gptkit never writes over its inputs"
FOREIGN = r"exists and gptkit did not write it"

# (id, argv, pattern the error line must match (case-insensitive))
CASES = [
    # -- score --out
    ("score-out-is-input", ["score", "out.jsonl", "--out", "out.jsonl"], r"--out out\.jsonl is the input out\.jsonl"),
    ("score-out-symlink-to-input", ["score", "out.jsonl", "--out", "out-sym.jsonl"], OWN),
    ("score-out-is-against", ["score", "out.jsonl", "--against", "out-dup.jsonl", "--out", "out-dup.jsonl"], OWN),
    ("score-out-foreign", ["score", "out.jsonl", "--out", "notes.txt"], r"notes\.txt " + FOREIGN),
    ("score-out-dir", ["score", "out.jsonl", "--out", "emptydir"], r"emptydir is a directory"),
    ("score-out-no-parent", ["score", "out.jsonl", "--out", "nodir/report.json"], r"nodir does not exist"),
    ("score-out-dangling", ["score", "out.jsonl", "--out", "dangling"], r"dangling is a symlink .* does not exist"),
    ("score-out-under-file", ["score", "out.jsonl", "--out", "notes.txt/r.json"], r"notes\.txt is a file"),
    # -- summarize / translate --out: never the input, --overwrite or not
    ("sum-out-is-data", [*SUM, "--data", "pairs.jsonl", "--out", "pairs.jsonl", "--overwrite"], OWN),
    ("sum-out-hardlink", [*SUM, "--data", "pairs.jsonl", "--out", "pairs-link.jsonl", "--overwrite"], OWN),
    ("sum-out-symlink", [*SUM, "--data", "pairs.jsonl", "--out", "pairs-sym.jsonl", "--overwrite"], OWN),
    ("sum-out-is-input", [*SUM, "--input", "pairs.txt", "--out", "pairs.txt", "--overwrite"], OWN),
    ("tr-out-is-shots", [*TR, "--data", "pairs.jsonl", "--shots", "1", "--shots-from", "out.jsonl", "--out",
                         "out.jsonl", "--overwrite"], OWN),
    ("sum-out-foreign-overwrite", [*SUM, "--data", "pairs.jsonl", "--out", "notes.txt", "--overwrite"], FOREIGN),
    ("sum-out-dir", [*SUM, "--data", "pairs.jsonl", "--out", "emptydir"], r"emptydir is a directory"),
    ("sum-out-dangling", [*SUM, "--data", "pairs.jsonl", "--out", "dangling"], r"dangling"),
    # -- sweep --out
    ("sweep-out-foreign", _with(SWEEP, "--out", "mine"),
     r"--out mine already holds best\.toml \(and 1 more\), which gptkit did not write"),
    ("sweep-out-run", _with(SWEEP, "--out", "run"), r"run already holds"),
    ("sweep-out-data", _with(SWEEP, "--out", "data"), r"is the input data"),
    ("sweep-out-file", _with(SWEEP, "--out", "notes.txt"),
     r"notes\.txt exists and is not a directory"),
    # -- lr-find --plot, before the ramp
    ("lrfind-plot-empty", [*_with(LRF, "--plot", ""), "--steps", "10"], r"--plot is empty"),
    ("lrfind-plot-dir", [*_with(LRF, "--plot", "emptydir"), "--steps", "10"],
     r"--plot emptydir is a directory"),
    ("lrfind-plot-no-parent", [*_with(LRF, "--plot", "nodir/lr.png"), "--steps", "10"],
     r"nodir does not exist"),
    ("lrfind-plot-foreign", [*_with(LRF, "--plot", "photo.png"), "--steps", "10"],
     r"photo\.png " + FOREIGN),
    # -- train / finetune: the run directory is never an input
    ("train-out-is-init-from", ["train", "--data", "data", "--init-from", "tiny", "--out", "tiny", *QUICK],
     r"--out tiny is \(or holds\) the input tiny"),
    ("train-out-is-data", ["train", "--data", "data", "--out", "data", *QUICK], r"the input data"),
    ("ft-out-is-init-from", _with(FT, "--out", "tiny"), r"the input tiny"),
    ("train-out-dangling", ["train", "--data", "data", "--out", "dangling", *QUICK], r"dangling"),
    # -- prepare --out
    ("prepare-out-dangling", ["prepare", "corpus.txt", "--tokenizer", "bytes", "--out", "dangling"],
     r"dangling is a symlink"),
    ("prepare-out-is-tokenizer", ["prepare", "corpus.txt", "--tokenizer", "data", "--out", "data", "--overwrite"],
     r"the input data"),
    # -- export
    ("export-out-foreign", ["export", "tiny", "notes.txt", "--overwrite"], FOREIGN),
    ("export-out-dangling", ["export", "tiny", "dangling"], r"dangling"),
]


@pytest.mark.parametrize("argv,pattern", [pytest.param(a, p, id=i) for i, a, p in CASES])
def test_writes(ws, capsys, argv, pattern):
    before = snapshot(ws)
    code, out, err = run_cli(argv, capsys, cwd=ws)
    assert_refused(ws, before, code, err, pattern)


def test_every_writing_command_is_covered():
    covered = {a[0] for _, a, _ in CASES}
    assert {"score", "summarize", "translate", "sweep", "lr-find", "train", "finetune", "prepare", "export"} <= covered


# ---------------------------------------------------------------------------- what is still allowed

def test_score_replaces_its_own_report(ws, capsys):
    for _ in range(2):
        code, out, err = run_cli(["score", "out.jsonl", "--out", "report.json", "--bootstrap", "10"], capsys)
        assert code == 0, err
    assert json.loads((ws / "report.json").read_text())["n"] == 5


def test_prepare_through_a_link_writes_its_target_and_keeps_the_link(ws, capsys):
    os.symlink("data", ws / "data-link")
    code, out, err = run_cli(["prepare", "corpus.txt", "--tokenizer", "bytes", "--out", "data-link", "--overwrite",
                              "--workers", "1", "-q"], capsys)
    assert code == 0, err
    assert (ws / "data-link").is_symlink() and os.readlink(ws / "data-link") == "data"
    assert (ws / "data" / "meta.json").is_file()
    assert not [p.name for p in ws.iterdir() if p.name.startswith(".data")], "a staging directory left behind"


def test_lr_find_replaces_its_own_plot(ws, capsys):
    argv = [*_with(LRF, "--plot", "lr.png"), "--steps", "10"]
    for _ in range(2):
        code, out, err = run_cli(argv, capsys)
        assert code == 0, err
    assert (ws / "lr.png").read_bytes().startswith(b"\x89PNG")
