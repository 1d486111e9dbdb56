"""Where and in what precision to compute: bf16 where the hardware has it, fp32 otherwise."""
from __future__ import annotations

import contextlib
from functools import cache
from pathlib import Path

import torch

from .errors import GptkitError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@cache
def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 BF16: the CPUs on which bf16 matmuls are real speed, not emulation."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in (" amx_bf16", " avx512_bf16"))


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast precision for "auto" | "bfloat16" | "float16" | "float32" (None = plain fp32)."""
    if name == "float32":
        return None
    if name in DTYPES:
        return DTYPES[name]
    if name != "auto":
        raise GptkitError(f"unknown dtype {name!r} (choose from auto, {', '.join(DTYPES)})")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_fast_bf16() else None


def compute_dtype(name: str, device: torch.device) -> str:
    """The dtype name --dtype NAME computes in on `device`: "auto" is the device's native low
    precision where it has one (see autocast_dtype), else float32."""
    amp = autocast_dtype(name, device)
    return "float32" if amp is None else str(amp).removeprefix("torch.")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
