"""The Llama family (LlamaForCausalLM), and the adapter Mistral, Qwen2 and Qwen3 share (one module each:
mistral.py, qwen2.py, qwen3.py say how they differ).

The four classes are one architecture: RoPE in its rotate-half form (with rope_scaling: rope.py),
RMSNorm, a gate/up/down MLP, grouped-query attention, tied or untied output layer. They differ in
biases (Llama: attention_bias and mlp_bias; Qwen2: q/k/v biases always; Qwen3: QK-norm; Mistral:
none), in sliding-window attention (refused where it would change a result: gptkit attends over
the whole context) and in their config defaults.

Our names -> theirs (ours fuse q/k/v into attn.c_attn and gate/up into mlp.c_fc; both nn.Linear):
  transformer.wte.weight             model.embed_tokens.weight
  transformer.h.i.ln_1.weight        model.layers.i.input_layernorm.weight
  transformer.h.i.attn.c_attn.*      model.layers.i.self_attn.{q,k,v}_proj.* (n_head, n_kv_head, n_kv_head heads)
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
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import GptkitError
from ..model import ACTIVATIONS, GPTConfig
from ..rope import rope_type


@dataclass(frozen=True)
class LlamaLike:
    """One Llama-shaped family. `biases` says which its files have: "llama" (attention_bias on q/k/v/o,
    mlp_bias on the MLP), "qkv" (q/k/v always, Qwen2), "attention" (attention_bias only, Qwen3) or
    "none" (Mistral); `window` how it spells sliding windows: "sliding_window" (every layer, Mistral)
    or "use_sliding_window" (Qwen's switch and layer_types)."""
    model_type: str
    architecture: str
    title: str
    biases: str
    window: str | None = None
    qk_norm: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)  # transformers' values for absent keys

    # ------------------------------------------------------------------ what it holds
    def cannot_hold(self, config: GPTConfig) -> list[str]:
        if config.position_embedding != "rope":
            return ["learned position embeddings (the Llama family has RoPE)"]
        why = []
        if config.norm != "rmsnorm":
            why.append("rope with layernorm (Llama's layout needs norm=rmsnorm)")
        if not config.gated_mlp:
            why.append(f"rope with a plain {config.activation_function} MLP (Llama's layout needs a gated MLP: "
                       "gated_mlp with activation_function silu is SwiGLU)")
        if config.logit_softcap is not None:
            why.append("logit_softcap (no Llama/GPT-2 equivalent)")
        if config.qk_norm != self.qk_norm:
            why.append("qk_norm (Qwen3's layout has it, Llama's none)" if config.qk_norm else
                       f"no qk_norm ({self.architecture} has it)")
        bias, qkv = config.bias, config.qkv_bias and not config.bias
        if self.biases == "llama" and qkv:
            why.append("qkv_bias without bias (Llama's attention_bias covers o_proj too; Qwen2's layout has it)")
        elif self.biases == "qkv" and (bias or not qkv):
            why.append("Qwen2's layout has q/k/v biases and no others (qkv_bias, no bias)")
        elif self.biases in ("attention", "none") and (bias or qkv):
            why.append("qk_norm with biases (Qwen3's layout, Llama's with QK-norm, has none: use --no-bias)"
                       if self.qk_norm else f"biases ({self.architecture} has none)")
        return why

    # ------------------------------------------------------------------ config.json
    def config_to_hf(self, config: GPTConfig, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
        scaling = dict(config.rope_scaling or {})
        d: dict[str, Any] = {
            "architectures": [self.architecture], "model_type": self.model_type,
            "vocab_size": config.vocab_size, "hidden_size": config.n_embd, "intermediate_size": config.hidden_size,
            "num_hidden_layers": config.n_layer, "num_attention_heads": config.n_head,
            "num_key_value_heads": config.n_kv_head, "head_dim": config.head_dim,
            "hidden_act": config.activation_function, "max_position_embeddings": config.n_positions,
            "rms_norm_eps": config.layer_norm_epsilon,
            "rope_theta": config.rope_theta,  # transformers < 5
            "rope_parameters": {**scaling, "rope_type": rope_type(scaling), "rope_theta": config.rope_theta},
            "attention_dropout": config.dropout, "initializer_range": 0.02,
            "tie_word_embeddings": config.tie_word_embeddings, "use_cache": True,
            "bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id,
            "dtype": str(dtype).removeprefix("torch."), "torch_dtype": str(dtype).removeprefix("torch."),
            "gptkit": {"zero_init": config.zero_init, "dropout": config.dropout},
        }
        if scaling:
            d["rope_scaling"] = {**scaling, "rope_type": rope_type(scaling)}  # transformers < 5
        if self.biases == "llama":
            d.update(attention_bias=config.bias, mlp_bias=config.bias, pretraining_tp=1)
        elif self.biases == "attention":
            d.update(attention_bias=False)
        if self.window == "sliding_window":
            d.update(sliding_window=None)
        elif self.window == "use_sliding_window":
            d.update(use_sliding_window=False, sliding_window=None, max_window_layers=config.n_layer,
                     layer_types=["full_attention"] * config.n_layer)
        return d

    def config_from_hf(self, d: dict[str, Any], source: str) -> GPTConfig:
        """A GPTConfig from the family's config.json; what gptkit cannot compute is refused by name."""
        d = {**self.defaults, **{k: v for k, v in d.items() if v is not None or k in ("sliding_window",)}}
        missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                               "intermediate_size") if not _is_int(d.get(k))]
        if missing:
            raise GptkitError(f"{source}: missing or non-integer key(s) {', '.join(missing)}")
        heads, hidden = d["num_attention_heads"], d["hidden_size"]
        kv_heads = d.get("num_key_value_heads") or heads
        head_dim = d.get("head_dim") or (hidden // heads if heads >= 1 else None)
        for key, v in (("num_key_value_heads", kv_heads), ("head_dim", head_dim)):
            if not _is_int(v) or v < 1:
                raise GptkitError(f"{source}: {key} must be a positive integer, got {v!r}")
        for key in ("quantization_config", "partial_rotary_factor"):
            if d.get(key) not in (None, 1.0):
                raise GptkitError(f"{source}: {key} is not supported (gptkit computes full-precision weights and "
                                  "rotates whole heads)")
        theta, scaling = _rope(d, source)
        act = d.get("hidden_act", "silu")
        if act not in ACTIVATIONS:
            raise GptkitError(f"{source}: hidden_act {act!r} is not supported (gptkit has {', '.join(ACTIVATIONS)})")
        bias, qkv_bias = self._biases(d, source)
        n_positions = int(d.get("max_position_embeddings") or 2048)
        self._check_window(d, n_positions, source)
        gk = d.get("gptkit") if isinstance(d.get("gptkit"), dict) else {}
        try:
            return GPTConfig(
                vocab_size=d["vocab_size"], n_positions=n_positions, n_embd=hidden, n_layer=d["num_hidden_layers"],
                n_head=heads, n_kv_head=kv_heads, head_size=None if head_dim * heads == hidden else head_dim,
                n_inner=d["intermediate_size"], activation_function=act,
                layer_norm_epsilon=float(d.get("rms_norm_eps", 1e-6)),
                dropout=float(gk.get("dropout", d.get("attention_dropout", 0.0)) or 0.0), bias=bias, qkv_bias=qkv_bias,
                bos_token_id=_token_id(d.get("bos_token_id")), eos_token_id=_token_id(d.get("eos_token_id")),
                position_embedding="rope", rope_theta=theta, rope_scaling=scaling, norm="rmsnorm", gated_mlp=True,
                qk_norm=self.qk_norm, tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
                zero_init=bool(gk.get("zero_init", False)),
            )
        except GptkitError as e:
            raise GptkitError(f"{source}: {e}") from None

    def _biases(self, d: dict[str, Any], source: str) -> tuple[bool, bool]:
        """(bias, qkv_bias) of our config for the file's bias switches."""
        if self.biases == "qkv":
            return False, True
        attention = bool(d.get("attention_bias", False))
        if self.biases == "llama":
            if bool(d.get("mlp_bias", False)) != attention:
                raise GptkitError(f"{source}: mlp_bias={d.get('mlp_bias')} with attention_bias={attention} is not "
                                  "supported (gptkit has one bias switch for both)")
            return attention, False
        if attention:
            raise GptkitError(f"{source}: attention_bias is not supported in a {self.architecture} (gptkit's "
                              "bias switch covers the MLP too)")
        return False, False

    def _check_window(self, d: dict[str, Any], n_positions: int, source: str) -> None:
        """gptkit attends over the whole context: a window shorter than it would change results."""
        types = d.get("layer_types") or []
        if any(t != "full_attention" for t in types):
            raise GptkitError(f"{source}: layer_types {sorted(set(types))} is not supported (gptkit computes full "
                              "attention in every layer)")
        if self.window == "use_sliding_window" and d.get("use_sliding_window"):
            raise GptkitError(f"{source}: use_sliding_window is not supported (gptkit attends over the whole "
                              "context)")
        w = d.get("sliding_window") if self.window == "sliding_window" else None
        if w is not None and (not _is_int(w) or w < n_positions):
            raise GptkitError(f"{source}: sliding_window={w} is not supported: it is shorter than the context "
                              f"({n_positions}), and gptkit attends over the whole context")

    # ------------------------------------------------------------------ tensors
    def keeps(self, name: str) -> bool:
        return not name.endswith("rotary_emb.inv_freq")  # a buffer some older checkpoints store

    def to_hf(self, sd: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
        return to_hf_state_dict(sd, config)

    def from_hf(self, sd: dict[str, torch.Tensor], config: GPTConfig, source: str) -> dict[str, torch.Tensor]:
        return from_hf_state_dict(sd, config, source)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _rope(d: dict[str, Any], source: str) -> tuple[float, dict[str, Any] | None]:
    """(rope_theta, our rope_scaling or None) from transformers 5's rope_parameters or older
    rope_scaling + rope_theta; the types gptkit cannot compute are refused (rope.py)."""
    from ..rope import check_rope_scaling
    rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise GptkitError(f"{source}: rope_scaling must be an object, got {rope!r}")
    theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
    if isinstance(theta, bool) or not isinstance(theta, (int, float)):
        raise GptkitError(f"{source}: rope_theta must be a number, got {theta!r}")
    scaling = {k: v for k, v in rope.items() if k not in ("rope_theta", "type")}
    if "type" in rope and "rope_type" not in rope:
        scaling["rope_type"] = rope["type"]
    if rope_type(scaling) == "default":
        scaling = {k: v for k, v in scaling.items() if k != "rope_type"}
        if scaling:
            raise GptkitError(f"{source}: rope_scaling.{next(iter(scaling))} is not supported with the default "
                              "rotary embedding")
        return float(theta), None
    try:
        check_rope_scaling(scaling)
    except GptkitError as e:
        raise GptkitError(f"{source}: {e}") from None
    return float(theta), scaling


def _token_id(v: Any) -> int | None:
    if isinstance(v, list):
        v = v[0] if v else None
    return v if _is_int(v) else None


# ---------------------------------------------------------------------------- tensors

_LAYER = re.compile(r"^transformer\.h\.(\d+)\.(.+)$")
_SIMPLE = {"ln_1.weight": "input_layernorm.weight", "ln_2.weight": "post_attention_layernorm.weight",
           "attn.c_proj.weight": "self_attn.o_proj.weight", "attn.c_proj.bias": "self_attn.o_proj.bias",
           "attn.q_norm.weight": "self_attn.q_norm.weight", "attn.k_norm.weight": "self_attn.k_norm.weight",
           "mlp.c_proj.weight": "mlp.down_proj.weight", "mlp.c_proj.bias": "mlp.down_proj.bias"}
_TOP = {"transformer.wte.weight": "model.embed_tokens.weight", "transformer.ln_f.weight": "model.norm.weight",
        "lm_head.weight": "lm_head.weight"}


def to_hf_state_dict(sd: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Our tensors under Llama's names (fused projections split; a tied lm_head not stored)."""
    out: dict[str, torch.Tensor] = {}
    for name, t in sd.items():
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
            q_size, kv_size = config.n_head * config.head_dim, config.n_kv_head * config.head_dim
            for part, piece in zip(("q", "k", "v"), t.split((q_size, kv_size, kv_size), dim=0)):
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



FAMILY = LlamaLike("llama", "LlamaForCausalLM", "Llama", biases="llama",
                   defaults=dict(max_position_embeddings=2048, rms_norm_eps=1e-6, tie_word_embeddings=False))
