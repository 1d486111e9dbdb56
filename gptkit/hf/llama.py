"""The Llama layout (and Qwen3's, Llama plus QK-norm) in and out of transformers' files.

GPT-2's layout cannot express rotary embeddings, RMSNorm or a gated MLP; Llama's can
(LlamaForCausalLM: RoPE in its rotate-half form, RMSNorm, gate/up/down MLP with any of
transformers' activations, optional biases, tied or untied output layer). A gptkit GPT with those
options is saved as a Llama directory that `AutoModelForCausalLM` loads with the same logits, and
loads back from it. With QK-norm as well it is a Qwen3 directory (Qwen3 is Llama plus a per-head
RMSNorm of queries and keys before RoPE). `layout_for` says which layout a config needs, or why
none fits, so that the trainer can refuse a combination before its first step.

Our names -> theirs (ours fuse q/k/v into attn.c_attn and gate/up into mlp.c_fc; both nn.Linear):
  transformer.wte.weight             model.embed_tokens.weight
  transformer.h.i.ln_1.weight        model.layers.i.input_layernorm.weight
  transformer.h.i.attn.c_attn.*      model.layers.i.self_attn.{q,k,v}_proj.*
  transformer.h.i.attn.c_proj.*      model.layers.i.self_attn.o_proj.*
  transformer.h.i.attn.{q,k}_norm.*  model.layers.i.self_attn.{q,k}_norm.weight (Qwen3)
  transformer.h.i.ln_2.weight        model.layers.i.post_attention_layernorm.weight
  transformer.h.i.mlp.c_fc.*         model.layers.i.mlp.{gate,up}_proj.*
  transformer.h.i.mlp.c_proj.*       model.layers.i.mlp.down_proj.*
  transformer.ln_f.weight            model.norm.weight
  lm_head.weight                     lm_head.weight (untied only)
"""
from __future__ import annotations

import re
from typing import Any

import torch

from ..errors import GptkitError
from ..model import ACTIVATIONS, GPTConfig

ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}
GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu", "relu", "relu2", "silu")


def layout_for(config: GPTConfig) -> str:
    """'gpt2', 'llama' or 'qwen3': the transformers layout that expresses `config` exactly; a
    GptkitError naming the option(s) when none does (checked before training starts)."""
    if config.is_gpt2:
        return "gpt2"
    why = []
    if config.logit_softcap is not None:
        why.append("logit_softcap (no Llama/GPT-2 equivalent)")
    if config.position_embedding != "rope":
        why.append("learned position embeddings with " + ", ".join(
            n for n, on in (("rmsnorm", config.norm == "rmsnorm"), ("a gated MLP", config.gated_mlp),
                            ("qk_norm", config.qk_norm), ("an untied output layer", not config.tie_word_embeddings))
            if on) + " (GPT-2's layout has LayerNorm, a plain MLP and a tied output layer; Llama's has RoPE)")
    else:
        if config.norm != "rmsnorm":
            why.append("rope with layernorm (Llama's layout needs norm=rmsnorm)")
        if not config.gated_mlp:
            why.append(f"rope with a plain {config.activation_function} MLP (Llama's layout needs a gated "
                       "MLP: mlp=swiglu)")
        if config.qk_norm and config.bias:
            why.append("qk_norm with biases (Qwen3's layout, Llama's with QK-norm, has none: use --no-bias)")
    if why:
        raise GptkitError("this model has no transformers equivalent, so it could not be saved: "
                          + "; ".join(why))
    return "qwen3" if config.qk_norm else "llama"


# ---------------------------------------------------------------------------- config.json

def hf_config(config: GPTConfig, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    kind = layout_for(config)
    d: dict[str, Any] = {
        "architectures": [ARCHITECTURES[kind]],
        "model_type": kind,
        "vocab_size": config.vocab_size,
        "hidden_size": config.n_embd,
        "intermediate_size": config.hidden_size,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_head,
        "head_dim": config.head_dim,
        "hidden_act": config.activation_function,
        "max_position_embeddings": config.n_positions,
        "rms_norm_eps": config.layer_norm_epsilon,
        "rope_theta": config.rope_theta,  # transformers < 5
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "attention_bias": config.bias,
        "attention_dropout": config.dropout,
        "initializer_range": 0.02,
        "tie_word_embeddings": config.tie_word_embeddings,
        "use_cache": True,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "dtype": str(dtype).removeprefix("torch."),
        "torch_dtype": str(dtype).removeprefix("torch."),
        "gptkit": {"zero_init": config.zero_init, "dropout": config.dropout},
    }
    if kind == "llama":
        d.update(mlp_bias=config.bias, pretraining_tp=1)
    else:
        d.update(use_sliding_window=False, sliding_window=None, max_window_layers=config.n_layer,
                 layer_types=["full_attention"] * config.n_layer)
    return d


def config_from_hf(d: dict[str, Any], source: str) -> GPTConfig:
    """A GPTConfig from a Llama / Qwen3 config.json; what gptkit's GPT cannot compute is refused."""
    kind = d.get("model_type")
    if kind not in ARCHITECTURES:
        raise GptkitError(f"{source}: model_type {kind!r} is not llama or qwen3")
    missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                           "intermediate_size") if not isinstance(d.get(k), int)]
    if missing:
        raise GptkitError(f"{source}: missing or non-integer key(s) {', '.join(missing)}")
    heads, hidden = d["num_attention_heads"], d["hidden_size"]
    if d.get("num_key_value_heads", heads) not in (None, heads):
        raise GptkitError(f"{source}: num_key_value_heads={d['num_key_value_heads']} (grouped-query attention) "
                          "is not supported; gptkit needs as many key/value heads as attention heads")
    if heads < 1 or hidden % heads or d.get("head_dim") not in (None, hidden // heads):
        raise GptkitError(f"{source}: head_dim {d.get('head_dim')} is not hidden_size / num_attention_heads")
    rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
    if not isinstance(rope, dict) or rope.get("rope_type", rope.get("type", "default")) != "default":
        raise GptkitError(f"{source}: rope scaling {rope!r} is not supported (only the default rotary embedding)")
    theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
    act = d.get("hidden_act", "silu")
    if act not in ACTIVATIONS:
        raise GptkitError(f"{source}: hidden_act {act!r} is not supported (gptkit has {', '.join(ACTIVATIONS)})")
    bias = bool(d.get("attention_bias", False))
    if kind == "llama" and bool(d.get("mlp_bias", False)) != bias:
        raise GptkitError(f"{source}: attention_bias={bias} with mlp_bias={d.get('mlp_bias')} is not supported "
                          "(gptkit has one bias switch for both)")
    if kind == "qwen3" and (d.get("use_sliding_window") or bias):
        raise GptkitError(f"{source}: sliding-window attention and biases are not supported in a Qwen3 model")
    gk = d.get("gptkit") if isinstance(d.get("gptkit"), dict) else {}
    try:
        return GPTConfig(
            vocab_size=d["vocab_size"], n_positions=int(d.get("max_position_embeddings") or 2048),
            n_embd=hidden, n_layer=d["num_hidden_layers"], n_head=heads, n_inner=d["intermediate_size"],
            activation_function=act, layer_norm_epsilon=float(d.get("rms_norm_eps", 1e-6)),
            dropout=float(gk.get("dropout", d.get("attention_dropout", 0.0)) or 0.0), bias=bias,
            bos_token_id=_token_id(d.get("bos_token_id")), eos_token_id=_token_id(d.get("eos_token_id")),
            position_embedding="rope", rope_theta=float(theta), norm="rmsnorm", gated_mlp=True,
            qk_norm=kind == "qwen3", tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            zero_init=bool(gk.get("zero_init", False)),
        )
    except GptkitError as e:
        raise GptkitError(f"{source}: {e}") from None


def _token_id(v: Any) -> int | None:
    if isinstance(v, list):
        v = v[0] if v else None
    return v if isinstance(v, int) and not isinstance(v, bool) else None


# ---------------------------------------------------------------------------- tensors

_LAYER = re.compile(r"^transformer\.h\.(\d+)\.(.+)$")
_SIMPLE = {"ln_1.weight": "input_layernorm.weight", "ln_2.weight": "post_attention_layernorm.weight",
           "attn.c_proj.weight": "self_attn.o_proj.weight", "attn.c_proj.bias": "self_attn.o_proj.bias",
           "attn.q_norm.weight": "self_attn.q_norm.weight", "attn.k_norm.weight": "self_attn.k_norm.weight",
           "mlp.c_proj.weight": "mlp.down_proj.weight", "mlp.c_proj.bias": "mlp.down_proj.bias"}
_TOP = {"transformer.wte.weight": "model.embed_tokens.weight", "transformer.ln_f.weight": "model.norm.weight",
        "lm_head.weight": "lm_head.weight"}


def to_hf_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """Our parameters under Llama's names (fused projections split; a tied lm_head not stored)."""
    config: GPTConfig = model.config
    out: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        t = t.detach()
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        if name in _TOP:
            out[_TOP[name]] = t.contiguous()
            continue
        m = _LAYER.match(name)
        if m is None:
            raise GptkitError(f"cannot save in the Llama layout: tensor {name} has no Llama equivalent")
        i, rest = m.groups()
        pre = f"model.layers.{i}."
        if rest in _SIMPLE:
            out[pre + _SIMPLE[rest]] = t.contiguous()
        elif rest.startswith("attn.c_attn."):
            kind = rest.rsplit(".", 1)[1]
            for part, piece in zip(("q", "k", "v"), t.chunk(3, dim=0)):
                out[f"{pre}self_attn.{part}_proj.{kind}"] = piece.contiguous()
        elif rest.startswith("mlp.c_fc."):
            kind = rest.rsplit(".", 1)[1]
            gate, up = t.chunk(2, dim=0)
            out[f"{pre}mlp.gate_proj.{kind}"], out[f"{pre}mlp.up_proj.{kind}"] = gate.contiguous(), up.contiguous()
        else:
            raise GptkitError(f"cannot save in the Llama layout: tensor {name} has no Llama equivalent")
    return out


def from_hf_state_dict(sd: dict[str, torch.Tensor], config: GPTConfig, source: str) -> dict[str, torch.Tensor]:
    """Llama/Qwen3 tensors -> our names (q/k/v and gate/up fused). Consumes `sd`."""
    inverse_top = {v: k for k, v in _TOP.items()}
    inverse = {v: k for k, v in _SIMPLE.items()}
    out: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for name in list(sd):
        t = sd.pop(name)
        if name in inverse_top:
            if name == "lm_head.weight" and config.tie_word_embeddings:
                continue  # tied: the embedding is the output layer
            out[inverse_top[name]] = t
            continue
        if name.endswith("rotary_emb.inv_freq"):
            continue  # a buffer some older checkpoints store
        m = re.match(r"^model\.layers\.(\d+)\.(.+)$", name)
        if m is None:
            raise GptkitError(f"{source}: unexpected tensor {name} (not part of a Llama model)")
        i, rest = m.groups()
        pre = f"transformer.h.{i}."
        if rest in inverse:
            out[pre + inverse[rest]] = t
            continue
        m2 = re.match(r"^(self_attn\.([qkv])_proj|mlp\.(gate|up)_proj)\.(weight|bias)$", rest)
        if m2 is None:
            raise GptkitError(f"{source}: unexpected tensor {name} (not part of a Llama model)")
        fused = pre + ("attn.c_attn." if m2.group(2) else "mlp.c_fc.") + m2.group(4)
        parts.setdefault(fused, {})[m2.group(2) or m2.group(3)] = t
    for fused, p in parts.items():
        order = ("q", "k", "v") if ".attn." in fused else ("gate", "up")
        absent = [o for o in order if o not in p]
        if absent:
            raise GptkitError(f"{source}: missing the {absent[0]} projection of {fused}")
        out[fused] = torch.cat([p.pop(o) for o in order], dim=0)
    return out


# ---------------------------------------------------------------------------- files

def save_model(model: Any, directory: Any, tokenizer: Any = None) -> Any:
    """Write config.json + model.safetensors (+ tokenizer files) in the Llama / Qwen3 layout, atomically."""
    from pathlib import Path

    from safetensors.torch import save_file

    from ..files import atomic_path, write_json
    if any(p.is_meta for p in model.parameters()):
        raise GptkitError("the model has parameters on the meta device (not loaded); nothing to save")
    config = hf_config(model.config, model.dtype)  # refuses what Llama cannot express
    sd = {k: v.cpu() for k, v in to_hf_state_dict(model).items()}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt"})
    del sd
    write_json(directory / "config.json", config)
    if tokenizer is not None:
        tokenizer.save(directory)
    return directory


def load_state(model: Any, entries: Any, target: Any, device: torch.device, source: str) -> None:
    """Read a Llama checkpoint's tensors (gptkit's TensorEntry iterator) into a meta-built GPT."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    raw: dict[str, torch.Tensor] = {}
    for e in entries:
        if not e.dtype.is_floating_point:
            raise GptkitError(f"{e.source}: tensor {e.name} is {e.dtype}, not floating point")
        if e.name in raw:
            raise GptkitError(f"{e.source}: tensor {e.name} appears twice in the checkpoint")
        if target is None:
            target = e.dtype
        raw[e.name] = e.load(target, device)
    sd = from_hf_state_dict(raw, model.config, source)
    if model.config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing:
        raise GptkitError(f"{source}: missing tensor {missing[0]} (the Llama model lacks a tensor config.json implies)")
    if unexpected:
        raise GptkitError(f"{source}: unexpected tensor {unexpected[0]} (not a model of this config.json)")
    for k, v in sd.items():
        if tuple(v.shape) != expected[k]:
            raise GptkitError(f"{source}: tensor {k} has shape {tuple(v.shape)}, config.json implies {expected[k]}")
    model.load_state_dict(sd, strict=False, assign=True)
    if model.config.tie_word_embeddings:
        model.lm_head.weight = model.transformer.wte.weight
