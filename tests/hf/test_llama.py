"""gptkit.load_model reads Llama / Qwen3 directories written by transformers (the shapes gptkit
computes) with the same logits, refuses the ones it cannot compute by name, and save_model picks
the layout by the model's options."""
from __future__ import annotations

import json

import pytest
import torch

from gptkit.errors import GptkitError
from gptkit.hf import load_model, save_model
from gptkit.model import GPT, GPTConfig

transformers = pytest.importorskip("transformers")


def _theirs(kind: str, **kw):
    cls = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
           "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM)}[kind]
    base = dict(vocab_size=120, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=4, max_position_embeddings=64, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = cls[1](cls[0](**{**base, **kw})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # norms away from 1
    return model


@pytest.mark.parametrize("kind, kw", [("llama", {}), ("llama", dict(tie_word_embeddings=True, num_key_value_heads=2)),
                                      ("llama", dict(attention_bias=True, mlp_bias=True, rope_theta=500.0)),
                                      ("qwen3", dict(head_dim=16)), ("qwen3", dict(head_dim=32, num_key_value_heads=1))])
def test_transformers_llama_directories_load_with_the_same_logits(tmp_path, kind, kw):
    theirs = _theirs(kind, **kw)
    theirs.save_pretrained(tmp_path)
    ours = load_model(tmp_path)
    x = torch.randint(0, 120, (2, 40))
    with torch.no_grad():
        assert (ours(x) - theirs(x).logits).abs().max() <= 1e-4
    save_model(ours, tmp_path / "again")  # and out again, in the same layout
    d = json.loads((tmp_path / "again" / "config.json").read_text())
    assert d["model_type"] == kind
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "again").eval()
    with torch.no_grad():
        assert (again(x).logits - theirs(x).logits).abs().max() <= 1e-4


@pytest.mark.parametrize("kw, words", [(dict(hidden_act="tanh"), "hidden_act")])
def test_llama_models_gptkit_cannot_compute_are_refused_by_name(tmp_path, kw, words):
    _theirs("llama", **kw).save_pretrained(tmp_path)
    with pytest.raises(GptkitError, match=words):
        load_model(tmp_path)


def test_save_model_refuses_what_no_layout_holds(tmp_path):
    model = GPT(GPTConfig(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2, position_embedding="rope"))
    with pytest.raises(GptkitError, match="no transformers equivalent"):
        save_model(model, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_a_model_trained_with_n_kv_head_reloads_in_transformers_with_the_same_logits(byte_data, tmp_path):
    from gptkit.train import TrainConfig, train
    cfg = TrainConfig(data=str(byte_data), out=str(tmp_path / "run"), preset="tiny", n_head=4, n_kv_head=1,
                      position_embedding="rope", norm="rmsnorm", mlp="swiglu", bias=False, block_size=32,
                      batch_size=4, max_iters=3, eval_interval=3, eval_iters=1, progress=False, dtype="float32",
                      tensorboard=False)
    train(cfg)
    ours = load_model(tmp_path / "run")
    assert ours.config.n_kv_head == 1 and ours.transformer.h[0].attn.c_attn.weight.shape == (64 + 2 * 16, 64)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "run").eval()
    assert theirs.config.num_key_value_heads == 1
    x = torch.randint(0, 257, (2, 30))
    with torch.no_grad():
        assert (ours(x) - theirs(x).logits).abs().max() <= 1e-4
