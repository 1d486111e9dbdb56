"""`gptkit audit` end to end: the report, audit.json and plots of every part; and bad input refused
with one line, a non-zero exit and no traceback, leaving nothing behind."""
# ruff: noqa: F811
from __future__ import annotations

import json

import pytest
from audit_models import canary_data, canary_model, memorised, plain_data, write_corpus  # noqa: F401 (the fixtures; the tests take them as arguments)
from test_hostile import assert_refused, run_cli, snapshot

from gptkit.data import prepare

SMALL = ["--windows", "40", "--prompt-tokens", "4,16", "--suffix-tokens", "16", "--mi-tokens", "32", "--samples", "6",
         "--sample-tokens", "24", "-q"]

pytestmark = pytest.mark.filterwarnings("ignore:the validation split")


def test_audit_writes_the_report_json_and_plots(canary_model, canary_data, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"sent_more": f"the {w} is here", "sent_less": f"a {w} was there",
                                         "bias_type": t}) + "\n" for w, t in [("cat", "age"), ("dog", "age"), ("owl", "race")]))
    out = tmp_path / "audit"
    code, stdout, err = run_cli(["audit", "--model", str(canary_model), "--data", str(canary_data), "--out", str(out),
                                 "--pairs", str(pairs), *SMALL], capsys)
    assert code == 0, err
    r = json.loads((out / "audit.json").read_text())
    assert r["parts"] == ["extraction", "canaries", "membership", "pii", "stereotype"]
    assert sorted(r["plots"]) == ["exposure.png", "extraction.png", "membership.png"]
    for f in ["AUDIT.md", *r["plots"]]:
        assert (out / f).stat().st_size > 0
    md = (out / "AUDIT.md").read_text()
    for heading in ("## Canaries", "## Extraction", "## Membership inference", "## Personal data in samples",
                    "## Stereotype preference"):
        assert heading in md
    assert r["stereotype"]["by_bias_type"]["age"]["pairs"] == 2
    assert "canary exposure by copies planted" in stdout and "report:" in stdout
    meta = json.loads((canary_data / "meta.json").read_text())
    for c in meta["canaries"]["items"]:  # the report ranks the secrets, it does not print them
        assert f"{c['prefix']} {c['secret']}" not in md and f"{c['prefix']} {c['secret']}" not in json.dumps(r)


def test_parts_are_selectable(memorised, plain_data, tmp_path, capsys):
    out = tmp_path / "a"
    code, _, err = run_cli(["audit", "--model", str(memorised), "--data", str(plain_data), "--out", str(out),
                            "--parts", "membership", *SMALL], capsys)
    assert code == 0, err
    r = json.loads((out / "audit.json").read_text())
    assert r["parts"] == ["membership"] and "extraction" not in r and r["plots"] == ["membership.png"]


@pytest.fixture
def other_tokenizer_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("bpe")
    prepare([write_corpus(d / "c", 20, 30)], d / "data", tokenizer="bpe", vocab_size=300, progress=False, num_workers=1)
    return d / "data"


@pytest.mark.parametrize("case,pattern", [
    ("tokenizer", "another tokenizer"),
    ("no_canaries", "has no canaries.*--canaries"),
    ("pairs_field", "lacks field 'bias_type'"),
    ("pairs_missing", "does not exist"),
    ("stereotype_without_pairs", "--pairs.*is needed"),
    ("part", "unknown part 'canary'"),
    ("prompt_tokens", "--prompt-tokens"),
    ("context", "past the model's context"),
    ("out_foreign", "already holds pairs.csv, which gptkit did not write there"),
    ("out_is_data", "holds the input"),
])
def test_bad_input_is_one_clear_line(case, pattern, memorised, plain_data, other_tokenizer_data, tmp_path,
                                     monkeypatch, capsys):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "pairs.csv").write_text("sent_more,sent_less\na,b\n")
    monkeypatch.chdir(ws)
    base = ["audit", "--model", str(memorised), "--data", str(plain_data), "--out", "out", "-q"]
    argv = {
        "tokenizer": ["audit", "--model", str(memorised), "--data", str(other_tokenizer_data), "--out", "out"],
        "no_canaries": [*base, "--parts", "canaries"],
        "pairs_field": [*base, "--parts", "stereotype", "--pairs", "pairs.csv"],
        "pairs_missing": [*base, "--pairs", "nope.csv"],
        "stereotype_without_pairs": [*base, "--parts", "stereotype"],
        "part": [*base, "--parts", "canary"],
        "prompt_tokens": [*base, "--prompt-tokens", "8,x"],
        "context": [*base, "--prompt-tokens", "120", "--suffix-tokens", "32"],
        "out_foreign": [*base[:-3], "--out", ".", "-q"],  # a user's folder: the writing rule of every command
        "out_is_data": [*base[:-3], "--out", str(plain_data.parent), "-q"],
    }[case]
    before = snapshot(ws)
    code, _, err = run_cli(argv, capsys)
    assert_refused(ws, before, code, err, pattern)


def test_prepare_refuses_canaries_it_cannot_plant(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "c", 4, 10)
    for argv, pattern in [(["--canaries", "-1"], "--canaries.*0 to"), (["--canaries", "2", "--canary-digits", "0"],
                                                                        "--canary-digits"),
                          (["--canaries", "2", "--num-shards", "2"], "one-machine prepare")]:
        code, _, err = run_cli(["prepare", str(corpus), "--out", str(tmp_path / "d"), "-q", *argv], capsys)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and __import__("re").search(pattern, err), err
