"""The switchable model options: each computes what it says, the KV cache agrees with a full
forward, the fused loss agrees with the plain one, and models beyond GPT-2 round-trip through
transformers' Llama / Qwen3 layouts with the same logits (loading those: tests/hf/test_llama.py)."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from gptkit.errors import GptkitError
from gptkit.hf import family_for, llama, save_model
from gptkit.model import GPT, GPTConfig

LLAMA = dict(position_embedding="rope", norm="rmsnorm", gated_mlp=True, activation_function="silu", bias=False)
VARIANTS = {
    "gpt2": {},
    "llama": LLAMA,
    "llama-untied-bias": {**LLAMA, "bias": True, "tie_word_embeddings": False},
    "qwen3": {**LLAMA, "qk_norm": True},
    "llama-relu2-gated": {**LLAMA, "activation_function": "relu2"},
    "llama-gqa": {**LLAMA, "n_kv_head": 2},
    "qwen3-gqa-wide-heads": {**LLAMA, "qk_norm": True, "n_kv_head": 1, "head_size": 24},
    "gpt2-gqa": {"n_kv_head": 2},
    "gpt2-relu2-softcap-zero": dict(activation_function="relu2", logit_softcap=15.0, zero_init=True),
}


def _model(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    m = GPT(GPTConfig(vocab_size=101, n_positions=48, n_embd=64, n_layer=2, n_head=4, **kw))
    with torch.no_grad():  # off the init (zero_init would hide the projections)
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


@pytest.mark.parametrize("name", list(VARIANTS))
def test_fused_loss_and_cache_agree_with_plain_forward(name):
    m = _model(**VARIANTS[name])
    x, y = torch.randint(0, 101, (3, 20)), torch.randint(0, 101, (3, 20))
    fused = m(x, targets=y)
    fused.backward()
    g1 = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    plain = F.cross_entropy(m(x).flatten(0, 1), y.flatten())
    plain.backward()
    assert abs(fused.item() - plain.item()) < 1e-5
    for a, b in zip(g1, (p.grad for p in m.parameters())):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    m.eval()
    with torch.no_grad():
        full = m(x)
        cache = m.new_cache(3, 48)
        head, step = m(x[:, :12], cache=cache), m(x[:, 12:13], cache=cache)
    torch.testing.assert_close(head, full[:, :12], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step[:, 0], full[:, 12], atol=1e-5, rtol=1e-5)


def test_options_change_the_architecture():
    base = _model()
    assert "transformer.wpe.weight" in dict(base.named_parameters())
    rope = _model(**LLAMA)
    names = dict(rope.named_parameters())
    assert "transformer.wpe.weight" not in names and not any(n.endswith(".bias") for n in names)
    assert rope.transformer.h[0].mlp.c_fc.weight.shape == (2 * 192, 64)  # gate + up, 8/3 x 64 -> 192
    untied = GPT(GPTConfig(vocab_size=101, n_positions=48, n_embd=64, n_layer=2, n_head=4,
                           tie_word_embeddings=False, zero_init=True))
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    assert untied.lm_head.weight.abs().sum() == 0
    assert all(b.attn.c_proj.weight.abs().sum() == 0 and b.mlp.c_proj.weight.abs().sum() == 0
               for b in untied.transformer.h)
    capped = _model(logit_softcap=2.0)
    assert capped(torch.randint(0, 101, (1, 10))).abs().max() < 2.0


@pytest.mark.parametrize("name", ["llama", "llama-untied-bias", "qwen3", "llama-relu2-gated", "llama-gqa",
                                  "qwen3-gqa-wide-heads"])
def test_llama_layout_gives_transformers_the_same_logits(name, tmp_path):
    transformers = pytest.importorskip("transformers")
    m = _model(**VARIANTS[name]).eval()
    save_model(m, tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(theirs).__name__ == ("Qwen3ForCausalLM" if name.startswith("qwen3") else "LlamaForCausalLM")
    assert theirs.config.num_key_value_heads == m.config.n_kv_head
    x = torch.randint(0, 101, (2, 40))
    with torch.no_grad():
        assert (m(x) - theirs(x).logits).abs().max() <= 1e-4
    # and back: gptkit reads the directory transformers would write
    theirs.save_pretrained(tmp_path / "resaved")
    import json
    d = json.loads((tmp_path / "resaved" / "config.json").read_text())
    cfg = llama.FAMILY.config_from_hf(d, "config.json") if d["model_type"] == "llama" else \
        family_for(m.config).config_from_hf(d, "config.json")
    with torch.device("meta"):
        back = GPT(cfg)
    from safetensors.torch import load_file
    sd = llama.from_hf_state_dict(load_file(tmp_path / "resaved" / "model.safetensors"), cfg, "resaved")
    back.load_state_dict(sd, strict=False, assign=True)
    if cfg.tie_word_embeddings:
        back.lm_head.weight = back.transformer.wte.weight
    with torch.no_grad():
        assert (back.eval()(x) - m(x)).abs().max() <= 1e-5


@pytest.mark.parametrize("kw, words", [
    (dict(position_embedding="rope"), "layernorm"),
    (dict(position_embedding="rope", norm="rmsnorm"), "gated"),
    (dict(norm="rmsnorm"), "learned position embeddings with rmsnorm"),
    (dict(LLAMA, logit_softcap=30.0), "logit_softcap"),
    (dict(LLAMA, qk_norm=True, bias=True), "qk_norm with biases"),
    (dict(n_kv_head=1), "grouped-query attention"),
])
def test_combinations_without_a_transformers_equivalent_are_named(kw, words):
    with pytest.raises(GptkitError, match=words):
        family_for(GPTConfig(vocab_size=10, n_positions=8, n_embd=8, n_layer=1, n_head=2, **kw))


@pytest.mark.parametrize("kw, words", [
    (dict(position_embedding="alibi"), "position_embedding"),
    (dict(norm="batchnorm"), "norm"),
    (dict(logit_softcap=0.0), "logit_softcap"),
    (dict(logit_softcap=float("inf")), "logit_softcap"),
    (dict(position_embedding="rope", n_embd=6, n_head=2), "even head size"),
    (dict(activation_function="tanh"), "activation_function"),
    (dict(n_kv_head=3), "multiple of n_kv_head"),
])
def test_bad_options_are_one_clear_error(kw, words):
    base = dict(vocab_size=10, n_positions=8, n_embd=8, n_layer=1, n_head=2)
    with pytest.raises(GptkitError, match=words):
        GPTConfig(**{**base, **kw})
