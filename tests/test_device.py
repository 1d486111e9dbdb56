"""device.py: which precisions this host computes natively, measured, and every "auto" reading it."""
from __future__ import annotations

import warnings

import pytest
import torch

from gptkit import device, kernels
from gptkit.errors import GptkitError

CPU = torch.device("cpu")


@pytest.fixture
def bf16_slow(monkeypatch):
    """The host's bf16 timing says bf16 is emulated (as on an AVX2-only CPU, whatever its flags)."""
    device.cpu_has_fast_bf16.cache_clear()
    kernels._onednn_linear_dtypes.cache_clear()
    monkeypatch.setattr(device, "bf16_matmul_speedup", lambda *a, **k: 0.02)
    yield
    monkeypatch.undo()
    device.cpu_has_fast_bf16.cache_clear()
    kernels._onednn_linear_dtypes.cache_clear()


def test_the_bf16_timing_measures_something():
    s = device.bf16_matmul_speedup(n=64, rounds=1, window_s=0.001)
    assert 0 < s < float("inf")


def test_with_bf16_emulated_every_auto_is_float32_and_bf16_asked_for_says_so(bf16_slow):
    assert not device.cpu_has_fast_bf16()
    assert device.autocast_dtype("auto", CPU) is None and device.compute_dtype("auto", CPU) == "float32"
    assert device.muon_dtype("auto", CPU) == "float32"
    assert kernels._onednn_linear_dtypes() in ((), (torch.float32,))  # bf16 products stay off oneDNN's route
    with pytest.warns(UserWarning, match="bfloat16 is emulated on this CPU"):
        assert device.autocast_dtype("bfloat16", CPU) == torch.bfloat16


def test_with_bf16_native_auto_keeps_it_and_says_nothing(monkeypatch):
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: True)
    assert device.autocast_dtype("auto", CPU) == torch.bfloat16 and device.muon_dtype("auto", CPU) == "bfloat16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        device.autocast_dtype("bfloat16", CPU)


def test_muon_dtype_as_asked_and_a_bad_name_refused():
    assert device.muon_dtype("float32", CPU) == "float32" and device.muon_dtype("bfloat16", CPU) == "bfloat16"
    with pytest.raises(GptkitError, match="unknown --muon-dtype 'half'"):
        device.muon_dtype("half", CPU)


def test_a_bf16_model_loaded_as_stored_says_bf16_is_slow_here(tmp_path, bf16_slow):
    from gptkit import GPT, load_model, preset_config
    from gptkit.hf import save_model
    save_model(GPT(preset_config("tiny", vocab_size=257, n_layer=1)).bfloat16(), tmp_path / "m")
    with pytest.warns(UserWarning, match="loaded as stored, in bfloat16.*emulated"):
        assert load_model(tmp_path / "m", dtype="auto").dtype == torch.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(tmp_path / "m")  # float32, the default: nothing to say
