"""Model files: safetensors weights + config.json in the Hugging Face GPT-2 layout, in and out.

A directory gptkit writes is a valid Hugging Face GPT-2 directory (config.json,
model.safetensors, vocab.json, merges.txt, ...). Every write is atomic: files are written under a
temporary name in the same directory and renamed into place, so a kill at any moment leaves the
previous good file intact. Nothing here unpickles anything: weights are safetensors, and the
training state is read with torch.load(weights_only=True).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import GptkitError
from .model import GPT, GPTConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TRAIN_STATE_FILE = "train_state.pt"

# GPT-2 stores these as Conv1D, i.e. (in, out); nn.Linear is (out, in).
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def hf_config(config: GPTConfig) -> dict[str, Any]:
    """config.json as transformers' GPT2Config reads it; gptkit-only options kept under 'gptkit'."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.n_positions,
        "n_ctx": config.n_positions,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": config.n_inner,
        "activation_function": config.activation_function,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "torch_dtype": "float32",
        "gptkit": {"bias": config.bias},
    }


def config_from_hf(d: dict[str, Any], source: str = CONFIG_FILE) -> GPTConfig:
    """Read a GPT-2 config.json; options we cannot honour are refused by name."""
    model_type = d.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise GptkitError(f"{source}: model_type {model_type!r} is not a GPT-2 architecture "
                          "(gptkit loads GPT-2-style models only)")
    for flag, ok in (("scale_attn_by_inverse_layer_idx", False), ("reorder_and_upcast_attn", False),
                     ("scale_attn_weights", True), ("add_cross_attention", False),
                     ("tie_word_embeddings", True)):
        if d.get(flag, ok) != ok:
            raise GptkitError(f"{source}: {flag}={d[flag]} is not supported by gptkit's GPT")
    missing = [k for k in ("vocab_size", "n_embd", "n_layer", "n_head") if k not in d]
    if missing:
        raise GptkitError(f"{source}: missing key(s) {', '.join(missing)}")
    pdrop = d.get("resid_pdrop", 0.0)
    return GPTConfig(
        vocab_size=d["vocab_size"], n_positions=d.get("n_positions", d.get("n_ctx", 1024)),
        n_embd=d["n_embd"], n_layer=d["n_layer"], n_head=d["n_head"], n_inner=d.get("n_inner"),
        activation_function=d.get("activation_function", "gelu_new"),
        layer_norm_epsilon=d.get("layer_norm_epsilon", 1e-5), dropout=pdrop,
        bias=d.get("gptkit", {}).get("bias", True),
        bos_token_id=d.get("bos_token_id"), eos_token_id=d.get("eos_token_id"),
    )


def to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our parameters under GPT-2's names and Conv1D shapes (the tied lm_head is not stored)."""
    out = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        t = t.detach()
        if name.endswith(_CONV1D_SUFFIXES):
            t = t.t()
        out[name] = t.contiguous()
    return out


def from_hf_state_dict(sd: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """GPT-2 tensors (with or without the 'transformer.' prefix) -> our names and shapes."""
    out = {}
    for name, t in sd.items():
        if name.endswith((".attn.bias", ".attn.masked_bias")) and t.dim() == 4:
            continue  # old GPT-2 checkpoints store their causal mask as a buffer
        if not name.startswith(("transformer.", "lm_head.")):
            name = "transformer." + name
        if name.endswith(_CONV1D_SUFFIXES):
            t = t.t().contiguous()  # one tensor at a time: never two copies of the whole model
        out[name] = t
    out.pop("lm_head.weight", None)  # tied to wte
    return out


def save_model(model: GPT, directory: str | os.PathLike, tokenizer: Any = None) -> Path:
    """Write config.json + model.safetensors (+ tokenizer files) into `directory`, atomically."""
    if not model.config.bias:
        raise GptkitError("a model with bias=False has no GPT-2 equivalent; it cannot be saved in the "
                          "Hugging Face GPT-2 layout")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(to_hf_state_dict(model), str(tmp), metadata={"format": "pt"})
    write_json(directory / CONFIG_FILE, hf_config(model.config))
    if tokenizer is not None:
        tokenizer.save(directory)
    return directory


def read_config(directory: Path) -> GPTConfig:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise GptkitError(f"{path}: missing (not a model directory)")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GptkitError(f"{path}: not valid JSON ({e})") from None
    return config_from_hf(d, str(path))


def read_weights(directory: Path) -> tuple[dict[str, torch.Tensor], str]:
    st, binf = directory / WEIGHTS_FILE, directory / "pytorch_model.bin"
    if st.is_file():
        try:
            return load_file(str(st)), str(st)
        except (SafetensorError, OSError, ValueError) as e:
            raise GptkitError(f"{st}: unreadable or truncated safetensors file ({e})") from None
    if binf.is_file():
        try:
            return torch.load(binf, map_location="cpu", weights_only=True), str(binf)
        except Exception as e:  # weights_only refuses pickled code; corrupt zips fail too
            raise GptkitError(f"{binf}: cannot be read safely ({type(e).__name__}: {e})") from None
    raise GptkitError(f"{directory}: no {WEIGHTS_FILE} or pytorch_model.bin")


def load_state_into(model: GPT, sd: dict[str, torch.Tensor], source: str, assign: bool = True) -> None:
    """Check names and shapes, then load; assign=True adopts the tensors (no copy, meta models)."""
    expected = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing:
        raise GptkitError(f"{source}: missing tensor {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if unexpected:
        raise GptkitError(f"{source}: unexpected tensor {unexpected[0]} (not a GPT-2 model of this config?)")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise GptkitError(f"{source}: tensor {k} has shape {tuple(v.shape)}, config.json implies "
                              f"{tuple(expected[k].shape)}")
    model.load_state_dict(sd, strict=False, assign=assign)
    model.lm_head.weight = model.transformer.wte.weight  # re-tie after assign


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
HUB_FILES = ["config.json", "generation_config.json", "model.safetensors", "vocab.json", "merges.txt",
             "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
    """A local directory as is; a Hub id ('gpt2', 'openai-community/gpt2') downloaded and cached
    through huggingface_hub (safetensors preferred; pytorch_model.bin only where there is none)."""
    path = Path(name_or_path)
    if path.exists():
        if not path.is_dir():
            raise GptkitError(f"{path}: not a directory (a model is a directory with config.json and "
                              "model.safetensors)")
        return path
    name = str(name_or_path)
    if not HUB_ID.match(name) or name.startswith((".", "/")):
        raise GptkitError(f"{path}: no such model directory")
    return _download(name)


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError)
    try:
        local = Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
        if not (local / WEIGHTS_FILE).is_file():
            local = Path(snapshot_download(repo_id, allow_patterns=HUB_FILES + ["pytorch_model.bin"]))
        return local
    except (RepositoryNotFoundError, GatedRepoError):
        raise GptkitError(f"{repo_id!r}: no such local directory, and no accessible model of that name "
                          "on the Hugging Face Hub") from None
    except (LocalEntryNotFoundError, EntryNotFoundError, OSError) as e:
        raise GptkitError(f"cannot reach the Hugging Face Hub to download {repo_id!r}, and it is not in "
                          "the local cache; pass a local model directory (config.json + model.safetensors) "
                          f"instead ({type(e).__name__})") from None
    except Exception as e:  # requests/httpx connection errors differ between hub versions
        if "connect" in type(e).__name__.lower() or "timeout" in type(e).__name__.lower():
            raise GptkitError(f"cannot reach the Hugging Face Hub to download {repo_id!r}; pass a local "
                              "model directory instead") from None
        raise


def load_model(name_or_path: str | os.PathLike, dtype: torch.dtype | None = None,
               device: str | torch.device = "cpu") -> GPT:
    """A GPT from a gptkit run directory, a local Hugging Face GPT-2 directory or a Hub id.

    The model is built on the meta device and adopts the loaded tensors, so the weights are never
    held twice. Its tokenizer, where the directory has one, is attached as `model.tokenizer`.
    """
    directory = resolve_model_dir(name_or_path)
    config = read_config(directory)
    sd, source = read_weights(directory)
    sd = from_hf_state_dict(sd, source)
    with torch.device("meta"):
        model = GPT(config)
    load_state_into(model, sd, source)
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    model.tokenizer = _maybe_tokenizer(directory)
    model.source = str(directory)
    return model.eval()


def _maybe_tokenizer(directory: Path) -> Any:
    from .tokenizer import Tokenizer
    if (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        return Tokenizer.load(directory)
    return None


def save_train_state(directory: str | os.PathLike, state: dict[str, Any]) -> None:
    with atomic_path(Path(directory) / TRAIN_STATE_FILE) as tmp:
        torch.save(state, tmp)


def load_train_state(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / TRAIN_STATE_FILE
    if not path.is_file():
        raise GptkitError(f"{path}: missing (nothing to resume from)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise GptkitError(f"{path}: unreadable or truncated ({type(e).__name__})") from None
