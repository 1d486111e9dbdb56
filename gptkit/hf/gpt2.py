"""The GPT-2 family (GPT2LMHeadModel): config.json <-> GPTConfig, tensor names and Conv1D shapes <-> ours.

Our names are GPT-2's; GPT-2 stores its projections as Conv1D, (in, out), where we use nn.Linear,
(out, in), so those are transposed at the file boundary. A bias-free model is written as GPT-2 with
biases of zero (transformers loads it and computes the same logits) and read back without them.
"""
from __future__ import annotations

import json
from typing import Any

import torch

from ..errors import GptkitError
from ..model import ACTIVATIONS, GPT, GPTConfig
from .weights import CONFIG_FILE

# GPT-2 stores these as Conv1D, i.e. (in, out); nn.Linear is (out, in).
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# The transformers classes whose weights are a GPT-2 language model (plus, for DoubleHeads, a
# multiple-choice head that we skip). Classification/QA heads are not language models.
_LM_ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model", "GPT2DoubleHeadsModel")
_SKIPPED_HEADS = ("multiple_choice_head.",)

# ---------------------------------------------------------------------------- config.json

def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def hf_config(config: GPTConfig, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """config.json as transformers' GPT2Config reads it; gptkit-only options kept under 'gptkit'."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.n_positions,
        "n_ctx": config.n_positions,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": config.n_inner,
        "activation_function": config.activation_function,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": True,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "dtype": _dtype_name(dtype),  # transformers >= 4.56
        "torch_dtype": _dtype_name(dtype),  # older transformers
        "gptkit": {"bias": config.bias},
    }


def config_from_hf(d: dict[str, Any], source: str = CONFIG_FILE) -> GPTConfig:
    """Read a GPT-2 config.json; options we cannot honour are refused by name."""
    archs = d.get("architectures") or []
    other = [a for a in archs if a not in _LM_ARCHITECTURES]
    if other:
        raise GptkitError(f"{source}: architecture {other[0]} is not a GPT-2 language model (gptkit loads "
                          f"{', '.join(_LM_ARCHITECTURES)})")
    # reorder_and_upcast_attn only changes the precision of transformers' eager attention (its
    # SDPA path ignores it); our attention is SDPA, so the function computed is the same.
    for flag, ok in (("scale_attn_by_inverse_layer_idx", False), ("scale_attn_weights", True),
                     ("add_cross_attention", False), ("tie_word_embeddings", True)):
        if d.get(flag, ok) is None:
            continue
        if bool(d.get(flag, ok)) != ok:
            raise GptkitError(f"{source}: {flag}={json.dumps(d[flag])} is not supported by gptkit's GPT "
                              f"(it needs {json.dumps(ok)})")
    missing = [k for k in ("vocab_size", "n_embd", "n_layer", "n_head") if k not in d]
    if missing:
        raise GptkitError(f"{source}: missing key(s) {', '.join(missing)}")
    act = d.get("activation_function") or "gelu_new"
    if act not in ACTIVATIONS:
        raise GptkitError(f"{source}: activation_function {act!r} is not supported (gptkit has "
                          f"{', '.join(ACTIVATIONS)})")
    for key in ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions", "n_ctx", "n_inner"):
        v = d.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise GptkitError(f"{source}: {key} must be an integer, got {v!r}")
    gk = d.get("gptkit") if isinstance(d.get("gptkit"), dict) else {}
    try:
        return GPTConfig(
            vocab_size=d["vocab_size"], n_positions=d.get("n_positions") or d.get("n_ctx") or 1024,
            n_embd=d["n_embd"], n_layer=d["n_layer"], n_head=d["n_head"], n_inner=d.get("n_inner") or None,
            activation_function=act, layer_norm_epsilon=float(d.get("layer_norm_epsilon", 1e-5)),
            dropout=float(d.get("resid_pdrop", 0.0) or 0.0), bias=bool(gk.get("bias", True)),
            bos_token_id=_token_id(d.get("bos_token_id")), eos_token_id=_token_id(d.get("eos_token_id")),
        )
    except GptkitError as e:
        raise GptkitError(f"{source}: {e}") from None


def _token_id(v: Any) -> int | None:
    if isinstance(v, list):  # transformers allows a list of eos ids; the first is the main one
        v = v[0] if v else None
    return v if isinstance(v, int) else None


def cannot_hold(config: GPTConfig) -> list[str]:
    """What of `config` GPT-2's layout cannot express (biases may be off: they are written as zeros)."""
    if config.position_embedding != "learned":
        return ["rotary position embeddings (GPT-2's layout has learned ones)"]
    why = []
    extras = [n for n, on in (("rmsnorm", config.norm == "rmsnorm"), ("a gated MLP", config.gated_mlp),
                              ("qk_norm", config.qk_norm), ("an untied output layer", not config.tie_word_embeddings),
                              ("grouped-query attention", config.n_kv_head != config.n_head),
                              ("a head_size other than n_embd / n_head", config.head_dim * config.n_head != config.n_embd),
                              ("qkv_bias without bias", config.qkv_bias and not config.bias)) if on]
    if extras:
        why.append("learned position embeddings with " + ", ".join(extras) + " (GPT-2's layout has LayerNorm, a "
                   "plain MLP, multi-head attention and a tied output layer; Llama's has RoPE)")
    if config.logit_softcap is not None:
        why.append("logit_softcap (no Llama/GPT-2 equivalent)")
    return why


def hf_to_gptkit_name(name: str) -> str | None:
    """Our name for a GPT-2 tensor name (with or without the 'transformer.' prefix); None for
    what is not a parameter: the causal-mask buffers of old checkpoints, other classes' heads."""
    if name.endswith((".attn.bias", ".attn.masked_bias")) or name.startswith(_SKIPPED_HEADS):
        return None
    if not name.startswith(("transformer.", "lm_head.")):
        name = "transformer." + name
    return name


def to_hf(sd: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Our tensors under GPT-2's names and Conv1D shapes (the tied lm_head not stored; a bias-free
    model's biases as zeros)."""
    out = {}
    for name, t in sd.items():
        if name == "lm_head.weight":
            continue
        t = t.detach()
        out[name] = (t.t() if name.endswith(_CONV1D_SUFFIXES) else t).contiguous()
    if not config.bias and out:
        import dataclasses
        with torch.device("meta"):
            full = GPT(dataclasses.replace(config, bias=True)).state_dict()
        some = next(iter(out.values()))
        for name, t in full.items():
            if name not in out and name.endswith(".bias"):
                out[name] = torch.zeros(t.shape, dtype=some.dtype, device=some.device)
    return out


def from_hf(sd: dict[str, torch.Tensor], config: GPTConfig, source: str) -> dict[str, torch.Tensor]:
    """GPT-2 tensors -> our names and shapes. Consumes `sd` (each tensor is popped as it is
    converted), so the weights are never held twice."""
    out = {}
    for name in list(sd):
        t = sd.pop(name)
        ours = hf_to_gptkit_name(name)
        if ours is None:
            continue
        if not config.bias and ours.endswith(".bias"):  # a bias-free model saved as GPT-2: zeros
            if t.count_nonzero():
                raise GptkitError(f"{source}: tensor {name} is not zero, but {CONFIG_FILE} says the model has no "
                                  "biases (gptkit.bias false)")
            continue
        if ours.endswith(_CONV1D_SUFFIXES) and t.dim() == 2:
            t = t.t().contiguous()
        out[ours] = t
    lm_head = out.pop("lm_head.weight", None)
    wte = out.get("transformer.wte.weight")
    if lm_head is not None and wte is not None and not _same(lm_head, wte):
        raise GptkitError(f"{source}: lm_head.weight differs from transformer.wte.weight, but {CONFIG_FILE} ties "
                          "them (GPT-2's layout has a tied output layer)")
    return out


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.to(b.device, b.dtype), b)


def keeps(name: str) -> bool:
    return hf_to_gptkit_name(name) is not None


class _GPT2:
    model_type = "gpt2"
    architecture = "GPT2LMHeadModel"
    title = "GPT-2"
    keeps = staticmethod(keeps)
    cannot_hold = staticmethod(cannot_hold)
    config_to_hf = staticmethod(hf_config)
    config_from_hf = staticmethod(config_from_hf)
    to_hf = staticmethod(to_hf)
    from_hf = staticmethod(from_hf)


FAMILY = _GPT2()
