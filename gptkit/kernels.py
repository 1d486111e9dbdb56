"""The kernels behind model.py's few deliberate speed choices, kept apart so that model.py reads
as the architecture alone.

- `Linear` / `linear`: nn.Linear with a CPU inference path straight to oneDNN (decoding is weight
  streaming, and MKL's route streams at about half the speed on the CPUs measured).
- `linear_cross_entropy`: the output layer fused with the cross-entropy, so training never
  materialises the (tokens, vocab) logits.
- `attention`: SDPA, except one bf16 query over a long CPU KV cache (a decoding step), where two
  matmuls beat SDPA's bf16 kernel.
"""
from __future__ import annotations

from functools import cache
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F


@cache
def _onednn_linear_dtypes() -> tuple[torch.dtype, ...]:
    """The dtypes whose CPU inference products go to oneDNN directly (x86-64 only: measured there);
    bf16 only where the CPU computes it natively (asked on first use: that may time a product)."""
    import platform

    from .device import cpu_has_fast_bf16
    try:
        if platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available():
            return ()
        torch.ops.mkldnn._linear_pointwise, torch.ops.mkldnn._reorder_linear_weight  # noqa: B018 (raise if absent)
    except Exception:  # pragma: no cover - builds without oneDNN
        return ()
    return (torch.float32, torch.bfloat16) if cpu_has_fast_bf16() else (torch.float32,)



class Linear(nn.Linear):
    """nn.Linear (same parameters, same training path) with a faster CPU inference path.

    Without autograd or autocast, a CPU fp32/bf16 product goes straight to oneDNN's matmul: the
    default route (MKL's sgemm) streams a decoding step's weights at about half the speed on the
    CPUs measured (benchmarks/bench_generate.py), and decoding one token is nothing but streaming
    weights. A bf16 weight is also reordered once into oneDNN's blocked layout and kept beside the
    parameter (about 2x faster per call again: unpacked, oneDNN reorders it on every call); the
    copy is rebuilt whenever the parameter changes, and is never saved. Results are those of
    F.linear up to float rounding (bitwise for the packed bf16 weight).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _cpu_inference(x, self.weight):
            w = self._packed() if x.dtype == torch.bfloat16 else self.weight
            return torch.ops.mkldnn._linear_pointwise(x, w, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)

    def cross_entropy(self, h: torch.Tensor, targets: torch.Tensor, softcap: float | None = None) -> torch.Tensor:
        """Mean cross-entropy of this layer's logits for h (N, in) against targets (N,), without
        materialising the (N, out) logits (see linear_cross_entropy); softcap caps the logits first."""
        return linear_cross_entropy(h, self.weight, targets, softcap=softcap)

    def _packed(self) -> torch.Tensor:
        w = self.weight
        key = (w.data_ptr(), w._version, w.dtype, tuple(w.shape))
        cached = self.__dict__.get("_packed_weight")
        if cached is None or cached[0] != key:
            cached = (key, torch.ops.mkldnn._reorder_linear_weight(w.detach(), 1))
            self.__dict__["_packed_weight"] = cached
        return cached[1]

    def __getstate__(self) -> dict[str, Any]:  # copies and pickles rebuild the packed weight
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state.pop("_packed_weight", None)
        return state


def _cpu_inference(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype == weight.dtype and x.dtype in (torch.float32, torch.bfloat16)
            and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling()  # inductor lowers F.linear itself
            and x.dtype in _onednn_linear_dtypes())


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, through oneDNN directly for CPU inference (see Linear; no packed copy here)."""
    if _cpu_inference(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)



# From this many cached keys a bf16 decoding step's attention is faster as two matmuls than through
# SDPA's CPU kernel (measured on the GPT-2 124M shape, AMD EPYC with AVX512-BF16, 2 threads: a step at
# 900 positions 34.0 -> 27.8 ms; at 128 positions SDPA is still ~9% faster).
ONE_QUERY_MIN_KEYS = 512


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
              dropout_p: float = 0.0, is_causal: bool = False, enable_gqa: bool = False) -> torch.Tensor:
    """F.scaled_dot_product_attention (same arguments), with one exception: CPU inference of a
    single bf16 query per row over >= ONE_QUERY_MIN_KEYS keys (boolean or no mask) is computed as
    softmax(q k^T / sqrt(d)) v, scores and softmax in fp32, the weighted sum in bf16."""
    if (q.device.type == "cpu" and q.dtype == torch.bfloat16 and q.size(2) == 1 and k.size(2) >= ONE_QUERY_MIN_KEYS
            and dropout_p == 0.0 and not torch.is_grad_enabled() and not torch.compiler.is_compiling()
            and (attn_mask is None or attn_mask.dtype == torch.bool)):
        return _one_query_attention(q, k, v, attn_mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                                          enable_gqa=enable_gqa)


def _one_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """q (B, H, 1, D) over k, v (B, Hkv, L, D), H a multiple of Hkv (query head h reads key/value
    head h // (H / Hkv), as SDPA's enable_gqa); mask broadcastable to (B, 1, 1, L), True = attend."""
    B, H, _, D = q.shape
    Hkv = k.size(1)
    qg = q.reshape(B, Hkv, H // Hkv, D).float()  # the query heads of each key/value head as rows
    scores = torch.matmul(qg, k.float().transpose(-1, -2)).mul_(D ** -0.5)  # (B, Hkv, H / Hkv, L)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    y = torch.matmul(scores.softmax(-1).to(v.dtype), v)
    return y.reshape(B, H, 1, D)


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         ignore_index: int = -100, softcap: float | None = None) -> torch.Tensor:
    """Mean cross-entropy of logits = h @ weight.T against targets, softmax in fp32.

    With a large vocabulary the (tokens, vocab) logits dominate a small GPT's memory traffic, so
    training never materialises them: the output layer, softmax and their gradients are computed
    together, a chunk of rows at a time (see _ChunkedLinearCrossEntropy). Without grad it is the
    same chunked computation, forward only. `softcap` caps the logits at c * tanh(z / c) first.
    """
    device_type = h.device.type
    if device_type == "cuda" or torch.compiler.is_compiling():
        # GPUs (and inductor) fuse the plain form well; chunk loops there are Python overhead.
        logits = F.linear(h, weight).float()
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        return F.cross_entropy(logits, targets, ignore_index=ignore_index)
    compute = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else h.dtype
    needs_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    return _ChunkedLinearCrossEntropy.apply(h, weight, targets, ignore_index, compute, needs_grad, softcap)


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    ROWS = 256  # rows per chunk: (256, 50257) fp32 logits are ~50 MB, reused chunk after chunk

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                ignore_index: int, compute: torch.dtype, needs_grad: bool,
                softcap: float | None = None) -> torch.Tensor:
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(compute), weight.to(compute)
            valid = targets != ignore_index
            n_valid = valid.sum().clamp(min=1)
            safe_targets = torch.where(valid, targets, 0)
            total = torch.zeros((), device=h.device, dtype=torch.float32)
            grad_h = torch.empty_like(hc) if needs_grad else None
            grad_w = torch.zeros(weight.shape, device=weight.device, dtype=torch.float32) if needs_grad else None
            for s in range(0, hc.size(0), _ChunkedLinearCrossEntropy.ROWS):
                e = min(s + _ChunkedLinearCrossEntropy.ROWS, hc.size(0))
                logits = hc[s:e] @ wc.t()
                tanh = None
                if softcap is not None:  # in fp32: its gradient needs 1 - tanh^2 to full precision
                    tanh = torch.tanh(logits.float() / softcap)
                    logits = (softcap * tanh).to(logits.dtype)
                tgt = safe_targets[s:e, None]
                v = valid[s:e]
                if compute == torch.float32 or not needs_grad:
                    logp = torch.log_softmax(logits, dim=-1, dtype=torch.float32)  # one fused kernel
                    total -= (logp.gather(1, tgt).squeeze(1) * v).sum()
                    if not needs_grad:
                        continue
                    g = logp.exp_()
                else:
                    # bf16 training: softmax computed in fp32 inside one fused kernel and rounded once
                    # to bf16, which halves the memory traffic of every pass over the logits; the
                    # loss from it is within 2^-8 relative of p_target per token.
                    g = torch.softmax(logits, dim=-1)
                    total -= (g.gather(1, tgt).squeeze(1).float().clamp_min(1e-38).log() * v).sum()
                # d(mean loss)/d(logits) = (softmax - onehot) / n_valid, zero for ignored rows
                rows = torch.arange(e - s, device=g.device)
                g[rows, tgt[:, 0]] -= 1  # indexing, not scatter_add_: that converts the whole bf16 chunk
                g = g.mul_((v.float() / n_valid)[:, None].to(g.dtype))
                if tanh is not None:  # through the cap: d(c tanh(z/c))/dz = 1 - tanh^2
                    g = g.float().mul_(1 - tanh.square_())
                g = g.to(compute)
                grad_h[s:e] = g @ wc
                grad_w.add_(g.t() @ hc[s:e])
        if needs_grad:
            ctx.save_for_backward(grad_h, grad_w)
            ctx.dtypes = (h.dtype, weight.dtype)
        return total / n_valid

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_h, grad_w = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        return ((grad_h * grad_out).to(h_dtype), (grad_w * grad_out).to(w_dtype), None, None, None, None, None)
