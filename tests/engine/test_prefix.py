"""Prefix caching: the same outputs with and without it, reuse that happens, bounded memory with
least-recently-used eviction that keeps shared prefixes longest."""
from __future__ import annotations

import torch

from gptkit.engine import Engine, PrefixCache, SamplingParams, Seq
from gptkit.model import GPT, GPTConfig


def model(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=97, n_positions=256, n_embd=32, n_layer=2, n_head=4, eos_token_id=96)
    return GPT(GPTConfig(**{**cfg, **kw})).eval()


def decode(m, prompts, params, prefix):
    outs = []
    for p in prompts:  # one after another, as requests reach a server
        eng = Engine(m, max_rows=1, prefix_cache=prefix)
        s = Seq(p, params)
        with torch.no_grad():
            eng.run([[s]])
        outs.append(s.out)
    return outs


def shared_prompts(n=5, prefix_len=70, seed=0):
    g = torch.Generator().manual_seed(seed)
    head = torch.randint(0, 90, (prefix_len,), generator=g).tolist()
    return [head + torch.randint(0, 90, (3 + i,), generator=g).tolist() for i in range(n)]


def test_outputs_are_identical_with_and_without_the_prefix_cache():
    for kw in ({}, dict(position_embedding="rope", n_kv_head=2)):
        m = model(**kw)
        prompts = shared_prompts()
        for params in (SamplingParams(max_tokens=20, temperature=0, eos_token_ids=()),
                       SamplingParams(max_tokens=20, temperature=0.9, top_p=0.9, seed=7, eos_token_ids=())):
            cache = PrefixCache(m, block=16)
            assert decode(m, prompts, params, cache) == decode(m, prompts, params, None)
            assert cache.hit_tokens >= 4 * 64  # every prompt after the first reused its 64 shared tokens


def test_reused_keys_and_values_give_the_same_logits():
    m = model()
    prompt = shared_prompts(1, prefix_len=100)[0]
    with torch.no_grad():
        full = m(torch.tensor([prompt]))[0, -1]
        cache = PrefixCache(m, block=32)
        eng = Engine(m, max_rows=1, prefix_cache=cache)
        eng.add([Seq(prompt, SamplingParams(max_tokens=1, temperature=0))])
        kv = m.new_cache(1, 200)
        n = cache.load(prompt + [5], kv, 0)
        assert n == 96 and kv.lengths == [96]
        kv.window(0, 1)
        h = m.hidden_states(torch.tensor([prompt[n:]]), cache=kv)
        torch.testing.assert_close(m.output_logits(h[0, -1]), full, atol=1e-5, rtol=1e-5)


def test_memory_is_bounded_and_shared_prefixes_outlive_their_tails():
    m = model()
    cache = PrefixCache(m, block=16)
    cache.capacity = 8  # blocks
    kv = m.new_cache(1, 256)
    head = list(range(48))  # three blocks every prompt shares
    for i in range(12):
        prompt = head + [(i * 7 + j) % 90 for j in range(33)]  # two blocks of its own (and a token)
        cache.load(prompt, kv, 0)
        kv.window(0, 1)
        with torch.no_grad():
            m.hidden_states(torch.tensor([prompt[kv.lengths[0]:]]), cache=kv)
        cache.store(prompt, kv, 0)
        assert len(cache) <= 8 and cache.bytes <= 8 * cache.block_bytes
    newcomer = head + [89] * 20
    assert cache.load(newcomer, kv, 0) == 48  # the shared head survived twelve prompts' tails
    last = head + [(11 * 7 + j) % 90 for j in range(33)]
    assert cache.load(last, kv, 0) == 80  # the most recent prompt is whole
    first = head + [j % 90 for j in range(33)]
    assert cache.load(first, kv, 0) == 48  # the oldest tails were evicted
