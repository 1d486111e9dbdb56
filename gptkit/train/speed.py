"""Training speed: model FLOPs per token and devices' peak FLOP/s (for MFU).
"""
from __future__ import annotations

import torch

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from the vendors' data sheets; the first
# name contained in the device's name wins.
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    ("H200 NVL", 835.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0),
    ("GH200", 989.0), ("H200", 989.0), ("H100", 989.0), ("H800", 989.0),
    ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0),
]


def peak_flops_of(name: str) -> float | None:
    """The dense bf16 peak in FLOP/s of a GPU by its name (torch.cuda.get_device_name); None if unknown."""
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in name:
            return tflops * 1e12
    return None


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in FLOP/s; None on CPUs and on GPUs not in the table."""
    if device.type != "cuda":
        return None
    return peak_flops_of(torch.cuda.get_device_name(device))


def flops_per_token(model: torch.nn.Module, block_size: int) -> float:
    """Training FLOPs per token, forward + backward (PaLM, appendix B): 6 N + 12 L H Q T, with N the
    parameters less the position embedding (the tied wte is the output layer's matmul)."""
    c = model.config
    n = model.num_parameters(exclude_embeddings=True)  # less wpe (rotary models have none)
    return 6 * n + 12 * c.n_layer * c.n_head * c.head_dim * block_size


def measured_step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                          amps: list[torch.dtype | None], rounds: int = 2) -> list[float]:
    """Best-of-`rounds` seconds of one forward + backward of `model` on (x, y) under each autocast
    dtype in `amps` (None: fp32), after one warm-up each; rounds interleave the contenders so that a
    shared machine's noise hits all alike. Gradients are cleared afterwards."""
    import time

    from ..device import autocast
    best = [float("inf")] * len(amps)
    for r in range(rounds + 1):
        for i, amp in enumerate(amps):
            t = time.perf_counter()
            with autocast(x.device, amp):
                model(x, targets=y).backward()
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            if r > 0:  # round 0 warms up (allocations, oneDNN primitive caches)
                best[i] = min(best[i], time.perf_counter() - t)
    model.zero_grad(set_to_none=True)
    return best
