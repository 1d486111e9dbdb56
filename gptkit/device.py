"""Where and in what precision to compute: bf16 where the hardware has it, fp32 otherwise."""
from __future__ import annotations

import contextlib
import os
import warnings
from functools import cache
from pathlib import Path

import torch

from .errors import GptkitError, OptionError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@cache
def cpu_has_fast_bf16() -> bool:
    """bf16 matmuls run at native speed on this CPU, not emulated: it lists AMX or AVX-512 BF16 AND
    a bf16 product measures faster than fp32 (bf16_matmul_speedup). The flags alone can mislead (a
    hypervisor's, or oneDNN held to an older ISA by ONEDNN_MAX_CPU_ISA): emulated bf16 runs ~50x
    slower than fp32 (1.3-2.7 GFLOPS against ~100-150 on the AVX2 and capped hosts measured), native
    ~2x faster, so one short timing tells them apart. Every "auto" precision reads this one answer:
    --dtype auto (train, eval, generate, serve), --muon-dtype auto and the bf16 inference kernels."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    if not any(f in flags for f in (" amx_bf16", " avx512_bf16")):
        return False
    return bf16_matmul_speedup() > 1.0


def bf16_matmul_speedup(n: int = 256, rounds: int = 3, window_s: float = 0.01) -> float:
    """fp32 seconds / bf16 seconds of an n x n matrix product on the CPU: above 1, bf16 is the
    faster. Each dtype repeats its product for `window_s` per round, rounds interleaved, best round
    kept after a warm-up one (~0.1 s in all): windows, not single products, so that another
    process's time slice on a shared machine does not decide."""
    import time
    x = torch.randn(n, n, generator=torch.Generator().manual_seed(0))  # the global RNG stays untouched
    a = {dt: x.to(dt) for dt in (torch.float32, torch.bfloat16)}
    best = dict.fromkeys(a, float("inf"))
    for r in range(rounds + 1):
        for dt, m in a.items():
            k, t = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - t) < window_s or k == 0:
                torch.mm(m, m)
                k += 1
            if r:  # round 0 warms up
                best[dt] = min(best[dt], elapsed / k)
    return best[torch.float32] / best[torch.bfloat16]


def emulated_bf16_note(device: torch.device) -> str | None:
    """One line saying bf16 is slow here (a CPU without native bf16), else None."""
    if device.type != "cpu" or cpu_has_fast_bf16():
        return None
    return ("bfloat16 is emulated on this CPU (no native AVX512-BF16/AMX products): expect it to run many "
            "times slower than float32 (--dtype auto chooses float32 here)")


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast precision for "auto" | "bfloat16" | "float16" | "float32" (None = plain fp32)."""
    if name == "float32":
        return None
    if name in DTYPES:
        if name == "bfloat16" and (note := emulated_bf16_note(device)) is not None:
            warnings.warn(note, stacklevel=2)
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


def muon_dtype(name: str, device: torch.device) -> str:
    """The precision of Muon's Newton-Schulz iteration for --muon-dtype NAME on `device`: "auto" is
    bfloat16 where the device computes it natively (CUDA with bf16; a CPU where cpu_has_fast_bf16
    measured it faster than fp32), else float32 (never float16: its range is too narrow there)."""
    if name in ("float32", "bfloat16"):
        return name
    if name != "auto":
        raise GptkitError(f"unknown --muon-dtype {name!r} (choose from {', '.join(MUON_DTYPES)})")
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device.type == "cpu" and cpu_has_fast_bf16() else "float32"


MUON_DTYPES = ("auto", "float32", "bfloat16")


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
