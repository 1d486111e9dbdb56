"""`gptkit serve` through the real `openai` client: answers checked against gptkit.generate on
the same weights, batching that changes nothing, streaming, n, stop, seeds, chat, errors."""
from __future__ import annotations

import concurrent.futures as cf
import json
import time

import httpx
import openai
import pytest

from gptkit.generate import generate_text

pytest_plugins = ["serve_helpers"]  # the fixtures (tests/serve/serve_helpers.py)

PROMPTS = ["Hello", "def f(x):", "The quick brown fox", "é中😀"]


def expected(reference, prompt, max_tokens, **kw):
    kw = {"do_sample": False, **kw}
    if kw["do_sample"]:
        kw.setdefault("top_k", 0)
    out = generate_text(reference, reference.tokenizer, prompt, max_new_tokens=max_tokens, **kw)[0]
    return out["text"], out["finish_reason"]


def test_greedy_completions_match_generate(client, reference):
    """Greedy decoding through the server is gptkit.generate's, token for token."""
    for p in PROMPTS:
        r = client.completions.create(model="tiny", prompt=p, max_tokens=12, temperature=0)
        text, _ = expected(reference, p, 12)
        assert r.choices[0].text == text
        assert r.object == "text_completion" and r.model == "tiny"
        assert r.usage.prompt_tokens == len(p.encode()) and r.usage.completion_tokens == 12
        assert r.usage.total_tokens == r.usage.prompt_tokens + 12
        assert r.choices[0].finish_reason == "length"


def test_seeded_sampling_is_reproducible_and_follows_the_distribution(client, reference):
    kw = dict(model="tiny", prompt="Hello", max_tokens=20, temperature=0.9, top_p=0.9)
    text = client.completions.create(seed=7, **kw).choices[0].text
    assert client.completions.create(seed=7, **kw).choices[0].text == text
    assert client.completions.create(seed=8, **kw).choices[0].text != text
    # the first token, over 480 seeds, is distributed as softmax(logits / temperature)
    import torch
    from scipy.stats import chisquare
    with torch.no_grad():
        probs = (reference(torch.tensor([list(b"Hello")]))[0, -1].float() / 0.7).softmax(-1)
    counts = torch.zeros_like(probs)
    for k in range(30):
        r = client.completions.create(model="tiny", prompt="Hello", max_tokens=1, temperature=0.7, n=16, seed=16 * k,
                                      logprobs=0)
        for c in r.choices:  # (end-of-text ends a choice without a token of text: 256)
            counts[token_bytes(c.logprobs.tokens[0])[0] if c.logprobs.tokens else 256] += 1
    assert counts.sum() == 480
    order = probs.argsort(descending=True)
    top = order[:8]
    expected = torch.cat([probs[top], probs[order[8:]].sum()[None]]) * 480
    observed = torch.cat([counts[top], counts[order[8:]].sum()[None]])
    assert chisquare(observed.numpy(), expected.numpy()).pvalue > 1e-4


def test_same_output_alone_or_in_a_busy_batch(client):
    """Continuous batching: requests join a running batch at different moments with different
    parameters; each seeded request's text is what it is alone."""
    jobs = [{"prompt": p, "max_tokens": 10 + 5 * i, "temperature": 0.5 + 0.2 * (i % 4), "seed": 100 + i,
                 "top_p": [1.0, 0.9][i % 2], "extra_body": {"top_k": [0, 20][i % 2], "repetition_penalty": [1.0, 1.3][i % 2]}}
            for i, p in enumerate(PROMPTS * 3)]
    alone = [client.completions.create(model="tiny", **j).choices[0].text for j in jobs]

    def run(j):
        time.sleep(0.003 * (hash(j["prompt"]) % 5))
        return client.completions.create(model="tiny", **j).choices[0].text
    with cf.ThreadPoolExecutor(len(jobs)) as ex:
        together = list(ex.map(run, jobs))
    assert together == alone


def test_n_choices(client, reference):
    no_eos = {"256": -100}
    r = client.completions.create(model="tiny", prompt="Hello", max_tokens=16, n=3, seed=5, logit_bias=no_eos)
    assert [c.index for c in r.choices] == [0, 1, 2]
    texts = [c.text for c in r.choices]
    assert len(set(texts)) == 3  # each sample has its own generator (seed + index)
    one = client.completions.create(model="tiny", prompt="Hello", max_tokens=16, seed=5, logit_bias=no_eos)
    assert one.choices[0].text == texts[0]
    assert r.usage.completion_tokens == 48 and r.usage.prompt_tokens == 5
    # several prompts: index = prompt * n + sample
    r = client.completions.create(model="tiny", prompt=["ab", "cd"], max_tokens=5, n=2, temperature=0)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert r.choices[0].text == r.choices[1].text == expected(reference, "ab", 5)[0]
    assert r.choices[2].text == expected(reference, "cd", 5)[0]


def test_stop_strings(client, reference):
    full, _ = expected(reference, "The quick brown fox", 30)
    stop = full[10:12]
    r = client.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=30, temperature=0, stop=[stop])
    assert r.choices[0].text == full[:full.index(stop)]
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens < 30


def test_token_prompts_echo_and_logprobs(client, reference):
    ids = list(b"Hi")
    r = client.completions.create(model="tiny", prompt=ids, max_tokens=4, temperature=0, echo=True, logprobs=2)
    c = r.choices[0]
    assert c.text == "Hi" + expected(reference, "Hi", 4)[0]
    lp = c.logprobs
    assert len(lp.tokens) == 6 and lp.token_logprobs[0] is None and lp.tokens[:2] == ["H", "i"]
    assert all(x < 0 for x in lp.token_logprobs[1:])
    assert all(len(t) == 2 for t in lp.top_logprobs[1:])
    assert lp.text_offset[:3] == [0, 1, 2]
    # greedy: the chosen token is the most likely one
    for tok, tops in zip(lp.tokens[2:], lp.top_logprobs[2:]):
        assert max(tops, key=tops.get) == tok


def test_streaming_matches_and_ends_with_done(server, client):
    kw = {"model": "tiny", "prompt": "def f(x):", "max_tokens": 25, "temperature": 0.8, "seed": 3}
    whole = client.completions.create(**kw).choices[0].text
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole
    assert chunks[-1].usage.completion_tokens == 25 and not chunks[-1].choices
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    with httpx.stream("POST", server.url + "/v1/completions", json={**kw, "stream": True}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in resp.iter_lines() if ln.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    assert "".join(json.loads(ln[5:])["choices"][0]["text"] for ln in lines[:-1]) == whole


def token_bytes(t: str) -> bytes:
    if t.startswith("bytes:"):
        return bytes(int(h, 16) for h in t[6:].split("\\x")[1:])
    return t.encode("utf-8")


def test_streaming_never_splits_a_character(client):
    """Bias the model onto the two bytes of 'é' (C3 A9): a character spans two tokens, and a
    streamed chunk that ended between them would show U+FFFD where the whole text has 'é'."""
    bias = {"195": 60, "169": 60}
    kw = {"model": "tiny", "prompt": "x", "max_tokens": 40, "temperature": 1.0, "seed": 11, "logit_bias": bias,
              "frequency_penalty": 2.0}  # (the random model likes to repeat itself)
    chunks = [c.choices[0].text for c in client.completions.create(stream=True, **kw)]
    r = client.completions.create(logprobs=0, **kw).choices[0]
    decoded = b"".join(token_bytes(t) for t in r.logprobs.tokens).decode("utf-8", "replace")
    assert "é" in decoded and r.text == decoded
    assert "".join(chunks) == decoded
    assert len([c for c in chunks if c]) > 5


def test_chat_with_a_template(chat_server, chat_dir):
    import gptkit
    from gptkit.serve.chat import encode_chat, find_chat_template
    client = openai.OpenAI(base_url=chat_server.url + "/v1", api_key="x", max_retries=0)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    r = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=8, temperature=0)
    ref = gptkit.load_model(chat_dir)
    text = find_chat_template(chat_dir).render(messages)
    assert text == "Be brief.\nUser: Hi there\nAssistant:"
    ids = encode_chat(ref.tokenizer, text)
    exp = generate_text(ref, ref.tokenizer, [ref.tokenizer.decode(ids)], max_new_tokens=8)[0]["text"]
    assert r.choices[0].message.content == exp and r.choices[0].message.role == "assistant"
    assert r.object == "chat.completion" and r.usage.prompt_tokens == len(ids)
    chunks = list(client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=8,
                                                 temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == exp
    assert chunks[-1].choices[0].finish_reason == "length"
    # the template's own refusal is a 400
    with pytest.raises(openai.BadRequestError, match="unknown role tool"):
        client.chat.completions.create(model="tiny-chat", messages=[{"role": "tool", "content": "x"}])
    # no max_tokens: up to the context
    r = client.chat.completions.create(model="tiny-chat", messages=messages, temperature=0,
                                       logit_bias={"256": -100})
    assert r.usage.prompt_tokens + r.usage.completion_tokens == 96 and r.choices[0].finish_reason == "length"


def test_chat_refused_without_template(client):
    with pytest.raises(openai.BadRequestError, match="no chat template"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])


def test_errors_are_openai_errors(client):
    with pytest.raises(openai.BadRequestError, match="maximum context length is 96 tokens.*90 in the prompt, 10"):
        client.completions.create(model="tiny", prompt="a" * 90, max_tokens=10)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-4", prompt="a")
    with pytest.raises(openai.BadRequestError, match="unknown field 'frobnicate'"):
        client.completions.create(model="tiny", prompt="a", extra_body={"frobnicate": 1})
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model="tiny", prompt="a", temperature=5)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.completions.create(model="tiny", prompt="a", max_tokens=-1)
    with pytest.raises(openai.BadRequestError, match="outside the model's vocabulary"):
        client.completions.create(model="tiny", prompt=[1, 2, 999])
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="a", n=0)
    assert e.value.param == "n" and e.value.type == "invalid_request_error"


def test_models_health_metrics(server, client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]
    h = httpx.get(server.url + "/health").json()
    assert h["status"] == "ok"
    client.completions.create(model="tiny", prompt="a", max_tokens=3, temperature=0)
    m = httpx.get(server.url + "/metrics").text
    for name in ("gptkit_requests_total", "gptkit_generation_tokens_total", "gptkit_queue_depth",
                 "gptkit_request_latency_seconds_bucket", "gptkit_time_to_first_token_seconds_count",
                 "gptkit_running_sequences"):
        assert name in m
    assert 'gptkit_requests_total{endpoint="/v1/completions",status="200"}' in m


def test_api_key(tiny_dir):
    from serve_helpers import start_server
    s = start_server(tiny_dir, model_name="tiny", api_key="sekrit")
    try:
        bad = openai.OpenAI(base_url=s.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.completions.create(model="tiny", prompt="a", max_tokens=2)
        good = openai.OpenAI(base_url=s.url + "/v1", api_key="sekrit", max_retries=0)
        assert good.completions.create(model="tiny", prompt="a", max_tokens=2).usage.completion_tokens == 2
        assert httpx.get(s.url + "/health").status_code == 200  # probes need no key
    finally:
        s.stop()


@pytest.fixture()
def slow_server(tiny_dir):
    """One slot, one queue place, and a decode step slowed by 20 ms: easy to fill."""
    from serve_helpers import start_slow_server
    s = start_slow_server(tiny_dir, 0.02, max_batch=1, max_queue=1, timeout=1.5)
    yield s
    s.stop()


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_queue_full_429_timeout_and_disconnect(slow_server):
    s = slow_server
    engine = s.app.state.engine
    client = openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0)
    body = {"model": "tiny", "prompt": "a", "max_tokens": 90, "stream": True}
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", s.url + "/v1/completions", json=body) as first:
            it = first.iter_lines()
            next(it)
            wait_for(lambda: engine.running == 1)
            with http.stream("POST", s.url + "/v1/completions", json=body) as second:
                wait_for(lambda: engine.queued == 1)
                with pytest.raises(openai.RateLimitError) as e:
                    client.completions.create(model="tiny", prompt="b", max_tokens=2)
                assert int(e.value.response.headers["Retry-After"]) >= 1
                assert second.status_code == 200
            # the second client left while queued; the first leaves mid-stream
        wait_for(lambda: engine.running == 0 and engine.queued == 0)  # its slot is free at the next step
        # a request longer than --timeout (1.5 s) ends with 408 and frees its slot
        t0 = time.monotonic()
        r = http.post(s.url + "/v1/completions", json={"model": "tiny", "prompt": "a", "max_tokens": 94,
                                                       "logit_bias": {"256": -100}})  # no early end-of-text
        assert r.status_code == 408 and r.json()["error"]["code"] == "timeout"
        assert time.monotonic() - t0 < 15  # ended by the timeout, not hung (generous: a busy 2-core machine)
        wait_for(lambda: engine.running == 0)
        r = http.post(s.url + "/v1/completions", json={"model": "tiny", "prompt": "a", "max_tokens": 3})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3


def test_max_tokens_below_one_is_refused_on_every_endpoint(server, chat_server, client):
    """OpenAI refuses max_tokens < 1; so do both endpoints here (completions used to generate one
    token for 0 while chat refused it). null still means "up to the context", on both."""
    for n in (0, -1):
        with pytest.raises(openai.BadRequestError, match="max_tokens") as e:
            client.completions.create(model="tiny", prompt="a", max_tokens=n)
        assert e.value.param == "max_tokens"
        r = httpx.post(chat_server.url + "/v1/chat/completions",
                       json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": n})
        assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    r = httpx.post(server.url + "/v1/completions", json={"prompt": "a", "max_tokens": None, "temperature": 0},
                   timeout=60).json()
    assert r["usage"]["completion_tokens"] >= 1


def test_too_many_prompts_name_the_prompt_limit(client):
    with pytest.raises(openai.BadRequestError, match="prompt holds 1000 prompts; one request may hold at most 64") as e:
        client.completions.create(model="tiny", prompt=["a"] * 1000, max_tokens=1)
    assert e.value.param == "prompt"
    with pytest.raises(openai.BadRequestError, match="holds 65 prompts"):
        client.completions.create(model="tiny", prompt=[[1, 2]] * 65, max_tokens=1)
    r = client.completions.create(model="tiny", prompt=list(range(1, 90)), max_tokens=1)  # 89 ids: one prompt
    assert len(r.choices) == 1


def test_head_is_answered_where_get_is(server):
    for path in ("/health", "/v1/models", "/metrics", "/"):
        r = httpx.head(server.url + path)
        assert r.status_code == 200 and r.content == b"", (path, r.status_code)
