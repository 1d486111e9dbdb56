"""response_format (json_object, json_schema) on both endpoints, through the real openai client:
outputs that validate, greedy answers equal to generate(json_schema=...), and schemas that cannot
compile answered 400 without disturbing requests in flight."""
from __future__ import annotations

import concurrent.futures as cf
import json

import openai
import pytest

from gptkit.generate import generate_text

pytest_plugins = ["serve_helpers"]
pytest.importorskip("llguidance")
jsonschema = pytest.importorskip("jsonschema")

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99},
                                           "pet": {"enum": ["cat", "dog", "emu"]}, "ok": {"type": "boolean"}},
          "required": ["n", "pet", "ok"], "additionalProperties": False}
FORMAT = {"type": "json_schema", "json_schema": {"name": "pet", "schema": SCHEMA, "strict": True}}


def test_completions_json_schema_validates_and_greedy_matches_generate(client, reference):
    r = client.completions.create(model="tiny", prompt="Hello", max_tokens=60, temperature=0,
                                  extra_body={"response_format": FORMAT})
    exp = generate_text(reference, reference.tokenizer, "Hello", max_new_tokens=60, json_schema=SCHEMA)[0]
    assert r.choices[0].text == exp["text"] and r.choices[0].finish_reason == "stop"
    texts = []
    for seed in range(8):
        r = client.completions.create(model="tiny", prompt=["Hi", "def f("], max_tokens=60, n=4, seed=seed,
                                      extra_body={"response_format": FORMAT})
        assert all(c.finish_reason == "stop" for c in r.choices)
        texts += [c.text for c in r.choices]
    for t in texts:
        jsonschema.validate(json.loads(t), SCHEMA)
    assert len(set(texts)) > 4  # sampled (the served model is peaked: few distinct answers)


def test_chat_json_object_and_streamed_json_schema(chatml_server):
    client = openai.OpenAI(base_url=chatml_server.url + "/v1", api_key="x", max_retries=0)
    messages = [{"role": "user", "content": "Give me JSON"}]
    small = {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"],
             "additionalProperties": False}
    for seed in range(4):
        r = client.chat.completions.create(model="chatml", messages=messages, max_tokens=40, seed=seed,
                                           response_format={"type": "json_schema",
                                                            "json_schema": {"name": "a", "schema": small}})
        assert json.loads(r.choices[0].message.content) in ({"a": True}, {"a": False})
        assert r.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(model="chatml", messages=messages, max_tokens=200, seed=1,
                                                 stream=True, response_format=FORMAT))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(text), SCHEMA)
    r = client.chat.completions.create(model="chatml", messages=messages, max_tokens=200, temperature=0,
                                       response_format={"type": "json_object"})
    if r.choices[0].finish_reason == "stop":  # a random model may not close its object in 200 tokens
        assert isinstance(json.loads(r.choices[0].message.content), dict)
    assert r.choices[0].message.content.startswith("{")


@pytest.mark.parametrize("fmt, why", [
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}, "Invalid type: strin"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": 3,
                                                                      "maximum": 1}}}, "response_format"),
    ({"type": "json_schema", "json_schema": {"name": "x"}}, "needs json_schema.schema"),
    ({"type": "json_schema"}, "needs json_schema.schema"),
    ({"type": "xml"}, "response_format"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {}, "bogus": 1}}, "unknown field"),
])
def test_bad_formats_are_400_and_leave_requests_in_flight_alone(client, reference, fmt, why):
    with cf.ThreadPoolExecutor(1) as pool:
        busy = pool.submit(client.completions.create, model="tiny", prompt="The quick", max_tokens=40,
                           temperature=0)
        with pytest.raises(openai.BadRequestError, match=why) as e:
            client.completions.create(model="tiny", prompt="a", max_tokens=5, extra_body={"response_format": fmt})
        assert e.value.param == "response_format" and "\n" not in e.value.message
        exp = generate_text(reference, reference.tokenizer, "The quick", max_new_tokens=40)[0]["text"]
        assert busy.result().choices[0].text == exp
