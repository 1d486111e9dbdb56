import pytest
import torch
from torch.nn import functional as F

from gptkit.errors import GptkitError
from gptkit.model import GPT, PRESETS, GPTConfig, preset_config


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**dict(vocab_size=97, n_positions=32, n_embd=32, n_layer=2, n_head=4), **kw})).eval()


def test_logits_shape_and_hf_parameter_names():
    m = tiny()
    x = torch.randint(0, 97, (3, 11))
    assert m(x).shape == (3, 11, 97)
    names = set(dict(m.named_parameters()))
    for n in ("transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.attn.c_attn.weight",
              "transformer.h.1.mlp.c_fc.bias", "transformer.ln_f.weight"):
        assert n in names
    assert m.lm_head.weight is m.transformer.wte.weight  # tied


def test_causal_future_tokens_do_not_change_past_logits():
    m = tiny()
    x = torch.randint(0, 97, (1, 16))
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % 97
    with torch.no_grad():
        assert torch.allclose(m(x)[0, :10], m(y)[0, :10], atol=1e-6)
        assert not torch.allclose(m(x)[0, 10:], m(y)[0, 10:])


def test_kv_cache_incremental_equals_full_forward():
    m = tiny()
    x = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        full = m(x)
        cache = m.new_cache(2, 20)
        parts = [m(x[:, :7], cache=cache), m(x[:, 7:12], cache=cache)]
        parts += [m(x[:, t:t + 1], cache=cache) for t in range(12, 20)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_left_padding_mask_gives_unpadded_logits():
    m = tiny()
    x = torch.randint(0, 97, (1, 9))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), x], 1)
    mask = torch.tensor([[0, 0, 0] + [1] * 9])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        a = m(x)
        b = m(padded, attention_mask=mask, position_ids=pos)[:, 3:]
    assert torch.allclose(a, b, atol=1e-5)


def test_forward_with_targets_is_mean_next_token_loss():
    m = tiny()
    x = torch.randint(0, 97, (2, 12))
    y = torch.randint(0, 97, (2, 12))
    with torch.no_grad():
        ref = F.cross_entropy(m(x).flatten(0, 1), y.flatten())
        assert torch.allclose(m(x, targets=y), ref, atol=1e-5)


def test_training_step_reduces_loss_and_grads_flow_everywhere():
    m = tiny().train()
    x = torch.randint(0, 97, (4, 16))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = m(x, targets=x.roll(-1, 1))
        loss.backward()
        if first is None:
            first = loss.item()
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
        opt.step()
        opt.zero_grad()
    assert loss.item() < first - 1.0


def test_context_overflow_is_a_clear_error():
    m = tiny()
    with pytest.raises(GptkitError, match="longer than the model's context"):
        m(torch.zeros(1, 33, dtype=torch.long))


def test_config_validation_and_presets():
    with pytest.raises(GptkitError, match="divisible"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(GptkitError, match="unknown preset"):
        preset_config("gpt5")
    with pytest.raises(GptkitError, match="activation_function"):
        GPTConfig(activation_function="swish")
    assert preset_config("gpt2").n_layer == 12 and set(PRESETS) >= {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"}
    assert GPTConfig.from_dict(GPTConfig(n_layer=3).to_dict()).n_layer == 3


def test_gpt2_124m_parameter_count():
    with torch.device("meta"):
        m = GPT(preset_config("gpt2"))
    assert m.num_parameters() == 124_439_808  # GPT-2 small, tied embeddings


def test_no_bias_variant_has_no_bias_parameters():
    m = tiny(bias=False)
    assert not any(n.endswith(".bias") for n, _ in m.named_parameters())
    assert m(torch.randint(0, 97, (1, 5))).shape == (1, 5, 97)


def test_grouped_query_attention_is_multi_head_attention_with_shared_key_value_heads():
    """n_kv_head=2 of 4 heads computes what multi-head attention computes with each key/value head
    copied to its group of two query heads; the cache holds only the two."""
    gqa = tiny(n_kv_head=2)
    mha = tiny()
    sd = gqa.state_dict()
    hd = 8
    for i in range(2):
        pre = f"transformer.h.{i}.attn.c_attn."
        for kind in ("weight", "bias"):
            q, k, v = sd[pre + kind].split((32, 16, 16), dim=0)
            k, v = (t.unflatten(0, (2, hd)).repeat_interleave(2, dim=0).flatten(0, 1) for t in (k, v))
            sd[pre + kind] = torch.cat((q, k, v))
    mha.load_state_dict(sd)
    x = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        assert (gqa(x) - mha(x)).abs().max() <= 1e-5
        cache = gqa.new_cache(2, 20)
        steps = [gqa(x[:, :9], cache=cache)] + [gqa(x[:, t:t + 1], cache=cache) for t in range(9, 20)]
    assert (torch.cat(steps, 1) - mha(x)).abs().max() <= 1e-5
    assert cache.k.shape == (2, 2, 2, 20, hd)  # layers, batch, kv heads, positions, head_dim
    assert cache.k.nbytes * 2 == mha.new_cache(2, 20).k.nbytes


def test_what_a_loader_knows_is_declared_and_given_to_the_constructor():
    from gptkit.tokenizer import bytes_tokenizer
    config = GPTConfig(vocab_size=257, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    fresh = GPT(config)
    assert (fresh.tokenizer, fresh.tokenizer_error, fresh.source, fresh.quantized) == (None, None, None, None)
    tok = bytes_tokenizer()
    loaded = GPT(config, tokenizer=tok, source="somewhere")
    assert loaded.tokenizer is tok and loaded.source == "somewhere"
