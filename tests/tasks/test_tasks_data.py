"""Task data, templates, k-shot selection, bad input."""
import json

import pytest

from gptkit.errors import GptkitError
from gptkit.tasks.data import read_examples, split_examples
from gptkit.tasks.templates import Template, builtin, check_format, load_template, select_shots


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def pairs(n):
    return [{"source": f"source sentence {i}", "target": f"target {i}"} for i in range(n)]


def test_jsonl_csv_tsv_parquet_read_the_same(tmp_path):
    rows = pairs(5) + [{"source": 'a "quoted", comma\tsource', "target": "t, with comma"}]
    a = read_examples(write_jsonl(tmp_path / "d.jsonl", rows))
    import csv
    for fmt, delim in (("csv", ","), ("tsv", "\t")):
        with open(tmp_path / f"d.{fmt}", "w", newline="") as f:
            w = csv.DictWriter(f, ["source", "target"], delimiter=delim)
            w.writeheader()
            w.writerows(rows)
        b = read_examples(tmp_path / f"d.{fmt}")
        assert [(e.source, e.target) for e in b] == [(e.source, e.target) for e in a]
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    c = read_examples(tmp_path / "d.parquet")
    assert [(e.source, e.target) for e in c] == [(e.source, e.target) for e in a]
    assert a[2].origin.endswith("d.jsonl:3")


def test_configurable_fields_and_no_target(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"en": "hello", "de": "hallo", "id": 7}])
    ex = read_examples(p, source_field="en", target_field="de")
    assert (ex[0].source, ex[0].target, ex[0].extra) == ("hello", "hallo", {"id": 7})
    ex = read_examples(write_jsonl(tmp_path / "s.jsonl", [{"source": "x"}]), require_target=False)
    assert ex[0].target is None


@pytest.mark.parametrize("line,msg", [
    ('{"source": "a", "target": "b"', "d.jsonl:2: not a JSON object"),
    ('{"source": "a"}', "d.jsonl:2: no field 'target'"),
    ('{"target": "b"}', "d.jsonl:2: no field 'source'"),
    ('{"source": "a", "target": "  "}', "d.jsonl:2: empty target"),
    ('{"source": "", "target": "b"}', "d.jsonl:2: empty source"),
    ('{"source": 3, "target": "b"}', "d.jsonl:2: field 'source' is int"),
    ('[1, 2]', "d.jsonl:2: expected a JSON object"),
])
def test_bad_lines_one_clear_error(tmp_path, line, msg):
    p = write_jsonl(tmp_path / "d.jsonl", [pairs(1)[0], line])
    with pytest.raises(GptkitError) as e:
        read_examples(p)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_split_is_deterministic_disjoint_and_order_free(tmp_path):
    rows = pairs(2000)
    ex = read_examples(write_jsonl(tmp_path / "d.jsonl", rows))
    s1 = split_examples(ex, 0.1, 0.1, seed=3)
    s2 = split_examples(list(reversed(ex)), 0.1, 0.1, seed=3)
    for k in s1:
        assert sorted(e.source for e in s1[k]) == sorted(e.source for e in s2[k])
    srcs = [set(e.source for e in s1[k]) for k in ("train", "val", "test")]
    assert not (srcs[0] & srcs[1] or srcs[0] & srcs[2] or srcs[1] & srcs[2])
    assert 150 < len(s1["test"]) < 250 and 150 < len(s1["val"]) < 250
    s3 = split_examples(ex, 0.1, 0.1, seed=4)
    assert {e.source for e in s3["test"]} != srcs[2]


def test_split_by_group_keeps_groups_together(tmp_path):
    rows = [{"source": f"s{i}", "target": "t", "group": f"file{i // 10}"} for i in range(1000)]
    s = split_examples(read_examples(write_jsonl(tmp_path / "d.jsonl", rows)), 0.1, 0.2)
    groups = [{e.group for e in s[k]} for k in ("train", "val", "test")]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])


def test_builtin_templates_render():
    s = builtin("summarize")
    assert s.render("An article.") == "An article.\nTL;DR:"
    assert s.render_pair("An article.", "Short.") == ("An article.\nTL;DR:", " Short.")
    t = builtin("translate", "en", "de")
    assert t.render("Open file") == "English: Open file\nGerman:"
    from gptkit.tasks.data import Example
    shots = [Example("Cancel", "Abbrechen"), Example("Save", "Speichern")]
    assert t.render("Open file", shots) == ("English: Cancel\nGerman: Abbrechen\n\nEnglish: Save\nGerman: Speichern\n\n"
                                            "English: Open file\nGerman:")
    assert s.render("x", shots) == "x\nTL;DR:"  # no {examples}: shots are not used


@pytest.mark.parametrize("text,message", [
    ("Summarize this:\n", "no {source} placeholder"), ("{text}", "unknown placeholder {text}"),
    ("{source!r}", "no format spec"), ("{source.__class__}", "unknown placeholder"),
    ("{source} {", "not a valid format string")])
def test_bad_templates_are_refused(text, message):
    with pytest.raises(GptkitError, match=message):
        Template(text)


def test_template_checks():
    with pytest.raises(GptkitError, match="--target-lang"):
        builtin("translate")
    assert check_format("{{literal}} {source}") == ("source",)
    assert Template("{{x}} {source}").render("s") == "{x} s"


def test_user_template_files(tmp_path):
    (tmp_path / "t.txt").write_text("Text: {source}\nSummary:\n")
    t = load_template(tmp_path / "t.txt")
    assert t.render("abc") == "Text: abc\nSummary:" and t.target_prefix == " "
    (tmp_path / "t.json").write_text(json.dumps({"prompt": "Q: {source}\nA: ", "stop": ["\n\n"]}))
    t = load_template(tmp_path / "t.json")
    assert t.target_prefix == "" and t.stop == ("\n\n",)
    (tmp_path / "bad.txt").write_text("no placeholder here\n")
    with pytest.raises(GptkitError, match="no {source} placeholder"):
        load_template(tmp_path / "bad.txt")
    with pytest.raises(GptkitError, match="no such file"):
        load_template(tmp_path / "missing.txt")


def test_k_shot_never_leaks_test_examples(tmp_path):
    rows = pairs(500)
    rows += [{"source": "source sentence 1", "target": "dup"}]  # a duplicate source: same split as its twin
    s = split_examples(read_examples(write_jsonl(tmp_path / "d.jsonl", rows)), 0.1, 0.1, seed=0)
    test_src = {e.source for e in s["test"]} | {e.source for e in s["val"]}
    test_tgt = {e.target for e in s["test"]} | {e.target for e in s["val"]}
    t = builtin("translate", "en", "de")
    for seed in range(5):
        shots = select_shots(s["train"], 4, seed=seed)
        assert len(shots) == 4 and not ({x.source for x in shots} & test_src)
        for ex in s["test"]:
            prompt = t.render(ex.source, shots)
            shot_part = prompt[:prompt.rindex("English: ")]
            assert not any(src + "\n" in shot_part for src in test_src)
            assert not any(f"German: {tgt}\n" in shot_part for tgt in test_tgt)
    assert select_shots(s["train"], 3, seed=1) == select_shots(s["train"], 3, seed=1)
    with pytest.raises(GptkitError, match="only"):
        select_shots(s["train"][:2], 3)
