"""Muon: momentum orthogonalised by a Newton-Schulz iteration, for the hidden weight matrices.

gptkit's own because torch.optim.Muon hard-codes its Newton-Schulz iteration in bf16, which a CPU
without native bf16 emulates ~50x slower than fp32; here `ns_dtype` chooses (--muon-dtype).

Otherwise the maths is torch.optim.Muon's (torch 2.13, after Keller Jordan's muon.py): the momentum
buffer is an EMA of the gradients (Nesterov: the update is the gradient moved towards it again),
the quintic Newton-Schulz iteration with coefficients (3.4445, -4.7750, 2.0315) for 5 steps on the
update scaled to unit Frobenius norm (on its transpose when it is tall), decoupled weight decay
(p *= 1 - lr * wd), and the step lr * sqrt(max(1, rows / cols)) ("original") or
lr * 0.2 * sqrt(max(rows, cols)) ("match_rms_adamw", AdamW's update RMS). The param groups hold
the same keys and the state the same "momentum_buffer", so state dicts load either way.
"""
from __future__ import annotations

import math
from typing import Any

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
EPS = 1e-7
ADJUST_LR_FNS = ("original", "match_rms_adamw")


def zeropower_via_newtonschulz(g: torch.Tensor, coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                               steps: int = NS_STEPS, eps: float = EPS,
                               dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """An approximate orthogonalisation U S' V^T of the matrix g = U S V^T (S' ~ 1), computed in `dtype`."""
    a, b, c = coefficients
    x = g.to(dtype)
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm <= 1 (out of place: g may be the momentum buffer)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: torch.Size) -> float:
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1.0, rows / cols))
    return lr * 0.2 * math.sqrt(max(rows, cols))


class Muon(torch.optim.Optimizer):
    """torch.optim.Muon's update with the Newton-Schulz iteration in `ns_dtype` (see the module)."""

    def __init__(self, params: Any, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                 eps: float = EPS, ns_steps: int = NS_STEPS, adjust_lr_fn: str | None = None,
                 ns_dtype: torch.dtype = torch.bfloat16) -> None:
        if not (lr >= 0 and momentum >= 0 and weight_decay >= 0):
            raise ValueError(f"Muon: lr, momentum and weight_decay must be >= 0 (got {lr}, {momentum}, {weight_decay})")
        if adjust_lr_fn is not None and adjust_lr_fn not in ADJUST_LR_FNS:
            raise ValueError(f"Muon: adjust_lr_fn must be one of {', '.join(ADJUST_LR_FNS)}, got {adjust_lr_fn!r}")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon takes 2-D parameters only, got one of shape {tuple(p.shape)}")
        self.ns_dtype = ns_dtype  # the host's choice, not the run's state: not in the state dict

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(g, 1 - mu)
                update = g.lerp(buf, mu) if group["nesterov"] else buf
                o = zeropower_via_newtonschulz(update, group["ns_coefficients"], group["ns_steps"], group["eps"],
                                               self.ns_dtype)
                p.mul_(1 - lr * wd)
                p.add_(o, alpha=-adjusted_lr(lr, group["adjust_lr_fn"], p.shape))
        return loss
