"""Model files: safetensors weights + config.json in a Hugging Face family's layout (GPT-2, Llama,
Mistral, Qwen2, Qwen3: one adapter module each, registered in family.py), in and out.

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

from ..device import emulated_bf16_note, resolve_device
from ..errors import GptkitError
from ..files import atomic_path, write_json
from ..model import GPT, GPTConfig
from ..tokenizer import load_hf_tokenizer
from .family import FAMILIES, Family, family_for, family_of
from .hub import resolve_model_dir
from .state import load_state_into
from .weights import CONFIG_FILE, WEIGHTS_FILE, iter_tensors, read_config_dict, read_weights, weight_files

__all__ = ["FAMILIES", "check_saveable", "family_for", "load_model", "load_state_into", "read_config",
           "read_state_dict", "resolve_dtype", "resolve_model_dir", "save_model"]

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
    tokenizer.json), is given to the model's constructor with the directory: `model.tokenizer` (else None,
    `model.tokenizer_error` saying why where the files were unusable), `model.source`.

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
    family, config = _read_config(directory)
    config = _special_ids_in_vocab(config, str(directory / CONFIG_FILE))
    files = weight_files(directory)
    source = str(files[0]) if len(files) == 1 else str(directory)
    as_stored = target == "auto"
    if target is None:
        target = torch.float32
    elif as_stored:
        target = _declared_dtype(read_config_dict(directory))  # None: the first floating tensor's dtype decides
    device = resolve_device(device)
    raw: dict[str, torch.Tensor] = {}
    for e in iter_tensors(files):
        if not family.keeps(e.name):
            continue  # buffers and other heads, skipped unread
        if not e.dtype.is_floating_point:
            raise GptkitError(f"{e.source}: tensor {e.name} is {e.dtype}, not floating point")
        if e.name in raw:
            raise GptkitError(f"{e.source}: tensor {e.name} appears twice in the checkpoint")
        if target is None:
            target = e.dtype
        raw[e.name] = e.load(target, device)
    sd = family.from_hf(raw, config, source)  # consumes raw: one copy of the weights at a time
    tokenizer, tokenizer_error = _maybe_tokenizer(directory, config.vocab_size)
    with torch.device("meta"):
        model = GPT(config, tokenizer=tokenizer, tokenizer_error=tokenizer_error, source=str(directory))
    load_state_into(model, sd, source)
    del sd
    leftover = [n for n, p in model.named_parameters() if p.is_meta]
    if leftover:  # the loaders check names, so this would be a bug, not a user error
        raise RuntimeError(f"{directory}: parameters left unloaded: {leftover[:3]}")
    if as_stored and target == torch.bfloat16 and (note := emulated_bf16_note(device)) is not None:
        warnings.warn(f"{source}: loaded as stored, in bfloat16; {note}: pass dtype='float32'", stacklevel=3)
    return model.eval()


def _read_config(directory: Path) -> tuple[Family, GPTConfig]:
    d = read_config_dict(directory)
    family = family_of(d, str(directory / CONFIG_FILE))
    return family, family.config_from_hf(d, str(directory / CONFIG_FILE))


def read_state_dict(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """All tensors of a model directory (any family) under gptkit's names, for --resume."""
    family, config = _read_config(Path(directory))
    sd, source = read_weights(Path(directory))
    return family.from_hf({k: v for k, v in sd.items() if family.keeps(k)}, config, source), source


def read_config(directory: str | os.PathLike) -> GPTConfig:
    """The GPTConfig of a model directory (any family), without reading its weights."""
    return _read_config(Path(directory))[1]


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

def check_saveable(model: GPT | GPTConfig) -> Family:
    """The family save_model will write the model in (family_for decides), or a GptkitError saying
    why it cannot: the trainer calls it with its planned config before reading any data, and with the
    built model before its first step, so that no run trains for hours and then fails to save. A
    model's tensors must be exactly the family's (a quantized or modified model is refused by name)."""
    if isinstance(model, GPTConfig):
        return family_for(model)
    family = family_for(model.config)
    if any(p.is_meta for p in model.parameters()):
        raise GptkitError("the model has parameters on the meta device (not loaded); nothing to save")
    sd = family.to_hf(model.state_dict(), model.config)
    with torch.device("meta"):
        reference = family.to_hf(GPT(model.config).state_dict(), model.config)
    extra, missing = sorted(set(sd) - set(reference)), sorted(set(reference) - set(sd))
    if extra or missing:
        what = f"tensor {extra[0]} has" if extra else f"tensor {missing[0]} is missing, which has"
        raise GptkitError(f"cannot save in the Hugging Face {family.title} layout: {what} no {family.title} "
                          "equivalent (a quantized or modified model?)")
    for k, t in sd.items():
        if not t.is_floating_point() or t.shape != reference[k].shape:
            raise GptkitError(f"cannot save in the Hugging Face {family.title} layout: tensor {k} is {t.dtype} "
                              f"{tuple(t.shape)}, {family.title} needs a float tensor of {tuple(reference[k].shape)}")
    return family


def save_model(model: GPT, directory: str | os.PathLike, tokenizer: Any = None) -> Path:
    """Write config.json + model.safetensors (+ tokenizer files) into `directory`, atomically.

    The result is a Hugging Face directory of the family that expresses the model exactly (GPT-2,
    Llama, Qwen2, Qwen3, Mistral: family_for decides); what none can express is refused here (and
    by the trainer before its first step), never silently dropped.
    """
    family = check_saveable(model)
    sd = {k: v.cpu() for k, v in family.to_hf(model.state_dict(), model.config).items()}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt"})
    del sd
    write_json(directory / CONFIG_FILE, family.config_to_hf(model.config, model.dtype))
    if tokenizer is not None:
        tokenizer.save(directory)
        _write_generation_config(directory, tokenizer)
    return directory


def _write_generation_config(directory: Path, tokenizer: Any) -> None:
    """A chat model's generation_config.json: transformers' generate (and its pipelines) then stop a
    reply at the end-of-turn token as well as at end-of-text."""
    from ..chat.template import end_of_turn
    eos = end_of_turn(tokenizer)
    if len(eos) > 1:
        write_json(directory / "generation_config.json", {"bos_token_id": tokenizer.eot_id, "eos_token_id": eos,
                                                          "pad_token_id": tokenizer.eot_id})


def hf_state(model: GPT) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """What save_model writes, without writing it: config.json as a dict and the state dict under
    transformers' names and shapes (the GGUF exporter converts from these, as llama.cpp's
    converter does from a transformers directory)."""
    family = check_saveable(model)
    return family.config_to_hf(model.config, model.dtype), family.to_hf(model.state_dict(), model.config)
