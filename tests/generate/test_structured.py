"""generate(json_schema=..., regex=...): every output parses and validates, for every tokenizer kind
(GPT-2's, a trained BPE, bytes), over many seeds; the CLI's --json-schema FILE and --regex."""
import json
import re

import pytest
import torch

from gptkit.cli import main
from gptkit.generate import generate_text
from gptkit.model import GPT, GPTConfig
from gptkit.tokenizer import bytes_tokenizer, gpt2_tokenizer

pytest.importorskip("llguidance")
jsonschema = pytest.importorskip("jsonschema")

SCHEMA = {  # bounded: every complete output is short, so a random model always finishes it
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "kind": {"enum": ["cat", "dog"]},
        "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 2},
    },
    "required": ["name", "age", "kind", "tags"],
    "additionalProperties": False,
}


def tiny_gpt(vocab: int, pad: int = 0) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab + pad, n_positions=256, n_embd=32, n_layer=2, n_head=2)).eval()


@pytest.fixture(scope="module", params=["gpt2", "bpe", "bytes"])
def tok(request, small_bpe):
    return {"gpt2": gpt2_tokenizer, "bpe": lambda: small_bpe, "bytes": bytes_tokenizer}[request.param]()


def test_every_sampled_output_validates(tok):
    model = tiny_gpt(tok.vocab_size, pad=5)  # padded logits beyond the tokenizer: never sampled
    texts = []
    for seed in range(10):  # 10 seeds x 10 samples = 100 outputs per tokenizer
        out = generate_text(model, tok, "x", json_schema=SCHEMA, max_new_tokens=120, do_sample=True, top_k=0,
                            num_return_sequences=10, seed=10 * seed)  # sample j draws with seed + j
        assert all(r["finish_reason"] == "eos" for r in out)
        texts += [r["text"] for r in out]
    for text in texts:
        jsonschema.validate(json.loads(text), SCHEMA)
    assert len(set(texts)) > 20  # sampled, not one forced answer


def test_regex_greedy_and_streamed_agree(tok):
    model = tiny_gpt(tok.vocab_size)
    pattern = r"[0-9]{3}-[a-z]{2,4}"
    r = generate_text(model, tok, ["ab", "a longer prompt"], regex=pattern, max_new_tokens=40)
    assert all(re.fullmatch(pattern, x["text"]) and x["finish_reason"] == "eos" for x in r)
    assert "".join(model.stream("ab", tokenizer=tok, regex=pattern, max_new_tokens=40)) == r[0]["text"]


def test_json_object_and_unconstrained_rows_are_unchanged():
    tok = bytes_tokenizer()
    model = tiny_gpt(tok.vocab_size)
    plain = generate_text(model, tok, "x", max_new_tokens=10)
    assert generate_text(model, tok, "x", max_new_tokens=10)[0] == plain[0]
    obj = generate_text(model, tok, "x", json_schema={"type": "object", "properties": {"a": {"type": "boolean"}},
                                                      "required": ["a"], "additionalProperties": False},
                        max_new_tokens=30)[0]
    assert json.loads(obj["text"]) in ({"a": True}, {"a": False})


@pytest.mark.parametrize("kw, why", [
    (dict(regex="a(b"), "regex cannot be compiled"),
    (dict(regex=r"[^\s\S]"), "matches no text"),
    (dict(json_schema={"type": "strin"}), "Invalid type: strin"),
    (dict(json_schema={"type": "integer"}, regex="1"), "cannot be combined"),
    (dict(regex="1", num_beams=2), "num_beams must be 1"),
])
def test_bad_constraints_fail_before_decoding(kw, why):
    tok = bytes_tokenizer()
    with pytest.raises(Exception, match=why):
        generate_text(tiny_gpt(tok.vocab_size), tok, "x", max_new_tokens=5, **kw)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from conftest import save_tiny_bytes_gpt
    return str(save_tiny_bytes_gpt(tmp_path_factory.mktemp("structured")))


def test_cli_json_schema_file_and_regex(saved, capsys, tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    code = main(["generate", "--model", saved, "hi", "--json-schema", str(schema), "--seed", "3",
                 "--max-new-tokens", "120", "--dtype", "float32", "--json", "--no-stream"])
    out, err = capsys.readouterr()
    assert code == 0, err
    row = json.loads(out)
    assert row["finish_reason"] == "eos"
    value = json.loads(row["text"])
    jsonschema.validate(value, SCHEMA)
    assert list(value) == list(SCHEMA["properties"])  # in the schema's order
    code = main(["generate", "--model", saved, "hi", "--regex", "(yes|no)", "--no-do-sample",
                 "--max-new-tokens", "8", "--dtype", "float32", "--no-stream"])
    out, err = capsys.readouterr()
    assert code == 0 and out.strip() in ("hiyes", "hino"), err


@pytest.mark.parametrize("argv, why", [
    (["--json-schema", "MISSING"], "--json-schema .*MISSING: no such file"),
    (["--json-schema", "BAD"], "not a JSON file"),
    (["--regex", "a(b"], "regex cannot be compiled"),
])
def test_cli_bad_constraint_is_one_line(saved, capsys, tmp_path, argv, why):
    (tmp_path / "BAD").write_text("{")
    argv = [str(tmp_path / a) if a in ("MISSING", "BAD") else a for a in argv]
    code = main(["generate", "--model", saved, "hi", *argv, "--max-new-tokens", "8", "--dtype", "float32"])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert re.search(why, err) and len(err.strip().splitlines()) == 1, err
