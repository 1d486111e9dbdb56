"""Rotary position embeddings: the inverse frequencies, with the `rope_scaling` types gptkit can
compute exactly (the ones transformers computes once, from the config alone).

  default  inv_freq_i = theta^(-2i / head_dim)
  linear   inv_freq / factor (positions divided by factor)
  llama3   Llama 3.1: long wavelengths divided by factor, short ones kept, a smooth blend between
  yarn     YaRN: a ramp between interpolated and original frequencies, and cos/sin scaled by an
           attention factor

"dynamic" (NTK) recomputes its frequencies from the longest sequence seen so far, so a model's
logits would depend on what it computed before; "longrope" switches factor sets by sequence length.
Neither is a function gptkit reproduces, so `check_rope_scaling` refuses them (and any key it does
not know) by name.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .errors import GptkitError

# the keys each type reads; "type"/"rope_type" name it, "rope_theta" is transformers 5's copy of theta
_KEYS = {"default": (), "linear": ("factor",),
         "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
         "yarn": ("factor", "original_max_position_embeddings", "attention_factor", "beta_fast", "beta_slow",
                  "mscale", "mscale_all_dim", "truncate")}
_REQUIRED = {"linear": ("factor",), "llama3": _KEYS["llama3"], "yarn": ("factor",)}
_NAMING = ("type", "rope_type", "rope_theta")


def rope_type(scaling: dict[str, Any] | None) -> str:
    if not scaling:
        return "default"
    return scaling.get("rope_type", scaling.get("type", "default"))


def check_rope_scaling(scaling: Any) -> None:
    """A GptkitError naming the field unless `scaling` is None or a type computed exactly here."""
    if scaling is None:
        return
    if not isinstance(scaling, dict):
        raise GptkitError(f"rope_scaling must be an object, got {scaling!r}")
    kind = rope_type(scaling)
    if kind not in _KEYS:
        raise GptkitError(f"rope_scaling.rope_type {kind!r} is not supported (gptkit computes "
                          f"{', '.join(_KEYS)} exactly; 'dynamic' depends on past sequence lengths)")
    for key, value in scaling.items():
        if key not in _KEYS[kind] and key not in _NAMING:
            raise GptkitError(f"rope_scaling.{key} is not supported with rope_type {kind!r}")
        if key not in _NAMING and key != "truncate" and value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or value <= 0):
            raise GptkitError(f"rope_scaling.{key} must be a number > 0, got {value!r}")
    missing = [k for k in _REQUIRED.get(kind, ()) if scaling.get(k) is None]
    if missing:
        raise GptkitError(f"rope_scaling.{missing[0]} is missing (rope_type {kind!r} needs it)")
    if kind == "llama3" and scaling["high_freq_factor"] == scaling["low_freq_factor"]:
        raise GptkitError("rope_scaling.high_freq_factor must differ from low_freq_factor")


def inv_freq(head_dim: int, theta: float, scaling: dict[str, Any] | None, n_positions: int,
             device: torch.device | None = None) -> tuple[torch.Tensor, float]:
    """(inverse frequencies (head_dim / 2,), fp32; the factor cos and sin are multiplied by)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
    base = 1.0 / (theta ** exponents)
    kind = rope_type(scaling)
    if kind == "default":
        return base, 1.0
    assert scaling is not None
    factor = float(scaling["factor"])
    if kind == "linear":
        return base / factor, 1.0
    if kind == "llama3":
        return _llama3(base, factor, scaling), 1.0
    return _yarn(head_dim, theta, factor, scaling, n_positions, device)


def _llama3(freq: torch.Tensor, factor: float, s: dict[str, Any]) -> torch.Tensor:
    """Wavelengths beyond the pretraining context / low_freq_factor are stretched by factor, those
    under context / high_freq_factor kept, the band between blended linearly in context / wavelength."""
    context, low, high = s["original_max_position_embeddings"], s["low_freq_factor"], s["high_freq_factor"]
    wavelen = 2 * math.pi / freq
    stretched = torch.where(wavelen > context / low, freq / factor, freq)
    smooth = (context / wavelen - low) / (high - low)
    blended = (1 - smooth) * stretched / factor + smooth * stretched
    medium = (wavelen >= context / high) & (wavelen <= context / low)
    return torch.where(medium, blended, stretched)


def _yarn(dim: int, theta: float, factor: float, s: dict[str, Any], n_positions: int,
          device: torch.device | None) -> tuple[torch.Tensor, float]:
    """YaRN (arXiv 2309.00071) as transformers computes it: dimensions that rotate more than
    beta_fast times over the pretraining context keep their frequency, fewer than beta_slow are
    interpolated by factor, a linear ramp between; cos/sin scaled by 0.1 ln(factor) + 1."""
    context = s.get("original_max_position_embeddings") or n_positions

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention = s.get("attention_factor")
    if attention is None:
        m, m_all = s.get("mscale"), s.get("mscale_all_dim")
        attention = mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)

    def dim_of(rotations: float) -> float:  # the dimension that turns `rotations` times over the context
        return dim * math.log(context / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    lo, hi = dim_of(s.get("beta_fast") or 32), dim_of(s.get("beta_slow") or 1)
    if s.get("truncate", True):
        lo, hi = math.floor(lo), math.ceil(hi)
    lo, hi = max(lo, 0), min(hi, dim - 1)
    if lo == hi:
        hi += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32, device=device) - lo) / (hi - lo)).clamp(0, 1)
    keep = 1 - ramp  # 1: the original frequency, 0: interpolated
    powers = theta ** (torch.arange(0, dim, 2, device=device).float() / dim)
    freq = (1.0 / (factor * powers)) * (1 - keep) + (1.0 / powers) * keep
    return freq, float(attention)


def cos_sin(position_ids: torch.Tensor, freq: torch.Tensor, scale: float,
            dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (B or 1, 1, T, head_dim) for positions, computed in fp32 as transformers does."""
    angles = position_ids.float()[..., None] * freq.to(position_ids.device)  # (B, T, head_dim/2)
    emb = torch.cat((angles, angles), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    if scale != 1.0:
        cos, sin = cos * scale, sin * scale
    return cos.to(dtype)[:, None], sin.to(dtype)[:, None]
