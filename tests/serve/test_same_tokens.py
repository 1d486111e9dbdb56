"""One engine behind every entry point: the same request with the same seed gives the same tokens
from `gptkit generate`, model.generate / generate_text and the server, alone or while other
requests are in flight (issue 19)."""
from __future__ import annotations

import concurrent.futures as cf
import json

import httpx
import pytest

from gptkit.cli import main
from gptkit.generate import generate_text

pytest_plugins = ["serve_helpers"]

CASES = [("Hello", 5, dict(top_p=0.9)), ("def f(x):", 11, dict(top_k=20, temperature=0.7)),
         ("The quick brown fox", 3, dict(repetition_penalty=1.3))]


def completion(url: str, prompt: str, seed: int, kw: dict, max_tokens: int = 24) -> dict:
    body = {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "seed": seed,
            "temperature": kw.get("temperature", 1.0), "top_p": kw.get("top_p", 1.0), "top_k": kw.get("top_k", 0),
            "repetition_penalty": kw.get("repetition_penalty", 1.0), "logprobs": 0}
    r = httpx.post(url + "/v1/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]


@pytest.mark.parametrize("prompt,seed,kw", CASES)
def test_generate_cli_api_and_busy_server_give_the_same_tokens(prompt, seed, kw, reference, server, capsys):
    ref = generate_text(reference, reference.tokenizer, prompt, max_new_tokens=24, do_sample=True, seed=seed,
                        top_k=kw.get("top_k", 0), **{k: v for k, v in kw.items() if k != "top_k"})[0]
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {"top_k": 0, **kw}.items()]
    code = main(["generate", "--model", str(reference.source), prompt, "--seed", str(seed), "--max-new-tokens", "24",
                 "--dtype", "float32", "--json", "--no-stream", *flags])
    out, err = capsys.readouterr()
    assert code == 0, err
    cli = json.loads(out)
    assert (cli["text"], cli["token_ids"]) == (ref["text"], ref["token_ids"])
    alone = completion(server.url, prompt, seed, kw)
    # the same request again, in a batch of others with their own prompts, seeds and options
    others = [("Once upon a time", 1, {}), ("import os", 2, dict(top_k=5)), ("é中😀", 4, dict(temperature=0.5)),
              ("x = [", 6, dict(repetition_penalty=1.2)), ("Hello", seed + 1, kw)]
    with cf.ThreadPoolExecutor(6) as pool:
        futs = [pool.submit(completion, server.url, p, s, k, 40) for p, s, k in others]
        busy = pool.submit(completion, server.url, prompt, seed, kw).result()
        [f.result() for f in futs]
    for choice in (alone, busy):
        assert choice["text"] == ref["text"]
        assert token_ids(choice["logprobs"]["tokens"]) == ref["token_ids"]


def token_ids(texts: list[str]) -> list[int]:
    """The bytes tokenizer's ids back from OpenAI's token texts (one byte each)."""
    out = []
    for t in texts:
        raw = bytes(int(h, 16) for h in t[len("bytes:"):].split("\\x")[1:]) if t.startswith("bytes:") else t.encode()
        out.extend(raw)
    return out
