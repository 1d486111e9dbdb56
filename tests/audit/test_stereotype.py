"""Stereotype preference: pairs read from CrowS-Pairs CSV or JSON lines, refused with one line when
a field is missing; a model prefers the sentence it was trained on."""
# ruff: noqa: F811
from __future__ import annotations

import json

import pytest
from audit_models import memorised, plain_data  # noqa: F401 (the fixtures; the tests take them as arguments)

from gptkit.audit.stereotype import read_pairs, run
from gptkit.errors import GptkitError
from gptkit.hf import load_model
from gptkit.tokenizer import Tokenizer

HEADER = ",sent_more,sent_less,stereo_antistereo,bias_type,annotations,anon_writer,anon_annotators\n"


def test_reads_the_crows_pairs_csv_and_jsonl(tmp_path):
    (tmp_path / "p.csv").write_text(HEADER + '0,"He is, well, a man.",She is a woman.,stereo,gender,[],a,[]\n')
    assert read_pairs(tmp_path / "p.csv") == [{"sent_more": "He is, well, a man.", "sent_less": "She is a woman.",
                                               "bias_type": "gender"}]
    (tmp_path / "p.jsonl").write_text(json.dumps({"sent_more": "a", "sent_less": "b", "bias_type": "age"}) + "\n\n")
    assert read_pairs(tmp_path / "p.jsonl")[0]["bias_type"] == "age"


@pytest.mark.parametrize("name,text,pattern", [
    ("p.csv", "sent_more,sent_less\nx,y\n", "header lacks field 'bias_type'"),
    ("p.csv", "sent_more,sent_less,bias_type\nx,,age\n", r"p.csv:2: the pair lacks field 'sent_less'"),
    ("p.jsonl", '{"sent_more": "x", "bias_type": "age"}\n', r"p.jsonl:1: the pair lacks field 'sent_less'"),
    ("p.jsonl", '{"sent_more": "x",\n', r"p.jsonl:1: not valid JSON"),
    ("p.jsonl", "[1, 2]\n", "not an object"),
    ("p.csv", "", "header lacks field"),
    ("p.jsonl", "\n", "holds no pairs"),
])
def test_bad_pairs_files_are_one_clear_error(tmp_path, name, text, pattern):
    (tmp_path / name).write_text(text)
    with pytest.raises(GptkitError, match=pattern):
        read_pairs(tmp_path / name)


def test_missing_file(tmp_path):
    with pytest.raises(GptkitError, match="does not exist"):
        read_pairs(tmp_path / "none.csv")


def test_the_model_prefers_the_sentence_it_memorised(memorised, plain_data):
    from gptkit.audit.windows import count_sequence
    from gptkit.data import TokenShards
    tok, train = Tokenizer.load(plain_data), TokenShards(plain_data, "train")
    docs = [json.loads(line)["text"][:60] for line in (plain_data.parent / "corpus" / "docs.jsonl").read_text().splitlines()]
    seen = [d for d in docs if count_sequence(train, tok.encode(d))]  # the training split's documents
    assert len(seen) >= 3
    pairs = [{"sent_more": d, "sent_less": " ".join(reversed(d.split())), "bias_type": "age" if i % 2 else "gender"}
             for i, d in enumerate(seen)]
    pairs += [{"sent_more": p["sent_less"], "sent_less": p["sent_more"], "bias_type": "flipped"} for p in pairs]
    r = run(load_model(memorised), tok, pairs, 16, None, False)
    by = r["by_bias_type"]
    assert r["pairs"] == 2 * len(seen) and by["all"]["pairs"] == 2 * len(seen)
    assert by["age"]["stereotyped"] == 1.0 and by["gender"]["stereotyped"] == 1.0  # the trained-on sentence
    assert by["flipped"]["stereotyped"] == 0.0 and by["all"]["stereotyped"] == 0.5
    lo, hi = by["flipped"]["ci95"]
    assert lo == 0.0 < hi < 0.6


# lm-eval's own CrowS-Pairs tasks are Hub datasets (no network in tests): the same task shape as a local
# YAML task file on local JSON lines, with a process_docs filter as lm-eval's per-bias-type tasks have.
CROWS_TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: ''
doc_to_choice: '{{{{[sent_more, sent_less]}}}}'
doc_to_target: 0
target_delimiter: ''
metric_list:
  - metric: acc
"""


@pytest.fixture(scope="module")
def crows_task(tmp_path_factory):
    from conftest import build_random_gpt2
    root = tmp_path_factory.mktemp("crows")
    build_random_gpt2(root / "model", n_positions=96, std=0.3)
    words = "the old young man woman poor rich doctor nurse is was here there kind cruel".split()
    rows = [{"sent_more": " ".join(words[(i * 7 + j) % len(words)] for j in range(5)),
             "sent_less": " ".join(words[(i * 5 + j * 3) % len(words)] for j in range(6)),
             "stereo_antistereo": "stereo", "bias_type": ("age", "gender", "socioeconomic")[i % 3]} for i in range(24)]
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "tasks").mkdir()
    (root / "tasks" / "tiny_crows.yaml").write_text(CROWS_TASK.format(name="tiny_crows", data=root / "pairs.jsonl"))
    (root / "tasks" / "tiny_crows_age.yaml").write_text(
        CROWS_TASK.format(name="tiny_crows_age", data=root / "pairs.jsonl") + "process_docs: !function utils.only_age\n")
    (root / "tasks" / "utils.py").write_text(
        "def only_age(ds):\n    return ds.filter(lambda d: d['bias_type'].startswith('age'))\n")
    return root, rows


def test_an_lm_eval_task_gives_its_documents_filters_included(crows_task):
    from gptkit.audit.stereotype import load_pairs
    root, rows = crows_task
    keep = [{f: r[f] for f in ("sent_more", "sent_less", "bias_type")} for r in rows]
    assert load_pairs(root / "tasks" / "tiny_crows.yaml") == keep
    assert load_pairs(str(root / "tasks" / "tiny_crows_age.yaml")) == [r for r in keep if r["bias_type"] == "age"]
    assert load_pairs(root / "pairs.jsonl") == keep  # the same rows read as a pairs file


def test_the_stereotype_share_is_lm_evals_pct_stereotype(crows_task):
    """The audit's share of pairs where the stereotyped sentence is likelier equals what lm-eval
    scores on the same task and weights (its crows_pairs metric is that comparison, doc_to_target 0)."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from gptkit.audit.stereotype import load_pairs
    from gptkit.evals.harness import GptkitLM
    root, _ = crows_task
    model = load_model(root / "model")
    ours = run(model, model.tokenizer, load_pairs(root / "tasks" / "tiny_crows.yaml"), 8, None, False)
    tm = TaskManager(include_path=str(root / "tasks"), include_defaults=False)
    theirs = simple_evaluate(model=GptkitLM(pretrained=str(root / "model"), dtype="float32"), tasks=["tiny_crows"],
                             task_manager=tm)
    share = ours["by_bias_type"]["all"]["stereotyped"]
    assert 0.0 < share < 1.0  # a random model: both outcomes occur, so the comparison can fail
    assert share == theirs["results"]["tiny_crows"]["acc,none"]


def test_an_lm_eval_task_that_cannot_load_is_one_line(crows_task, tmp_path):
    from gptkit.audit.stereotype import load_pairs
    root, rows = crows_task
    (tmp_path / "gone.yaml").write_text(CROWS_TASK.format(name="tiny_gone", data=tmp_path / "missing.jsonl"))
    with pytest.raises(GptkitError, match="tiny_gone.*cannot load its documents"):
        load_pairs(tmp_path / "gone.yaml")
    (tmp_path / "short.jsonl").write_text(json.dumps({"sent_more": "a b", "sent_less": "c d"}) + "\n")
    (tmp_path / "short.yaml").write_text(CROWS_TASK.format(name="tiny_short", data=tmp_path / "short.jsonl"))
    with pytest.raises(GptkitError, match="lacks field 'bias_type'"):
        load_pairs(tmp_path / "short.yaml")
