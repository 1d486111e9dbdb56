"""int8 weight-only quantisation and low-precision models against fp32."""
import pytest
import torch

from gptkit import load_model
from gptkit.errors import GptkitError
from gptkit.quantize import Int8Linear

from conftest import build_random_gpt2 as build

pytest.importorskip("transformers")


def test_int8_linear_is_per_channel_symmetric_int8():
    torch.manual_seed(0)
    w = torch.randn(48, 32)
    w[3] *= 100  # a per-channel scale keeps other rows precise
    lin = Int8Linear(w, torch.randn(48))
    assert lin.weight.dtype == torch.int8 and lin.weight.abs().max() <= 127
    assert torch.allclose(lin.dequantized(), w, atol=float(lin.scale.max()) / 2 + 1e-6)
    assert (lin.dequantized() - w)[0].abs().max() < 0.05
    for rows in (5, 40):  # the int8pack kernel (decoding) and the dequantised matmul (prompts)
        x = torch.randn(rows, 32)
        ref = x @ lin.dequantized().t() + lin.bias
        assert torch.allclose(lin(x), ref, rtol=2e-2, atol=2e-2 * float(ref.abs().max()))


def test_int8_and_bf16_models_generate_close_to_fp32(tmp_path):
    build(tmp_path, n_embd=64, std=0.05)
    fp32 = load_model(tmp_path)
    x = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = fp32(x).float().log_softmax(-1)
        for q, dt in ((None, "bfloat16"), ("int8", None), ("int8", "bfloat16")):
            m = load_model(tmp_path, dtype=dt, quantize=q)
            got = m(x).float().log_softmax(-1)
            kl = (ref.exp() * (ref - got)).sum(-1).mean().item()
            top1 = (ref.argmax(-1) == got.argmax(-1)).float().mean().item()
            assert kl < 5e-3 and top1 > 0.9, (q, dt, kl, top1)
            assert m.generate(x, max_new_tokens=5).shape == (4, 21)
    assert isinstance(load_model(tmp_path, quantize="int8").lm_head, Int8Linear)
    with pytest.raises(GptkitError, match="unknown quantization"):
        load_model(tmp_path, quantize="int4")


def test_quantized_is_read_from_the_layers_not_kept_beside_them(tmp_path):
    from gptkit.quantize import quantize_int8
    build(tmp_path)
    model = load_model(tmp_path)
    assert model.quantized is None and model.source == str(tmp_path) and model.tokenizer is not None
    quantize_int8(model)
    assert model.quantized == "int8"
    with pytest.raises(GptkitError, match="already quantised"):
        quantize_int8(model)
    from gptkit.chat.template import grow_vocab
    with pytest.raises(GptkitError, match="quantized"):
        grow_vocab(model, model.config.vocab_size + 2)
