"""/v1/chat/completions for gptkit's own chat models (ChatML tokens and template, as
`gptkit finetune --task chat` makes them), through the real openai client: two turns, streaming,
n, stop, seed, logprobs; the reply ends at <|im_end|>."""
from __future__ import annotations

import pytest

openai = pytest.importorskip("openai")

import gptkit  # noqa: E402
from gptkit.chat.template import IM_END, chat_template, end_of_turn  # noqa: E402
from gptkit.generate import generate_text  # noqa: E402

pytest_plugins = ["serve_helpers"]


@pytest.fixture(scope="module")
def chat_client(chatml_server):
    return openai.OpenAI(base_url=chatml_server.url + "/v1", api_key="x", max_retries=0, timeout=60)


def expected(model, messages, max_tokens):
    tok = model.tokenizer
    ids = tok.encode_special(chat_template(tok).render(messages, True))
    r = generate_text(model, tok, [ids], max_new_tokens=max_tokens, eos_token_id=end_of_turn(tok))[0]
    return ids, r["text"]


def test_two_turns_the_second_using_the_first(chat_client, chatml_dir):
    ref = gptkit.load_model(chatml_dir)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    r1 = chat_client.chat.completions.create(model="chatml", messages=messages, max_tokens=12, temperature=0)
    ids, text = expected(ref, messages, 12)
    assert r1.choices[0].message.content == text and r1.usage.prompt_tokens == len(ids)
    messages += [{"role": "assistant", "content": text}, {"role": "user", "content": "And then?"}]
    r2 = chat_client.chat.completions.create(model="chatml", messages=messages, max_tokens=12, temperature=0)
    ids2, text2 = expected(ref, messages, 12)
    assert ids2[:len(ids)] == ids and r2.usage.prompt_tokens == len(ids2) > len(ids) + 12
    assert r2.choices[0].message.content == text2
    chunks = list(chat_client.chat.completions.create(model="chatml", messages=messages, max_tokens=12,
                                                      temperature=0, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text2


def test_the_reply_ends_at_the_end_of_turn_token(chat_client, chatml_dir):
    tok = gptkit.load_model(chatml_dir).tokenizer
    im_end = tok.special_ids[IM_END]
    r = chat_client.chat.completions.create(model="chatml", messages=[{"role": "user", "content": "x"}],
                                            max_tokens=20, logit_bias={str(im_end): 100})
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content == ""
    assert r.usage.completion_tokens == 1


def test_n_seed_stop_and_logprobs(chat_client):
    kw = dict(model="chatml", messages=[{"role": "user", "content": "Tell me"}], max_tokens=10, temperature=1.0,
              seed=7, n=2)
    a = chat_client.chat.completions.create(**kw)
    b = chat_client.chat.completions.create(**kw)
    assert len(a.choices) == 2 and [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    text = a.choices[0].message.content
    stop = text[3:5] if len(text) >= 5 else None
    if stop:
        s = chat_client.chat.completions.create(**{**kw, "n": 1, "stop": [stop]})
        assert stop not in s.choices[0].message.content
    lp = chat_client.chat.completions.create(model="chatml", messages=kw["messages"], max_tokens=4, temperature=0,
                                             logprobs=True, top_logprobs=2)
    content = lp.choices[0].logprobs.content
    assert 1 <= len(content) <= 4 and all(len(t.top_logprobs) == 2 for t in content)


def test_a_model_without_a_template_says_how_to_add_one(client):
    with pytest.raises(openai.BadRequestError, match=r"no chat template.*gptkit finetune --task chat.*--chat-template"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])


def test_a_conversation_longer_than_the_context_is_a_400(chat_client):
    with pytest.raises(openai.BadRequestError, match=r"maximum context length is 256 tokens"):
        chat_client.chat.completions.create(model="chatml", messages=[{"role": "user", "content": "x " * 300}],
                                            max_tokens=4)
