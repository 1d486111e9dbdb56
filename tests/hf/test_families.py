"""Every Hugging Face family gptkit reads (hf/family.py's table), from tiny random models that
transformers builds: the same logits in fp32, the same greedy tokens through the KV cache, saved
back in the same family; and what gptkit cannot compute exactly refused in one line naming the field."""
from __future__ import annotations

import json

import pytest
import torch

from gptkit.errors import GptkitError
from gptkit.hf import load_model, save_model

transformers = pytest.importorskip("transformers")

BASE = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128)
LLAMA3 = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
CASES = {
    "llama-gqa-llama3-untied": ("Llama", dict(rope_parameters=LLAMA3, tie_word_embeddings=False)),
    "llama-biases-linear-tied": ("Llama", dict(attention_bias=True, mlp_bias=True, tie_word_embeddings=True,
                                               rope_parameters={"rope_type": "linear", "rope_theta": 500.0,
                                                                "factor": 4.0})),
    "mistral-gqa": ("Mistral", dict(sliding_window=None, tie_word_embeddings=False)),
    "qwen2-biases-yarn-tied": ("Qwen2", dict(tie_word_embeddings=True, rope_parameters={
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 32})),
    "qwen3-qk-norm-wide-heads": ("Qwen3", dict(head_dim=32, num_key_value_heads=1, tie_word_embeddings=True)),
}


def _theirs(family: str, **kw):
    config = getattr(transformers, f"{family}Config")(**{**BASE, **kw})
    torch.manual_seed(0)
    model = getattr(transformers, f"{family}ForCausalLM")(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # norms and biases away from their init
    return model


@pytest.mark.parametrize("name", list(CASES))
def test_each_family_loads_with_the_logits_and_greedy_tokens_of_transformers(tmp_path, name):
    family, kw = CASES[name]
    theirs = _theirs(family, **kw)
    theirs.save_pretrained(tmp_path / "theirs")
    ours = load_model(tmp_path / "theirs")
    assert ours.config.n_kv_head == theirs.config.num_key_value_heads
    x = torch.randint(0, 128, (2, 100))  # past the rope scalings' original contexts
    with torch.no_grad():
        assert (ours(x) - theirs(x).logits).abs().max() <= 1e-4
        prompt = x[:1, :12]
        want = theirs.generate(prompt, max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0)
        got = ours.generate(prompt, max_new_tokens=20, do_sample=False)
    assert got.tolist() == want.tolist()
    save_model(ours, tmp_path / "again")  # and out again: the first family of the table that holds it
    saved = json.loads((tmp_path / "again" / "config.json").read_text())["model_type"]
    assert saved == ("llama" if family == "Mistral" else family.lower())  # Mistral without a window is Llama
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "again").eval()
    with torch.no_grad():
        assert (again(x).logits - theirs(x).logits).abs().max() <= 1e-4


@pytest.mark.parametrize("family, edit, words", [
    ("Mistral", dict(sliding_window=16), "sliding_window=16"),
    ("Qwen2", dict(use_sliding_window=True), "use_sliding_window"),
    ("Llama", dict(rope_scaling={"rope_type": "dynamic", "factor": 2.0}), "rope_scaling.rope_type 'dynamic'"),
    ("Llama", dict(rope_scaling={"rope_type": "longrope", "short_factor": [1.0], "long_factor": [1.0]}),
     "rope_scaling.rope_type 'longrope'"),
    ("Llama", dict(rope_scaling={"rope_type": "linear", "factor": 2.0, "mrope_section": [1]}),
     "rope_scaling.mrope_section"),
    ("Llama", dict(mlp_bias=True), "mlp_bias"),
    ("Llama", dict(quantization_config={"quant_method": "gptq"}), "quantization_config"),
])
def test_a_config_field_gptkit_cannot_compute_is_refused_by_name(tmp_path, family, edit, words):
    _theirs(family, **({} if family != "Mistral" else dict(sliding_window=None))).save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    d = json.loads(path.read_text())
    d.pop("rope_parameters", None) if "rope_scaling" in edit else None
    path.write_text(json.dumps({**d, **edit}))
    with pytest.raises(GptkitError, match=words.replace("(", r"\(")) as e:
        load_model(tmp_path)
    assert "\n" not in str(e.value)


def test_a_checkpoint_whose_tensors_do_not_match_its_config_is_refused(tmp_path):
    _theirs("Qwen2").save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "num_key_value_heads": 4}))
    with pytest.raises(GptkitError, match=r"c_attn\.\w+ has shape \(128,.*config.json implies \(192,"):
        load_model(tmp_path)
