"""kernels.py: the inference Linear and the fused output-layer loss."""
import pytest
import torch
from torch.nn import functional as F

from gptkit.kernels import Linear, linear_cross_entropy


def test_inference_linear_path_equals_f_linear_and_keeps_autograd():
    torch.manual_seed(0)
    lin = Linear(64, 96)
    x = torch.randn(3, 7, 64, requires_grad=True)
    with torch.no_grad():
        fast = lin(x)
    ref = torch.nn.functional.linear(x, lin.weight, lin.bias)
    assert torch.allclose(fast, ref, atol=1e-5)
    lin(x).sum().backward()  # with grad it is F.linear: gradients flow
    assert x.grad is not None and lin.weight.grad is not None
    lin = lin.bfloat16()  # bf16: a packed copy of the weight, rebuilt when the weight changes
    xb = x.detach().bfloat16()
    with torch.no_grad():
        assert torch.equal(lin(xb), torch.nn.functional.linear(xb, lin.weight, lin.bias))
        lin.weight.mul_(-1)
        assert torch.equal(lin(xb), torch.nn.functional.linear(xb, lin.weight, lin.bias))
    assert list(lin.state_dict()) == ["weight", "bias"]


@pytest.mark.parametrize("amp", [False, True])
def test_fused_loss_and_grads_match_plain_cross_entropy(amp):
    torch.manual_seed(1)
    N, E, V = 700, 24, 300  # N spans several chunks and a ragged last one
    h = torch.randn(N, E, requires_grad=True)
    w = torch.randn(V, E, requires_grad=True)
    t = torch.randint(0, V, (N,))
    t[::13] = -100
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        loss = linear_cross_entropy(h, w, t)
        ref = F.cross_entropy(F.linear(h2, w2).float(), t)
    (2 * loss).backward()
    (2 * ref).backward()
    tol = 2e-2 if amp else 1e-5
    assert abs(loss.item() - ref.item()) < tol
    assert torch.allclose(h.grad, h2.grad, atol=tol, rtol=tol)
    assert torch.allclose(w.grad, w2.grad, atol=tol, rtol=tol)
    assert h.grad.dtype == torch.float32 and w.grad.dtype == torch.float32


@pytest.mark.parametrize("n_kv_head", [4, 2])
@pytest.mark.parametrize("masked", [False, True])
def test_one_query_bf16_attention_matches_sdpa(n_kv_head, masked):
    """A decoding step's bf16 attention over a long cache (two matmuls, not SDPA) agrees with fp32
    SDPA to bf16 rounding, grouped-query heads and padded keys included; shorter caches are SDPA's."""
    from gptkit.kernels import ONE_QUERY_MIN_KEYS, attention
    torch.manual_seed(2)
    L = ONE_QUERY_MIN_KEYS + 37
    q = torch.randn(3, 4, 1, 16)
    k, v = torch.randn(3, n_kv_head, L, 16), torch.randn(3, n_kv_head, L, 16)
    mask = (torch.arange(L) < torch.tensor([L, L - 100, 5])[:, None])[:, None, None] if masked else None
    gqa = n_kv_head != 4
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
    with torch.no_grad():
        got = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), attn_mask=mask, enable_gqa=gqa)
        short = attention(q.bfloat16(), k[:, :, :64].bfloat16(), v[:, :, :64].bfloat16(), enable_gqa=gqa)
    assert got.dtype == torch.bfloat16 and got.shape == ref.shape
    assert (got.float() - ref).abs().max() < 2e-2 * ref.abs().max()
    sdpa = F.scaled_dot_product_attention(q.bfloat16(), k[:, :, :64].bfloat16(), v[:, :, :64].bfloat16(),
                                          enable_gqa=gqa)
    assert torch.equal(short, sdpa)
