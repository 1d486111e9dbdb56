"""`gptkit serve --speculative`: a request running alone is decoded speculatively, with the same
greedy answers (plain and streamed, alone and beside others); a draft with another tokenizer is
refused at start-up in one line."""
from __future__ import annotations

import concurrent.futures as cf

import openai
import pytest
from serve_helpers import start_server

from gptkit.errors import GptkitError
from gptkit.generate import generate_text

pytest_plugins = ["serve_helpers"]

PROMPTS = ["Hello", "def f(x):", "é中😀"]


@pytest.fixture(scope="module", params=["ngram", "draft"])
def spec_server(request, tiny_dir):
    spec = "ngram" if request.param == "ngram" else str(tiny_dir)  # the model itself: a draft always kept
    s = start_server(tiny_dir, model_name="tiny", max_batch=4, speculative=spec, num_speculative_tokens=4)
    s.kind = request.param
    yield s
    s.stop()


def test_greedy_answers_are_plain_decodings(spec_server, reference):
    client = openai.OpenAI(base_url=spec_server.url + "/v1", api_key="x", max_retries=0)
    engine = spec_server.app.state.engine
    for p in PROMPTS:
        exp = generate_text(reference, reference.tokenizer, p, max_new_tokens=40)[0]["text"]
        before = engine.steps
        r = client.completions.create(model="tiny", prompt=p, max_tokens=40, temperature=0)
        assert r.choices[0].text == exp and r.usage.completion_tokens == 40
        if spec_server.kind == "draft":  # every draft kept: 5 tokens per step
            assert engine.steps - before <= 12
        chunks = client.completions.create(model="tiny", prompt=p, max_tokens=40, temperature=0, stream=True)
        assert "".join(c.choices[0].text for c in chunks) == exp
    with cf.ThreadPoolExecutor(3) as pool:  # beside others: batched as usual, same answers
        answers = list(pool.map(lambda p: client.completions.create(model="tiny", prompt=p, max_tokens=30,
                                                                    temperature=0).choices[0].text, PROMPTS))
    assert answers == [generate_text(reference, reference.tokenizer, p, max_new_tokens=30)[0]["text"]
                       for p in PROMPTS]


def test_sampled_requests_run_and_stop(spec_server):
    client = openai.OpenAI(base_url=spec_server.url + "/v1", api_key="x", max_retries=0)
    r = client.completions.create(model="tiny", prompt="Hi", max_tokens=25, seed=1, stop=["\n"])
    assert r.choices[0].finish_reason in ("stop", "length") and "\n" not in r.choices[0].text
    assert r.usage.completion_tokens <= 25


def test_a_draft_with_another_tokenizer_is_refused(tmp_path, tiny_dir, small_bpe):
    import torch

    from gptkit.hf import save_model
    from gptkit.model import GPT, GPTConfig
    from gptkit.serve import ServeConfig, build_app
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(vocab_size=small_bpe.vocab_size, n_positions=96, n_layer=1, n_head=2, n_embd=16)),
               tmp_path / "other", small_bpe)
    with pytest.raises(GptkitError, match="another tokenizer") as e:
        build_app(ServeConfig(model=str(tiny_dir), dtype="float32", speculative=str(tmp_path / "other")))
    assert "\n" not in str(e.value)
