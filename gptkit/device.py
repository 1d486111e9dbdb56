"""Where and in what precision to compute: bf16 where the hardware has it, fp32 otherwise."""
from __future__ import annotations

import contextlib
import os
from functools import cache
from pathlib import Path

import torch

from .errors import GptkitError, OptionError

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


def resolve_device(name: str | torch.device | None) -> torch.device:
    """"auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:N", "mps", or a torch.device; a
    device this machine or this torch build does not have is a one-line error naming it."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise OptionError("device", f"{name!r} is not a device (choose from auto, cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise OptionError("device", f"{name}: this torch build has no CUDA support (torch {torch.__version__}); "
                              "install a CUDA build of torch or use --device cpu")
        count = torch.cuda.device_count()
        if count == 0:
            raise OptionError("device", f"{name}: no CUDA GPU is visible to this process (CUDA_VISIBLE_DEVICES="
                              f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use --device cpu")
        if device.index is not None and device.index >= count:
            raise OptionError("device", f"{name}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise OptionError("device", f"{name}: Apple's MPS backend is not available on this machine")
    elif device.type != "cpu":
        raise OptionError("device", f"{name!r}: gptkit runs on cpu, cuda or mps")
    return device
