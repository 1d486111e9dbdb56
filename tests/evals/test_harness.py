"""gptkit as an lm-eval model: parity with lm-eval's own `hf` model on the same weights, offline,
with local task files the tests write; `gptkit eval --tasks` and its bad input."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from gptkit import GptkitError

lm_eval = pytest.importorskip("lm_eval")
pytest.importorskip("transformers")

WORDS = "the cat dog sat ran on a mat hat big small red blue and then over under".split()


def _sentence(rng, lo, hi):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A random transformers GPT-2 (bytes tokenizer) and three local tasks: multiple choice, rolling
    log-likelihood (perplexity) and greedy generation until a stop string."""
    from conftest import build_random_gpt2
    root = tmp_path_factory.mktemp("harness")
    build_random_gpt2(root / "model", n_positions=96, std=0.02)
    rng = random.Random(0)
    mc = [{"context": _sentence(rng, 3, 12) + rng.choice(["", " "]), "label": rng.randrange(4),
           "choices": [_sentence(rng, 1, 4) for _ in range(4)]} for _ in range(16)]
    mc[0]["context"] = ""  # an empty context: scored after the end-of-text token, as lm-eval does
    (root / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mc))
    docs = [{"text": " ".join(_sentence(rng, 5, 40) for _ in range(rng.randint(1, 6)))} for _ in range(6)]
    (root / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in docs))
    common = "dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {}\ntest_split: test\n"
    (root / "tasks").mkdir()
    (root / "tasks" / "tiny_mc.yaml").write_text(
        "task: tiny_mc\n" + common.format(root / "mc.jsonl") + "output_type: multiple_choice\n"
        "doc_to_text: '{{context}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: label\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    (root / "tasks" / "tiny_ppl.yaml").write_text(
        "task: tiny_ppl\n" + common.format(root / "docs.jsonl") + "output_type: loglikelihood_rolling\n"
        "doc_to_text: ''\ndoc_to_target: '{{text}}'\nmetric_list:\n  - metric: word_perplexity\n")
    (root / "tasks" / "tiny_gen.yaml").write_text(
        "task: tiny_gen\n" + common.format(root / "mc.jsonl") + "output_type: generate_until\n"
        "doc_to_text: '{{context}}'\ndoc_to_target: '{{choices[0]}}'\n"
        "generation_kwargs:\n  until: [' the']\n  max_gen_toks: 12\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n")
    return root


def _evaluate(model, setup, tasks, **kw):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    tm = TaskManager(include_path=str(setup / "tasks"), include_defaults=False)
    return simple_evaluate(model=model, tasks=tasks, task_manager=tm, log_samples=True, **kw)


@pytest.fixture(scope="module")
def both(setup):
    from gptkit.evals.harness import GptkitLM
    tasks = ["tiny_mc", "tiny_ppl", "tiny_gen"]
    hf = _evaluate("hf", setup, tasks, model_args=f"pretrained={setup / 'model'},dtype=float32", device="cpu",
                   batch_size=4)
    ours = _evaluate(GptkitLM(pretrained=str(setup / "model"), dtype="float32", batch_size=5), setup, tasks)
    return hf, ours


def test_same_accuracy_and_per_request_loglikelihood_as_lm_evals_hf_model(both):
    hf, ours = both
    for metric in ("acc,none", "acc_norm,none"):
        assert ours["results"]["tiny_mc"][metric] == hf["results"]["tiny_mc"][metric]
    n = 0
    for a, b in zip(hf["samples"]["tiny_mc"], ours["samples"]["tiny_mc"], strict=True):
        for choice, (lp_hf, greedy_hf), (lp, greedy) in zip(
                b["doc"]["choices"], (r[0] for r in a["resps"]), (r[0] for r in b["resps"]), strict=True):
            # within 1e-5 per token (bytes tokenizer: one token per byte, and the delimiter): hf sums
            # its fp32 log-probabilities in fp32, whose rounding at -100 is already 8e-6
            assert lp == pytest.approx(lp_hf, abs=1e-5 * (len(choice) + 1))
            assert greedy == greedy_hf
            n += 1
    assert n == 64


def test_rolling_loglikelihood_matches_hf_over_windows(both):
    """Documents longer than the 96-token context are scored in lm-eval's disjoint windows."""
    hf, ours = both
    for a, b in zip(hf["samples"]["tiny_ppl"], ours["samples"]["tiny_ppl"], strict=True):
        assert b["resps"][0][0] == pytest.approx(a["resps"][0][0], abs=1e-4, rel=1e-6)
    assert max(len(s["doc"]["text"]) for s in ours["samples"]["tiny_ppl"]) > 96  # windows were needed
    assert ours["results"]["tiny_ppl"]["word_perplexity,none"] == pytest.approx(
        hf["results"]["tiny_ppl"]["word_perplexity,none"], rel=1e-5)


def test_greedy_generation_until_a_stop_string_matches_hf(both):
    hf, ours = both
    texts = [s["resps"][0][0] for s in ours["samples"]["tiny_gen"]]
    assert texts == [s["resps"][0][0] for s in hf["samples"]["tiny_gen"]]
    assert any(texts) and not any(" the" in t for t in texts)


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gptkit", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_eval_tasks_from_the_command_line_with_output_and_report(setup, tmp_path):
    out, rep = tmp_path / "r.json", tmp_path / "card"
    r = run_cli("eval", "--model", setup / "model", "--tasks", f"{setup / 'tasks' / 'tiny_mc.yaml'},{setup / 'mc.jsonl'}",
                "--batch-size", 16, "--output", out, "--report", rep, "--limit", 8)
    assert r.returncode == 0, r.stderr
    assert "tiny_mc" in r.stdout and "acc_norm" in r.stdout
    got = json.loads(out.read_text())["tasks"]
    assert got["tiny_mc"]["n"] == 8 and got["mc"]["n"] == 8
    # the same questions through lm-eval and through gptkit's own scorer: the same accuracy
    assert got["tiny_mc"]["acc"] == pytest.approx(got["mc"]["acc"])
    assert got["tiny_mc"]["chance"] == pytest.approx(0.25)
    card = json.loads((rep / "report.json").read_text())
    assert card["tasks"]["mc"]["centred"] == pytest.approx((got["mc"]["acc_norm"] - 0.25) / 0.75)
    assert "| mc | 8 |" in (rep / "REPORT.md").read_text()
    again = run_cli("eval", "--model", setup / "model", "--tasks", setup / "mc.jsonl", "--output", out, "--report", rep)
    assert again.returncode == 0, again.stderr  # its own results file and report card are replaced
    assert json.loads(out.read_text())["tasks"]["mc"]["n"] == 16


@pytest.mark.parametrize("extra, msg", [
    (["--tasks", "no_such_task_xyz"], "unknown task 'no_such_task_xyz'"),
    (["--tasks", "missing.jsonl"], "task file missing.jsonl not found"),
    (["--tasks", "BAD"], r"bad\.jsonl:1: label 7 is out of range for 2 choices"),
    (["--tasks", "NOCHOICE"], "has no choices"),
    (["--tasks", "LONG"], "needs .* tokens .* but the model's context is 96"),
    (["--tasks", "OK", "--limit", "0"], "--limit must be >= 1"),
    (["--limit", "3"], "give --data .*, --tasks .* or both"),
    (["--tasks", "OK", "--output", "."], r"--output \. is a directory"),
    (["--tasks", "OK", "--output", "nope/x.json"], "the directory nope does not exist"),
    (["--tasks", "OK", "--output", "OK"], "is the input ok.jsonl: gptkit never writes over its inputs"),
    (["--tasks", "OK", "--output", "FOREIGN"], "exists and gptkit did not write it"),
    (["--tasks", "OK", "--report", "."], "--report . holds the input ok.jsonl"),
    (["--tasks", "OK", "--report", "FOREIGNDIR"], "already holds notes.txt, which gptkit did not write there"),
])
def test_bad_task_input_is_one_line(setup, tmp_path, extra, msg):
    from test_hostile import assert_refused, snapshot
    files = {"BAD": ("bad.jsonl", {"context": "a", "choices": ["x", "y"], "label": 7}),
             "NOCHOICE": ("noc.jsonl", {"context": "a", "choices": [], "label": 0}),
             "LONG": ("long.jsonl", {"context": "word " * 200, "choices": ["x", "y"], "label": 0}),
             "OK": ("ok.jsonl", {"context": "a", "choices": ["x", "y"], "label": 0}),
             "FOREIGN": ("notes.json", {"mine": "a user's file"})}
    for i, a in enumerate(extra):
        if a == "FOREIGNDIR":
            (tmp_path / "mine").mkdir()
            (tmp_path / "mine" / "notes.txt").write_text("a user's notes\n")
            extra[i] = "mine"
        if a in files:
            name, row = files[a]
            (tmp_path / name).write_text(json.dumps(row) + "\n")
            extra[i] = name
    before = snapshot(tmp_path)
    r = run_cli("eval", "--model", setup / "model", *extra, cwd=tmp_path)
    assert_refused(tmp_path, before, r.returncode, r.stderr, msg)


def test_model_without_a_tokenizer_is_refused_by_name(tmp_path):
    from gptkit import load_model
    from gptkit.evals.harness import model_tokenizer

    from conftest import build_random_gpt2
    build_random_gpt2(tmp_path, tokenizer=False)
    with pytest.raises(GptkitError, match="no tokenizer"):
        model_tokenizer(load_model(tmp_path), str(tmp_path))


@pytest.mark.slow
def test_lm_evals_own_command_line_with_gptkit_registered(setup):
    r = subprocess.run([sys.executable, "-m", "gptkit.evals.harness", "run", "--model", "gptkit", "--model_args",
                        f"pretrained={setup / 'model'}", "--tasks", "tiny_mc", "--include_path", str(setup / "tasks"),
                        "--limit", "4"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "|tiny_mc|" in r.stdout and "acc_norm" in r.stdout
