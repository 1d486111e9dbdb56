"""family_for, the one function that decides a save layout: every architecture field of a model it
accepts comes back from the family's config.json, and a field an adapter would drop is refused by name."""
from __future__ import annotations

import itertools

import pytest

from gptkit.errors import GptkitError
from gptkit.hf import check_saveable, family_for, gpt2, llama
from gptkit.model import GPTConfig

SMALL = dict(vocab_size=50, n_positions=16, n_embd=32, n_layer=1, n_head=4)


def _configs():
    for pe, gated, bias, qkv, qk, tie, kv, head, inner in itertools.product(
            ["learned", "rope"], [False, True], [True, False], [False, True], [False, True], [True, False],
            [None, 2], [None, 16], [None, 48]):
        yield GPTConfig(**SMALL, position_embedding=pe, norm="rmsnorm" if pe == "rope" else "layernorm",
                        gated_mlp=gated, activation_function="silu" if gated else "gelu_new", bias=bias,
                        qkv_bias=qkv, qk_norm=qk, tie_word_embeddings=tie, n_kv_head=kv, head_size=head,
                        n_inner=inner, rope_theta=500.0 if pe == "rope" else 10000.0,
                        rope_scaling={"rope_type": "linear", "factor": 2.0} if pe == "rope" and inner else None)


def test_every_model_a_family_accepts_comes_back_from_its_config_json():
    accepted = set()
    for config in _configs():
        try:
            family = family_for(config)
        except GptkitError:
            continue
        back = family.config_from_hf(family.config_to_hf(config), "test")
        assert back.architecture() == config.architecture(), (family.title, config)
        accepted.add(family.title)
    assert accepted == {"GPT-2", "Llama", "Qwen2", "Qwen3"}  # Mistral's layout is Llama's without biases: Llama wins


def test_a_field_an_adapter_does_not_write_is_refused_by_name_not_dropped(monkeypatch):
    """As if n_inner were a new option the GPT-2 adapter did not know: the save is refused naming it."""
    monkeypatch.setattr(type(gpt2.FAMILY), "config_to_hf",
                        staticmethod(lambda config, dtype=None: {**gpt2.hf_config(config), "n_inner": None}))
    config = GPTConfig(**SMALL, n_inner=48)
    assert family_for(GPTConfig(**SMALL)).title == "GPT-2"  # the default width comes back: nothing lost
    with pytest.raises(GptkitError, match=r"n_inner 48 \(GPT-2's config.json does not keep it\)"):
        check_saveable(config)


def test_a_rotary_field_an_adapter_drops_is_refused_too(monkeypatch):
    write = llama.LlamaLike.config_to_hf
    monkeypatch.setattr(llama.LlamaLike, "config_to_hf",
                        lambda self, config, dtype=None: {**write(self, config), "rms_norm_eps": 1e-6})
    config = GPTConfig(**SMALL, position_embedding="rope", norm="rmsnorm", gated_mlp=True, activation_function="silu",
                       bias=False, layer_norm_epsilon=1e-5)
    with pytest.raises(GptkitError, match="layer_norm_epsilon 1e-05"):
        family_for(config)
