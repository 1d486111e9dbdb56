"""`gptkit generate` against the Python API."""
import json

from gptkit.cli import main
from gptkit.generate import generate_text


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_matches_the_python_api(tiny, capsys):
    _, m = tiny
    d = m.source
    code, out, err = cli(capsys, "generate", "--model", d, "Hello", "Hi", "--no-do-sample", "--max-new-tokens", "12",
                         "--dtype", "float32", "--json", "--no-stream")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    ref = generate_text(m, m.tokenizer, ["Hello", "Hi"], max_new_tokens=12)
    assert [r["text"] for r in rows] == [r["text"] for r in ref]
    assert [r["token_ids"] for r in rows] == [r["token_ids"] for r in ref]
    assert [r["index"] for r in rows] == [0, 1] and rows[1]["prompt"] == "Hi"
    code, out, err = cli(capsys, "generate", "--model", d, "Hello", "--num-beams", "3", "--num-return-sequences", "2",
                         "--length-penalty", "0.5", "--early-stopping", "true", "--max-new-tokens", "8",
                         "--dtype", "float32", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    ids = m.generate([m.tokenizer.encode("Hello")], max_new_tokens=8, num_beams=3, num_return_sequences=2,
                     length_penalty=0.5, early_stopping=True)
    for r, row in zip(rows, ids[:, 5:].tolist()):
        assert row[: len(r["token_ids"])] == r["token_ids"]


def test_cli_streams_and_reports_errors(tiny, capsys):
    _, m = tiny
    d = m.source
    code, out, err = cli(capsys, "generate", "--model", d, "Hello", "--stream", "--seed", "3", "--top-p", "0.9",
                         "--max-new-tokens", "30", "--dtype", "float32")
    assert code == 0, err
    ref = generate_text(m, m.tokenizer, "Hello", max_new_tokens=30, do_sample=True, seed=3, top_p=0.9)[0]
    assert out == "Hello" + ref["text"] + "\n"
    code, out, err = cli(capsys, "generate", "--model", d, "Hello", "-n", "2", "--no-do-sample")
    assert code == 2 and "needs do_sample=True" in err and out == ""
    code, out, err = cli(capsys, "generate", "--model", d, "x" * 60, "--max-new-tokens", "10", "--stream")
    assert code == 2 and "--context truncate" in err and out == ""
    code, out, err = cli(capsys, "generate", "--model", d, "x" * 60, "--max-new-tokens", "10", "--context",
                         "truncate", "--quantize", "int8", "--json")
    assert code == 0 and "gptkit: warning: " in err and "last 54 prompt tokens" in err
