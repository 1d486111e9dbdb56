"""int8 weight-only quantisation for inference.

A module swap (as gpt-fast's int8 handler): the model's code does not change, its Linear layers
are replaced by Int8Linear, which has the same call and the same `cross_entropy` for a loss.
Every Linear of the transformer blocks (and, by default, the output layer) keeps its weight as
int8 with one fp scale per output channel (symmetric: w ~= q * scale, q in [-127, 127], scale =
max|w_row| / 127). Activations stay in floating point; the matmul reads 1 byte per weight instead
of 4 (fp32) or 2 (bf16), which is what batch-1 decoding is bound by. On CPU the product is
torch._weight_int8pack_mm (int8 weights, bf16 activations: a fused dequantising kernel);
elsewhere the weight is dequantised to the activation dtype and multiplied. The kernel's bf16 is
only a storage format for the activations (converted, not multiplied, in bf16), so it does not
crawl on a CPU without native bf16: one 768 x 3072 layer, batch 1, took 151 us against fp32's
124 us with torch held to AVX2 (104 vs 109 us with AVX512-BF16 on the same AMD EPYC).

The output layer is tied to the token embedding in GPT-2: the embedding keeps its floating-point
table (a lookup reads one row per token), the output layer gets an int8 copy of it.

A quantised model is for inference only: it cannot be trained, and save_model refuses it (keep
the floating-point files; quantise at load time: gptkit.load_model(path, quantize="int8")).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

from .errors import GptkitError
from .kernels import linear

METHODS = ("int8",)


def _has_int8pack_mm() -> bool:
    return hasattr(torch, "_weight_int8pack_mm")


class Int8Linear(nn.Module):
    """y = x @ (q * scale).T + bias, q int8 (out, in), scale (out,)."""

    quantization = "int8"  # what GPT.quantized reports for a model with such layers

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        w = weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        self.register_buffer("weight", q.contiguous())
        # scales in bf16 feed the CPU kernel (it wants the activation dtype); fp32 for the rest
        self.register_buffer("scale", scale)
        self.register_buffer("scale_bf16", scale.to(torch.bfloat16))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    # torch._weight_int8pack_mm is a matrix-vector kernel run once per row: it wins while the
    # weights' bytes dominate (decoding), a dequantised matmul wins from ~24 rows (prompts, eval).
    PACK_MAX_ROWS = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        if x.device.type == "cpu" and _has_int8pack_mm() and x2.size(0) <= self.PACK_MAX_ROWS:
            y = torch._weight_int8pack_mm(x2.to(torch.bfloat16).contiguous(), self.weight, self.scale_bf16)
            y = y.to(x.dtype)
            if self.bias is not None:
                y = y + self.bias.to(x.dtype)
        else:
            w = self.weight.to(x.dtype) * self.scale.to(x.dtype)[:, None]
            y = linear(x2, w, None if self.bias is None else self.bias.to(x.dtype))
        return y.view(*shape[:-1], self.out_features)

    def cross_entropy(self, h: torch.Tensor, targets: torch.Tensor, softcap: float | None = None) -> torch.Tensor:
        """Mean cross-entropy (fp32 softmax) of this layer's logits for h (N, in) against targets (N,)."""
        logits = self(h).float()
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        return F.cross_entropy(logits, targets)

    def dequantized(self) -> torch.Tensor:
        return self.weight.float() * self.scale[:, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


def quantize_int8(model: Any, lm_head: bool = True) -> Any:
    """Replace the Linear layers of `model` (a gptkit GPT) by Int8Linear, in place; returns it."""
    if model.quantized:
        raise GptkitError(f"the model is already quantised ({model.quantized})")
    for block in model.transformer.h:
        for parent in (block.attn, block.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, Int8Linear(child.weight, child.bias))
    if lm_head:
        model.lm_head = Int8Linear(model.lm_head.weight, None)  # the embedding itself when tied
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def quantize(model: Any, method: str | None) -> Any:
    if method is None or method == "none":
        return model
    if method not in METHODS:
        raise GptkitError(f"unknown quantization {method!r} (choose from none, {', '.join(METHODS)})")
    with torch.inference_mode(False):  # ordinary tensors, even under inference_mode: usable in any mode
        return quantize_int8(model)
