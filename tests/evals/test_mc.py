"""Multiple-choice task files: checked line by line, converted from HellaSwag, scored."""
from __future__ import annotations

import json

import pytest
import torch

from gptkit import GptkitError
from gptkit.evals.mc import accuracy, convert_hellaswag, load_task, load_tasks, score_task


def write_task(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("row, msg", [
    ("{not json", r"bad\.jsonl:2: not valid JSON"),
    ({"context": "a", "choices": [], "label": 0}, r"bad\.jsonl:2: 'choices' must be a non-empty list .*no choices"),
    ({"context": "a", "choices": ["x", "y"], "label": 2}, r"bad\.jsonl:2: label 2 is out of range for 2 choices"),
    ({"context": "a", "choices": ["x", "y"], "label": -1}, "label -1 is out of range"),
    ({"context": "a", "choices": ["x", "y"], "label": True}, "'label' must be an integer"),
    ({"context": "a", "choices": ["x", ""], "label": 0}, "every choice must be a non-empty string"),
    ({"choices": ["x"], "label": 0}, "'context' must be a string"),
    ([1, 2], "expected a JSON object"),
])
def test_bad_task_lines_are_one_error_naming_file_and_line(tmp_path, row, msg):
    path = write_task(tmp_path / "bad.jsonl", [{"context": "ok", "choices": ["a", "b"], "label": 1}, row])
    with pytest.raises(GptkitError, match=msg):
        load_task(path)


def test_missing_empty_and_clashing_task_files(tmp_path):
    with pytest.raises(GptkitError, match="no such task file"):
        load_task(tmp_path / "nope.jsonl")
    with pytest.raises(GptkitError, match="no questions"):
        load_task(write_task(tmp_path / "empty.jsonl", []))
    (tmp_path / "b").mkdir()
    row = [{"context": "c", "choices": ["a"], "label": 0}]
    a, b = write_task(tmp_path / "t.jsonl", row), write_task(tmp_path / "b" / "t.jsonl", row)
    with pytest.raises(GptkitError, match="two task files are named 't'"):
        load_tasks(f"{a},{b}")


def test_convert_hellaswag(tmp_path):
    src = write_task(tmp_path / "hs.jsonl", [
        {"ind": 4, "activity_label": "Cooking", "ctx": "A man cracks an egg. He", "endings": ["e1", "e2", "e3", "e4"],
         "label": 2, "split": "val"},
        {"ctx": "She", "endings": ["a", "b", "c", "d"], "label": "3"},  # the datasets copy: label as a string
    ])
    assert convert_hellaswag(src, tmp_path / "out.jsonl") == 2
    task = load_task(tmp_path / "out.jsonl")
    assert task.name == "out" and task.chance == 0.25
    assert [(q.context, q.choices, q.label) for q in task.questions] == [
        ("A man cracks an egg. He", ("e1", "e2", "e3", "e4"), 2), ("She", ("a", "b", "c", "d"), 3)]
    write_task(src, [{"ctx": "x", "endings": ["a"], "label": 5}])
    with pytest.raises(GptkitError, match=r"hs\.jsonl:1: label 5 is out of range"):
        convert_hellaswag(src, tmp_path / "out2.jsonl")
    assert not (tmp_path / "out2.jsonl").exists()


def test_accuracy_summed_and_per_character(tmp_path):
    task = load_task(write_task(tmp_path / "t.jsonl", [
        {"context": "q1", "choices": ["short", "a much longer answer"], "label": 1},
        {"context": "q2", "choices": ["x", "y", "z"], "label": 0},
    ]))
    # q1: the long choice loses on its sum (-10 < -4) but wins per character (-0.5 > -0.8)
    r = accuracy(task, [-4.0, -10.0, -1.0, -2.0, -3.0])
    assert (r["acc"], r["acc_norm"], r["n"]) == (0.5, 1.0, 2)
    assert r["chance"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert r["acc_stderr"] == pytest.approx((0.5 * 0.5 / 1) ** 0.5)


def _reference_lp(model, tok, context, choice):
    ctx, cont = tok.encode(context) or [tok.eot_id], tok.encode(" " + choice)  # no context: end-of-text
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ctx + cont[:-1]])), -1)[0, len(ctx) - 1:]
    return float(logp.gather(-1, torch.tensor(cont)[:, None]).sum())


def test_score_task_picks_the_choice_the_model_prefers(tiny, tmp_path):
    _, model = tiny
    tok = model.tokenizer
    rows = []
    for i, ctx in enumerate(["The cat sat on", "def f(x):", "Once upon a time", ""]):
        choices = ["the mat", "a dog", "print(x)", "there was"][i:] + ["zz"]
        lps = [_reference_lp(model, tok, ctx, c) for c in choices]
        rows.append({"context": ctx, "choices": choices, "label": max(range(len(lps)), key=lps.__getitem__)})
    task = load_task(write_task(tmp_path / "pref.jsonl", rows))
    assert score_task(model, task, tok, batch_size=3)["acc"] == 1.0
    for r in rows:  # every label moved off the model's choice
        r["label"] = (r["label"] + 1) % len(r["choices"])
    assert score_task(model, load_task(write_task(tmp_path / "pref.jsonl", rows)), tok)["acc"] == 0.0


def test_a_question_longer_than_the_context_is_refused(tiny, tmp_path):
    _, model = tiny  # n_positions 64, bytes tokenizer: one token per byte
    task = load_task(write_task(tmp_path / "long.jsonl", [{"context": "x" * 60, "choices": ["abcdef"], "label": 0}]))
    with pytest.raises(GptkitError, match=r"long\.jsonl: question 1 needs 66 tokens .* context is 64"):
        score_task(model, task, model.tokenizer)
