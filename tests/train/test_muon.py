"""muon.py: torch.optim.Muon's update, its Newton-Schulz iteration in the precision the host
computes natively (--muon-dtype), chosen from the host's bf16 timing and kept on resume."""
from __future__ import annotations

import json
import math

import pytest
import torch

from gptkit import device as device_module
from gptkit import kernels
from gptkit.train import TrainConfig, train
from gptkit.train import muon as muon_module
from gptkit.train.muon import Muon
from gptkit.train.optim import make_optimizer

SHAPES = [(48, 16), (16, 48), (16, 40), (24, 24), (24, 24), (16, 24)]  # tall (transposed inside), wide, square;
# fp32 stacks the matrices of one shape ((48,16) with (16,48)), on 1:3 and 1:2.5 shapes through the Gram form


def params_and_grads(seed: int = 0, steps: int = 3) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=g) * 0.1 for s in SHAPES]
    grads = [[torch.randn(s, generator=g) for s in SHAPES] for _ in range(steps)]
    return params, grads


def run(opt_cls, params: list[torch.Tensor], grads: list[list[torch.Tensor]], **kw) -> list[torch.Tensor]:
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    opt = opt_cls(ps, **kw)
    for step in grads:
        for p, g in zip(ps, step):
            p.grad = g.clone()
        opt.step()
    return [p.detach() for p in ps]


@pytest.mark.parametrize("adjust", ["original", "match_rms_adamw"])
@pytest.mark.parametrize("nesterov", [True, False])
def test_same_update_as_torch_muon_in_bf16(adjust, nesterov):
    params, grads = params_and_grads()
    kw = dict(lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=nesterov, adjust_lr_fn=adjust)
    ours = run(Muon, params, grads, ns_dtype=torch.bfloat16, **kw)
    theirs = run(torch.optim.Muon, params, grads, **kw)
    for a, b, p in zip(ours, theirs, params):
        assert (a - p).abs().max() > 1e-3  # it moved
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def reference_ns(u: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Keller Jordan's quintic Newton-Schulz written out in fp32, term by term."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = u.T if u.size(0) > u.size(1) else u
    x = x / max(x.norm().item(), 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if u.size(0) > u.size(1) else x


def reference_muon(params, grads, lr, wd, mu, adjust):
    ps, bufs = [p.clone() for p in params], [torch.zeros_like(p) for p in params]
    for step in grads:
        for i, g in enumerate(step):
            bufs[i] = mu * bufs[i] + (1 - mu) * g  # an EMA of the gradients
            u = (1 - mu) * g + mu * bufs[i]  # Nesterov: the gradient moved towards it again
            rows, cols = g.shape
            scale = math.sqrt(max(1, rows / cols)) if adjust == "original" else 0.2 * math.sqrt(max(rows, cols))
            ps[i] = ps[i] * (1 - lr * wd) - lr * scale * reference_ns(u)
    return ps


@pytest.mark.parametrize("adjust", ["original", "match_rms_adamw"])
def test_float32_newton_schulz_matches_a_float32_reference(adjust):
    params, grads = params_and_grads(seed=1)
    kw = dict(lr=0.02, weight_decay=0.1, momentum=0.95, adjust_lr_fn=adjust)
    ref = reference_muon(params, grads, 0.02, 0.1, 0.95, adjust)
    fp32 = run(Muon, params, grads, ns_dtype=torch.float32, **kw)
    bf16 = run(Muon, params, grads, ns_dtype=torch.bfloat16, **kw)
    for a, r, b in zip(fp32, ref, bf16):
        torch.testing.assert_close(a, r, rtol=0, atol=1e-5)
        assert (b - r).abs().max() > 10 * (a - r).abs().max()  # the precision is really fp32's


def test_newton_schulz_runs_in_its_dtype_and_orthogonalises():
    g = torch.randn(64, 32, generator=torch.Generator().manual_seed(2))
    for dtype in (torch.float32, torch.bfloat16):
        o = muon_module.zeropower_via_newtonschulz(g, dtype=dtype)
        assert o.dtype == dtype and o.shape == g.shape
        s = torch.linalg.svdvals(o.float())
        assert 0.5 < s.min() and s.max() < 1.5  # U S' V^T with S' ~ 1, as the quintic gives


def test_batched_newton_schulz_equals_the_reference_matrix_by_matrix_in_fp32():
    g = torch.Generator().manual_seed(4)
    for shape in [(8, 24), (8, 8), (16, 20), (4, 64)]:  # Gram form at 1:3 and 1:16, plain at 1:1 and 1:1.25
        stack = torch.randn(5, *shape, generator=g)
        one_by_one = torch.stack([reference_ns(m) for m in stack])
        batched = muon_module.zeropower_batched(stack)
        torch.testing.assert_close(batched, one_by_one, rtol=0, atol=2e-5)
        assert (batched - stack).abs().max() > 0.1  # it did something


def test_state_dicts_load_either_way():
    params, grads = params_and_grads(seed=3, steps=4)
    kw = dict(lr=0.02, weight_decay=0.1, adjust_lr_fn="original")
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    theirs = torch.optim.Muon(ps, **kw)
    for step in grads[:2]:
        for p, g in zip(ps, step):
            p.grad = g.clone()
        theirs.step()
    ours = Muon(ps, ns_dtype=torch.bfloat16, **kw)
    ours.load_state_dict(theirs.state_dict())  # a checkpoint of torch.optim.Muon's days resumes
    for step in grads[2:]:
        for p, g in zip(ps, step):
            p.grad = g.clone()
        ours.step()
    straight = run(torch.optim.Muon, params, grads, **kw)
    for a, b in zip(ps, straight):
        torch.testing.assert_close(a.detach(), b, rtol=0, atol=1e-6)
    torch.optim.Muon(ps, **kw).load_state_dict(ours.state_dict())  # and back


@pytest.fixture
def host_bf16(monkeypatch):
    """Set what the host's bf16 timing reports: slow (emulated) or fast (native, flags included)."""
    real = device_module.cpu_has_fast_bf16

    def set_to(fast: bool) -> None:
        real.cache_clear()
        monkeypatch.setattr(device_module, "bf16_matmul_speedup", lambda *a, **k: 2.0 if fast else 0.02)
        # an AVX2 host lists no bf16 flags, so the timing alone cannot say "fast" there
        monkeypatch.setattr(device_module, "cpu_has_fast_bf16", (lambda: True) if fast else real)
    yield set_to
    monkeypatch.undo()
    real.cache_clear()
    kernels._onednn_linear_dtypes.cache_clear()  # asked during the run: ask the real host again


@pytest.fixture
def ns_dtypes(monkeypatch):
    """The dtypes Muon's Newton-Schulz iterations ran in during a run."""
    seen = []
    real = muon_module.zeropower_batched

    def spy(x, *a, **k):
        out = real(x, *a, **k)
        seen.append(out.dtype)
        return out
    monkeypatch.setattr(muon_module, "zeropower_batched", spy)
    return seen


def muon_cfg(data, out, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), preset="tiny", block_size=32, batch_size=4, max_iters=3, eval_interval=3,
                eval_iters=1, log_interval=1, progress=False, dtype="float32", tensorboard=False, optimizer="muon",
                position_embedding="rope", norm="rmsnorm", mlp="swiglu", bias=False)
    return TrainConfig(**{**base, **kw})


def test_with_bf16_slow_on_the_host_muon_runs_in_float32_said_and_kept_on_resume(byte_data, tmp_path, host_bf16,
                                                                                 ns_dtypes, capsys):
    host_bf16(False)
    out = tmp_path / "run"
    train(muon_cfg(byte_data, out, progress=True))
    assert set(ns_dtypes) == {torch.float32} and len(ns_dtypes) > 0
    assert json.loads((out / "train_config.json").read_text())["muon_dtype"] == "float32"
    assert "Newton-Schulz in float32: auto: bf16 is not native here" in capsys.readouterr().err
    host_bf16(True)  # the same run resumed on a host with native bf16: it keeps its precision
    ns_dtypes.clear()
    train(muon_cfg(byte_data, out, max_iters=5, resume=True))
    assert set(ns_dtypes) == {torch.float32}
    assert json.loads((out / "train_config.json").read_text())["muon_dtype"] == "float32"


def test_with_bf16_native_muon_auto_is_bf16_and_a_flag_overrides(byte_data, tmp_path, host_bf16, ns_dtypes):
    host_bf16(True)
    train(muon_cfg(byte_data, tmp_path / "auto"))
    assert set(ns_dtypes) == {torch.bfloat16}
    ns_dtypes.clear()
    train(muon_cfg(byte_data, tmp_path / "asked", muon_dtype="float32"))
    assert set(ns_dtypes) == {torch.float32}


def test_make_optimizer_passes_the_precision_and_refuses_auto():
    from gptkit.errors import GptkitError
    model = torch.nn.Module()
    model.h = torch.nn.ModuleList([torch.nn.Linear(8, 8, bias=False)])
    model.wte = torch.nn.Embedding(10, 8)
    opt = make_optimizer(model, "muon", 1e-3, 0.1, (0.9, 0.95), torch.device("cpu"), 0.02, "float32")
    assert opt.muon.ns_dtype == torch.float32 and isinstance(opt.muon, Muon)
    with pytest.raises(GptkitError, match="float32 or bfloat16"):
        make_optimizer(model, "muon", 1e-3, 0.1, (0.9, 0.95), torch.device("cpu"), 0.02, "auto")
