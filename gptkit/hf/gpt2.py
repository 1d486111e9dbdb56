"""The GPT-2 layout: config.json <-> GPTConfig, tensor names and Conv1D shapes <-> ours.
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
    if not isinstance(d, dict):
        raise GptkitError(f"{source}: expected a JSON object")
    archs = d.get("architectures") or []
    model_type = d.get("model_type", "gpt2" if not archs or any(a.startswith("GPT2") for a in archs) else None)
    if model_type != "gpt2":
        what = f"model_type {model_type!r}" if model_type else f"architectures {archs}"
        raise GptkitError(f"{source}: {what} is not an architecture gptkit loads (GPT-2: model_type 'gpt2'; "
                          "and the Llama / Qwen3 shapes gptkit saves: 'llama', 'qwen3')")
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


def hf_to_gptkit_name(name: str) -> str | None:
    """Our name for a GPT-2 tensor name (with or without the 'transformer.' prefix); None for
    what is not a parameter: the causal-mask buffers of old checkpoints, other classes' heads."""
    if name.endswith((".attn.bias", ".attn.masked_bias")) or name.startswith(_SKIPPED_HEADS):
        return None
    if not name.startswith(("transformer.", "lm_head.")):
        name = "transformer." + name
    return name


def to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our parameters under GPT-2's names and Conv1D shapes (the tied lm_head is not stored)."""
    out = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        t = t.detach()
        if name.endswith(_CONV1D_SUFFIXES):
            t = t.t()
        out[name] = t.contiguous()
    return out


def from_hf_state_dict(sd: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """GPT-2 tensors -> our names and shapes. Consumes `sd` (each tensor is popped as it is
    converted), so the weights are never held twice."""
    out = {}
    for name in list(sd):
        t = sd.pop(name)
        ours = hf_to_gptkit_name(name)
        if ours is None:
            continue
        if ours.endswith(_CONV1D_SUFFIXES) and t.dim() == 2:
            t = t.t().contiguous()
        out[ours] = t
    lm_head = out.pop("lm_head.weight", None)
    wte = out.get("transformer.wte.weight")
    if lm_head is not None and wte is not None and not _same(lm_head, wte):
        raise GptkitError(f"{source}: lm_head.weight differs from transformer.wte.weight; gptkit ties the "
                          "output layer to the token embedding (untied heads are not supported)")
    return out


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.to(b.device, b.dtype), b)


def load_state_into(model: GPT, sd: dict[str, torch.Tensor], source: str, assign: bool = True) -> None:
    """Check names and shapes, then load; assign=True adopts the tensors (no copy, meta models)."""
    tied = model.config.tie_word_embeddings
    expected = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight" or not tied}
    if not model.config.bias:  # a bias-free model is saved as GPT-2 with zero biases
        for k in [k for k in sd if k not in expected and k.endswith(".bias")]:
            if sd[k].count_nonzero():
                raise GptkitError(f"{source}: tensor {k} is not zero, but the model has no biases")
            del sd[k]
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise GptkitError(f"{source}: missing tensor {missing[0]}{more}")
    if unexpected:
        raise GptkitError(f"{source}: unexpected tensor {unexpected[0]} (not a GPT-2 model of this config?)")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise GptkitError(f"{source}: tensor {k} has shape {tuple(v.shape)}, config.json implies "
                              f"{tuple(expected[k].shape)}")
    model.load_state_dict(sd, strict=False, assign=assign)
    if tied:
        model.lm_head.weight = model.transformer.wte.weight  # re-tie after assign


def _check_exportable(config: GPTConfig, sd: dict[str, torch.Tensor]) -> None:
    """Exactly GPT-2's tensors, floating point, of GPT-2's shapes: anything else (a quantized or
    adapted model, an extra module) is refused by name rather than written half-right."""
    with torch.device("meta"):
        reference = to_hf_state_dict(GPT(config))
    extra = sorted(set(sd) - set(reference))
    missing = sorted(set(reference) - set(sd))
    if extra or missing:
        what = f"tensor {extra[0]} has" if extra else f"tensor {missing[0]} is missing, which has"
        raise GptkitError(f"cannot save in the Hugging Face GPT-2 layout: {what} no GPT-2 equivalent "
                          "(a quantized or modified model?)")
    for k, t in sd.items():
        if not t.is_floating_point() or t.shape != reference[k].shape:
            raise GptkitError(f"cannot save in the Hugging Face GPT-2 layout: tensor {k} is {t.dtype} "
                              f"{tuple(t.shape)}, GPT-2 needs a float tensor of {tuple(reference[k].shape)}")
