"""Model files: safetensors weights + config.json in the Hugging Face GPT-2 layout (or Llama's,
for models GPT-2 cannot express: see llama.py), in and out.

A directory gptkit writes is a valid Hugging Face GPT-2 directory (config.json,
model.safetensors, vocab.json, merges.txt, ...): transformers' AutoModelForCausalLM and
AutoTokenizer load it as is. In the other direction, `load_model` reads any GPT-2 checkpoint: a
gptkit run directory, a local Hugging Face GPT-2 directory (model.safetensors, sharded
safetensors, or pytorch_model.bin read with torch.load(weights_only=True)), or a Hub id
("gpt2", "openai-community/gpt2-medium", ...) downloaded and cached by huggingface_hub.

Memory: the model is built on the meta device and adopts tensors that are read from the file
one at a time (plain reads, no memory map), transposed and cast as they arrive, so loading
holds one copy of the weights plus one tensor - never two copies.

Every write is atomic: files are written under a temporary name in the same directory and
renamed into place, so a kill at any moment leaves the previous good file intact. Nothing here
unpickles anything: weights are safetensors (or weights_only torch.load), and the training state
is read with torch.load(weights_only=True).
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..device import resolve_device
from ..errors import GptkitError
from ..files import atomic_path, write_json
from ..model import GPT, GPTConfig
from ..tokenizer import load_hf_tokenizer
from . import llama
from .gpt2 import (
    _CONV1D_SUFFIXES,
    _check_exportable,
    _same,
    config_from_hf,
    hf_config,
    hf_to_gptkit_name,
    load_state_into,
    to_hf_state_dict,
)
from .hub import resolve_model_dir
from .weights import CONFIG_FILE, WEIGHTS_FILE, iter_tensors, read_config_dict, weight_files

__all__ = ["load_model", "read_state_dict", "resolve_dtype", "resolve_model_dir", "save_model"]

# ---------------------------------------------------------------------------- dtypes

_DTYPE_NAMES = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
                "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}


def resolve_dtype(dtype: Any) -> torch.dtype | str | None:
    """None (float32), "auto" (as stored), a torch float dtype, or a name: "float32", "bfloat16",
    "float16" (also "fp32", "bf16", "fp16", "torch.bfloat16")."""
    if dtype is None or isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    if isinstance(dtype, str):
        key = dtype.lower().removeprefix("torch.")
        if key == "auto":
            return "auto"
        if key in _DTYPE_NAMES:
            return _DTYPE_NAMES[key]
    raise GptkitError(f"dtype {dtype!r} is not supported (choose from float32, bfloat16, float16, auto)")


def _declared_dtype(d: dict[str, Any]) -> torch.dtype | None:
    for key in ("dtype", "torch_dtype"):
        v = d.get(key)
        if isinstance(v, str) and v.lower().removeprefix("torch.") in _DTYPE_NAMES:
            return _DTYPE_NAMES[v.lower().removeprefix("torch.")]
    return None


# ---------------------------------------------------------------------------- load

def load_model(name_or_path: str | os.PathLike, dtype: Any = None, device: str | torch.device = "cpu") -> GPT:
    """A GPT from a gptkit run directory, a local Hugging Face GPT-2 directory or a Hub id.

    dtype: None or "float32" (the default: fp32 whatever the file stores), "bfloat16", "float16",
    a torch dtype, or "auto" (the dtype config.json declares, else the file's). The model is built
    on the meta device and adopts tensors read one at a time, each transposed, cast and moved to
    `device` as it arrives: the weights are never held twice, nor ever all on the CPU when
    `device` is a GPU. Its tokenizer, where the directory has one (vocab.json + merges.txt, or
    tokenizer.json), is attached as `model.tokenizer` (else None).

    The weights are ordinary tensors even when this is called under torch.inference_mode() (as
    servers do): the model then works under inference_mode, no_grad or neither, in any order.
    """
    with torch.inference_mode(False):
        return _load_model(name_or_path, dtype, device)


def _special_ids_in_vocab(config: GPTConfig, source: str) -> GPTConfig:
    """transformers' GPT2Config keeps GPT-2's bos/eos id 50256 whatever the vocabulary: a smaller
    model saved so loads (transformers generates with it) but an id past the vocabulary cannot end
    a sequence. Warn and drop it: generation then stops at the tokenizer's end-of-text, if any."""
    changes = {key: None for key in ("eos_token_id", "bos_token_id")
               if getattr(config, key) is not None and not 0 <= getattr(config, key) < config.vocab_size}
    if changes:  # one line for both (transformers' default sets them alike)
        named = " and ".join(f"{key} {getattr(config, key)}" for key in changes)
        warnings.warn(f"{source}: {named} {'is' if len(changes) == 1 else 'are'} not a token id of this "
                      f"{config.vocab_size}-token model; generating without it", stacklevel=4)
    return dataclasses.replace(config, **changes) if changes else config


def _load_model(name_or_path: str | os.PathLike, dtype: Any, device: str | torch.device) -> GPT:
    target = resolve_dtype(dtype)
    directory = resolve_model_dir(name_or_path)
    d = read_config_dict(directory)
    is_llama = isinstance(d, dict) and d.get("model_type") in llama.ARCHITECTURES
    config = (llama.config_from_hf if is_llama else config_from_hf)(d, str(directory / CONFIG_FILE))
    config = _special_ids_in_vocab(config, str(directory / CONFIG_FILE))
    files = weight_files(directory)
    source = str(files[0]) if len(files) == 1 else str(directory)
    if target is None:
        target = torch.float32
    elif target == "auto":
        target = _declared_dtype(d)  # None: the first floating tensor's dtype decides
    device = resolve_device(device)
    if is_llama:  # a Llama / Qwen3 directory: the rotary, RMSNorm, gated-MLP GPT (hf/llama.py)
        with torch.device("meta"):
            model = GPT(config)
        llama.load_state(model, iter_tensors(files), target, device, source)
        return _finish(model, directory)

    with torch.device("meta"):
        model = GPT(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    sd: dict[str, torch.Tensor] = {}
    lm_head: tuple[torch.Tensor, str] | None = None
    for e in iter_tensors(files):
        ours = hf_to_gptkit_name(e.name)
        if ours is None:
            continue
        if ours not in expected:
            if not config.bias and ours.endswith(".bias"):  # a bias-free model saved as GPT-2: zeros
                if e.load().count_nonzero():
                    raise GptkitError(f"{e.source}: tensor {e.name} is not zero, but {CONFIG_FILE} says the "
                                      "model has no biases (gptkit.bias false)")
                continue
            raise GptkitError(f"{e.source}: unexpected tensor {e.name} (not part of a GPT-2 model)")
        conv = ours.endswith(_CONV1D_SUFFIXES)
        want = expected[ours][::-1] if conv else expected[ours]
        if tuple(e.shape) != want:
            raise GptkitError(f"{e.source}: tensor {e.name} has shape {tuple(e.shape)}, but {CONFIG_FILE} "
                              f"implies {want}")
        if not e.dtype.is_floating_point:
            raise GptkitError(f"{e.source}: tensor {e.name} is {e.dtype}, not floating point")
        if ours in sd or (ours == "lm_head.weight" and lm_head is not None):
            raise GptkitError(f"{e.source}: tensor {e.name} appears twice in the checkpoint")
        if target is None:
            target = e.dtype
        t = e.load(target, device, transpose=conv)
        if ours == "lm_head.weight":
            lm_head = (t, e.source)
        else:
            sd[ours] = t
        del t
    if lm_head is not None:  # tied: it must be the embedding itself
        wte = sd.get("transformer.wte.weight")
        if wte is not None and not _same(lm_head[0], wte):
            raise GptkitError(f"{lm_head[1]}: lm_head.weight differs from transformer.wte.weight, but "
                              f"{CONFIG_FILE} ties them (untied output layers are not supported)")
        lm_head = None
    load_state_into(model, sd, source)
    del sd
    return _finish(model, directory)


def _finish(model: GPT, directory: Path) -> GPT:
    leftover = [n for n, p in model.named_parameters() if p.is_meta]
    if leftover:  # the loaders check names, so this would be a bug, not a user error
        raise RuntimeError(f"{directory}: parameters left unloaded: {leftover[:3]}")
    model.tokenizer, model.tokenizer_error = _maybe_tokenizer(directory, model.config.vocab_size)
    model.source = str(directory)
    return model.eval()


def read_state_dict(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """All tensors of a model directory (either layout) under gptkit's names, for --resume."""
    from .gpt2 import from_hf_state_dict
    from .weights import read_weights
    directory = Path(directory)
    d = read_config_dict(directory)
    sd, source = read_weights(directory)
    if isinstance(d, dict) and d.get("model_type") in llama.ARCHITECTURES:
        return llama.from_hf_state_dict(sd, llama.config_from_hf(d, str(directory / CONFIG_FILE)), source), source
    return from_hf_state_dict(sd, source), source


def read_config(directory: str | os.PathLike) -> GPTConfig:
    """The GPTConfig of a model directory (either layout), without reading its weights."""
    directory = Path(directory)
    d = read_config_dict(directory)
    is_llama = isinstance(d, dict) and d.get("model_type") in llama.ARCHITECTURES
    return (llama.config_from_hf if is_llama else config_from_hf)(d, str(directory / CONFIG_FILE))


# ---------------------------------------------------------------------------- tokenizer

def _maybe_tokenizer(directory: Path, vocab_size: int | None = None) -> tuple[Any, str | None]:
    """(the directory's tokenizer or None, why it is None where it has tokenizer files).

    A tokenizer gptkit cannot represent does not stop the model from loading (training with
    --init-from takes its tokenizer from the data): the reason goes into a warning and into
    `model.tokenizer_error` for callers that need the tokenizer.
    """
    try:
        tok = load_hf_tokenizer(directory)
        if tok is not None and vocab_size is not None and tok.vocab_size > vocab_size:
            raise GptkitError(f"{directory}: the tokenizer has {tok.vocab_size} tokens, more than the "
                              f"model's vocab_size {vocab_size}")
        return tok, None
    except GptkitError as e:
        warnings.warn(f"tokenizer not loaded: {e}", stacklevel=3)
        return None, str(e)


# ---------------------------------------------------------------------------- save

def check_savable(model: GPT) -> str:
    """The transformers layout save_model will write the model in ("gpt2", "llama" or "qwen3"), or
    a GptkitError saying why it cannot: the trainer calls it before its first step, so that no run
    trains for hours and then fails to save."""
    if any(p.is_meta for p in model.parameters()):
        raise GptkitError("the model has parameters on the meta device (not loaded); nothing to save")
    layout = llama.layout_for(model.config)  # refuses what no transformers layout can express
    if layout == "gpt2":
        _gpt2_state_dict(model)
    return layout


def _gpt2_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """GPT-2's tensors for the model (no copy), checked. A bias-free model is GPT-2 with biases of
    zero: they are written as zeros, so transformers loads it and computes the same logits;
    gptkit reads them back into a bias-free model."""
    if model.lm_head.weight is not model.transformer.wte.weight:
        raise GptkitError("the model's output layer is not tied to its token embedding; GPT-2's layout "
                          "cannot express that")
    sd = to_hf_state_dict(model)
    config = model.config
    if not config.bias:
        with torch.device("meta"):
            full = to_hf_state_dict(GPT(dataclasses.replace(config, bias=True)))
        some = next(iter(sd.values()))
        for name, t in full.items():
            if name not in sd and name.endswith(".bias"):
                sd[name] = torch.zeros(t.shape, dtype=some.dtype, device=some.device)
        config = dataclasses.replace(config, bias=True)
    _check_exportable(config, sd)
    return sd


def save_model(model: GPT, directory: str | os.PathLike, tokenizer: Any = None) -> Path:
    """Write config.json + model.safetensors (+ tokenizer files) into `directory`, atomically.

    The result is a Hugging Face GPT-2 directory (a bias-free model with zero biases), or a Llama /
    Qwen3 one for a model with rotary embeddings, RMSNorm and a gated MLP (hf/llama.py); what no
    transformers layout can express is refused here (and by the trainer before its first step),
    never silently dropped.
    """
    if check_savable(model) != "gpt2":
        return llama.save_model(model, directory, tokenizer)
    sd = _gpt2_state_dict(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sd = {k: v.cpu() for k, v in sd.items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt"})
    del sd
    write_json(directory / CONFIG_FILE, hf_config(model.config, model.dtype))
    if tokenizer is not None:
        tokenizer.save(directory)
    return directory
