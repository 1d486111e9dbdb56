"""/tokenize and /detokenize; usage (with the prefix cache's cached tokens) and logprobs in chat
streaming, as OpenAI's client reads them."""
from __future__ import annotations

import httpx
import openai

pytest_plugins = ["serve_helpers"]


def test_tokenize_and_detokenize_round_trip(server, chat_server, reference):
    tok = reference.tokenizer
    r = httpx.post(server.url + "/tokenize", json={"model": "tiny", "prompt": "é中 hi"})
    assert r.status_code == 200 and r.json() == {"count": len(tok.encode("é中 hi")), "max_model_len": 96,
                                                 "tokens": tok.encode("é中 hi")}
    r = httpx.post(server.url + "/detokenize", json={"tokens": tok.encode("é中 hi")})
    assert r.status_code == 200 and r.json() == {"prompt": "é中 hi"}
    msgs = [{"role": "user", "content": "hi"}]
    r = httpx.post(chat_server.url + "/tokenize", json={"messages": msgs})
    assert r.status_code == 200 and tok.decode(r.json()["tokens"]) == "User: hi\nAssistant:"
    r = httpx.post(chat_server.url + "/tokenize", json={"messages": msgs, "add_generation_prompt": False})
    assert tok.decode(r.json()["tokens"]) == "User: hi\n"
    for url, body, needle in [
            (server.url + "/detokenize", {"tokens": [1, 99999]}, "outside the model's vocabulary"),
            (server.url + "/tokenize", {"prompt": "a", "messages": msgs}, "exactly one of"),
            (server.url + "/tokenize", {"messages": msgs}, "no chat template"),
            (server.url + "/tokenize", {"prompt": 3}, "prompt"),
            (server.url + "/tokenize", {"prompt": "a", "model": "other"}, "does not exist")]:
        r = httpx.post(url, json=body)
        assert 400 <= r.status_code < 500 and needle in r.json()["error"]["message"], (body, r.text)


def test_chat_streaming_has_usage_and_logprobs(chat_server):
    client = openai.OpenAI(base_url=chat_server.url + "/v1", api_key="x", max_retries=0)
    kw = dict(model="tiny-chat", messages=[{"role": "user", "content": "hello"}], max_tokens=8, temperature=0,
              logprobs=True, top_logprobs=2)
    whole = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert all(c.usage is None for c in chunks[:-1]) and chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in whole.choices[0].logprobs.content]
    assert [t.logprob for t in streamed] == [t.logprob for t in whole.choices[0].logprobs.content]
    assert all(len(t.top_logprobs) == 2 for t in streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content


def test_a_shared_prefix_is_reused_with_the_same_answer(server, client):
    head = "The history of the printing press begins in the fifteenth century, when " * 1
    first = client.completions.create(model="tiny", prompt=head + "a", max_tokens=6, temperature=0)
    second = client.completions.create(model="tiny", prompt=head + "b", max_tokens=6, temperature=0)
    again = client.completions.create(model="tiny", prompt=head + "a", max_tokens=6, temperature=0)
    assert second.usage.prompt_tokens_details.cached_tokens >= 64  # whole 32-token blocks of the shared head
    assert again.usage.prompt_tokens_details.cached_tokens >= 64
    assert again.choices[0].text == first.choices[0].text
