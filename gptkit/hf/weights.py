"""Model files: safetensors weights + config.json in the Hugging Face GPT-2 layout, in and out.

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

import json
import math
import os
import re
import struct
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import save_file

from .errors import GptkitError
from .files import atomic_path, write_json  # noqa: F401 (the trainer writes through these too)
from .model import ACTIVATIONS, GPT, GPTConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
BIN_FILE = "pytorch_model.bin"
BIN_INDEX_FILE = "pytorch_model.bin.index.json"
TRAIN_STATE_FILE = "train_state.pt"

# GPT-2 stores these as Conv1D, i.e. (in, out); nn.Linear is (out, in).
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# The transformers classes whose weights are a GPT-2 language model (plus, for DoubleHeads, a
# multiple-choice head that we skip). Classification/QA heads are not language models.
_LM_ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model", "GPT2DoubleHeadsModel")
_SKIPPED_HEADS = ("multiple_choice_head.",)

# ---------------------------------------------------------------------------- config.json

def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def hf_config(config: GPTConfig, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
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
        "add_cross_attention": False,
        "tie_word_embeddings": True,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "dtype": _dtype_name(dtype),  # transformers >= 4.56
        "torch_dtype": _dtype_name(dtype),  # older transformers
        "gptkit": {"bias": config.bias},
    }


def config_from_hf(d: dict[str, Any], source: str = CONFIG_FILE) -> GPTConfig:
    """Read a GPT-2 config.json; options we cannot honour are refused by name."""
    if not isinstance(d, dict):
        raise GptkitError(f"{source}: expected a JSON object")
    archs = d.get("architectures") or []
    model_type = d.get("model_type", "gpt2" if not archs or any(a.startswith("GPT2") for a in archs) else None)
    if model_type != "gpt2":
        what = f"model_type {model_type!r}" if model_type else f"architectures {archs}"
        raise GptkitError(f"{source}: {what} is not the GPT-2 architecture (gptkit loads GPT-2 "
                          "models only: model_type 'gpt2')")
    other = [a for a in archs if a not in _LM_ARCHITECTURES]
    if other:
        raise GptkitError(f"{source}: architecture {other[0]} is not a GPT-2 language model (gptkit loads "
                          f"{', '.join(_LM_ARCHITECTURES)})")
    # reorder_and_upcast_attn only changes the precision of transformers' eager attention (its
    # SDPA path ignores it); our attention is SDPA, so the function computed is the same.
    for flag, ok in (("scale_attn_by_inverse_layer_idx", False), ("scale_attn_weights", True),
                     ("add_cross_attention", False), ("tie_word_embeddings", True)):
        if d.get(flag, ok) is None:
            continue
        if bool(d.get(flag, ok)) != ok:
            raise GptkitError(f"{source}: {flag}={json.dumps(d[flag])} is not supported by gptkit's GPT "
                              f"(it needs {json.dumps(ok)})")
    missing = [k for k in ("vocab_size", "n_embd", "n_layer", "n_head") if k not in d]
    if missing:
        raise GptkitError(f"{source}: missing key(s) {', '.join(missing)}")
    act = d.get("activation_function") or "gelu_new"
    if act not in ACTIVATIONS:
        raise GptkitError(f"{source}: activation_function {act!r} is not supported (gptkit has "
                          f"{', '.join(ACTIVATIONS)})")
    for key in ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions", "n_ctx", "n_inner"):
        v = d.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise GptkitError(f"{source}: {key} must be an integer, got {v!r}")
    gk = d.get("gptkit") if isinstance(d.get("gptkit"), dict) else {}
    try:
        return GPTConfig(
            vocab_size=d["vocab_size"], n_positions=d.get("n_positions") or d.get("n_ctx") or 1024,
            n_embd=d["n_embd"], n_layer=d["n_layer"], n_head=d["n_head"], n_inner=d.get("n_inner") or None,
            activation_function=act, layer_norm_epsilon=float(d.get("layer_norm_epsilon", 1e-5)),
            dropout=float(d.get("resid_pdrop", 0.0) or 0.0), bias=bool(gk.get("bias", True)),
            bos_token_id=_token_id(d.get("bos_token_id")), eos_token_id=_token_id(d.get("eos_token_id")),
        )
    except GptkitError as e:
        raise GptkitError(f"{source}: {e}") from None


def _token_id(v: Any) -> int | None:
    if isinstance(v, list):  # transformers allows a list of eos ids; the first is the main one
        v = v[0] if v else None
    return v if isinstance(v, int) else None


def read_config_dict(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise GptkitError(f"{path}: missing (not a model directory: it needs config.json and "
                          "model.safetensors)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GptkitError(f"{path}: not valid JSON ({e})") from None


# ---------------------------------------------------------------------------- reading tensors

_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
              "U8": torch.uint8, "BOOL": torch.bool}


class SafetensorsReader:
    """A safetensors file read tensor by tensor with plain reads into fresh tensors.

    Unlike a memory map, reads leave no file pages in this process's resident set, so loading
    costs the weights' size once (the page cache is the kernel's, shared and reclaimable).
    Every header entry is checked against the file's size first: a truncated download fails
    here, naming the tensor whose bytes are missing.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise GptkitError(f"{self.path}: truncated safetensors file ({size} bytes, no header)")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100 << 20):
                raise GptkitError(f"{self.path}: not a safetensors file or truncated (header of {n} bytes, "
                                  f"file of {size})")
            try:
                header = json.loads(f.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise GptkitError(f"{self.path}: not a safetensors file (unreadable header)") from None
        if not isinstance(header, dict):
            raise GptkitError(f"{self.path}: not a safetensors file (header is not a JSON object)")
        self.metadata = header.pop("__metadata__", None) or {}
        self.start = 8 + n
        self._buf: torch.Tensor | None = None
        self.entries: dict[str, tuple[torch.dtype, list[int], int, int]] = {}
        for name, e in header.items():
            try:
                dtype, shape, (b, end) = _ST_DTYPES[e["dtype"]], list(e["shape"]), e["data_offsets"]
                numel = math.prod(shape)
                ok = all(isinstance(s, int) and s >= 0 for s in shape) and 0 <= b <= end
            except (KeyError, TypeError, ValueError):
                raise GptkitError(f"{self.path}: tensor {name} has an unreadable header entry "
                                  f"(dtype {e.get('dtype') if isinstance(e, dict) else e!r})") from None
            if not ok or end - b != numel * dtype.itemsize:
                raise GptkitError(f"{self.path}: tensor {name}: its byte range does not match shape "
                                  f"{tuple(shape)} of {e['dtype']}")
            if self.start + end > size:
                raise GptkitError(f"{self.path}: truncated (tensor {name} needs bytes up to "
                                  f"{self.start + end:,}, the file has {size:,}); download it again")
            self.entries[name] = (dtype, shape, b, end)

    def keys(self) -> list[str]:
        return list(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.entries[name][1])

    def read(self, name: str, f: Any = None) -> torch.Tensor:
        """The tensor as stored, in a fresh tensor of its own."""
        dtype, shape, b, end = self.entries[name]
        buf = torch.empty(end - b, dtype=torch.uint8)
        self._readinto(name, f, b, buf)
        return buf.view(dtype).view(shape) if end > b else torch.empty(shape, dtype=dtype)

    def read_as(self, name: str, dtype: torch.dtype, device: torch.device, transpose: bool,
                f: Any = None) -> torch.Tensor:
        """The tensor (transposed if asked) as a contiguous `dtype` tensor on `device`.

        Where it differs from the file's bytes, it is converted a block of rows at a time
        through a small scratch buffer: never a full-size temporary.
        """
        sdtype, shape, b, end = self.entries[name]
        if (not transpose or len(shape) != 2) and dtype == sdtype and device.type == "cpu":
            return self.read(name, f)  # read straight into its final home
        if len(shape) == 0 or math.prod(shape) == 0:
            return self.read(name, f).to(device=device, dtype=dtype)
        transpose = transpose and len(shape) == 2
        out = torch.empty(shape[::-1] if transpose else shape, dtype=dtype, device=device)
        row = math.prod(shape[1:]) * sdtype.itemsize
        rows = max(1, self.CHUNK // row)
        scratch = self._scratch(min(rows, shape[0]) * row)
        for r0 in range(0, shape[0], rows):
            r1 = min(shape[0], r0 + rows)
            chunk = scratch[: (r1 - r0) * row]
            self._readinto(name, f, b + r0 * row, chunk)
            src = chunk.view(sdtype).view(r1 - r0, *shape[1:])
            if transpose:
                out[:, r0:r1].copy_(src.t())
            else:
                out[r0:r1].copy_(src)
        return out

    CHUNK = 8 << 20  # bytes of the file converted at a time

    def _scratch(self, nbytes: int) -> torch.Tensor:
        # One buffer for the whole file: a fresh one per tensor, freed each time, leaves holes
        # between the model's tensors that malloc cannot give back (measured: +15% peak RSS).
        if self._buf is None or self._buf.numel() < nbytes:
            self._buf = None
            self._buf = torch.empty(max(nbytes, self.CHUNK), dtype=torch.uint8)
        return self._buf

    def _readinto(self, name: str, f: Any, offset: int, buf: torch.Tensor) -> None:
        if buf.numel() == 0:
            return
        own = f is None
        f = open(self.path, "rb") if own else f
        try:
            f.seek(self.start + offset)
            got = f.readinto(memoryview(buf.numpy()))
        finally:
            if own:
                f.close()
        if got != buf.numel():
            raise GptkitError(f"{self.path}: truncated while reading tensor {name}")

    def entries_in_order(self) -> list[str]:
        """File order, but lm_head.weight last, so that it can be checked against wte."""
        return sorted(self.entries, key=lambda k: (k.endswith("lm_head.weight"), self.entries[k][2]))


class TensorEntry:
    """One tensor of a checkpoint: name, shape and dtype known, its data read on `load`."""

    def __init__(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, source: str, load: Any):
        self.name, self.shape, self.dtype, self.source, self._load = name, shape, dtype, source, load

    def load(self, dtype: torch.dtype | None = None, device: torch.device | None = None,
             transpose: bool = False) -> torch.Tensor:
        return self._load(dtype or self.dtype, device or torch.device("cpu"), transpose)


def weight_files(directory: Path) -> list[Path]:
    """The weight files of a model directory, safetensors first; a clear error when there are none."""
    for single, index in ((WEIGHTS_FILE, WEIGHTS_INDEX_FILE), (BIN_FILE, BIN_INDEX_FILE)):
        if (directory / single).is_file():
            return [directory / single]
        if (directory / index).is_file():
            d = _read_index(directory / index)
            files = []
            for name in dict.fromkeys(d.values()):
                p = directory / name
                if not p.is_file():
                    raise GptkitError(f"{directory / index}: lists {name}, which is missing")
                files.append(p)
            return files
    others = [p.name for p in directory.glob("*") if p.suffix in (".h5", ".msgpack", ".ckpt", ".gguf")]
    hint = f" ({', '.join(others)} are not supported: convert them to safetensors)" if others else ""
    raise GptkitError(f"{directory}: no weights ({WEIGHTS_FILE} or {BIN_FILE}){hint}")


def _read_index(path: Path) -> dict[str, str]:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(d, dict) or not all(isinstance(v, str) for v in d.values()):
            raise TypeError
        return d
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise GptkitError(f"{path}: not a valid weight index (needs a 'weight_map' of tensor -> file)") from None


def iter_tensors(files: list[Path]) -> Iterator[TensorEntry]:
    """Every tensor of every file, to be loaded (or skipped) one at a time. A pytorch_model.bin is
    read whole (weights_only) and handed out tensor by tensor, each released once loaded."""
    for path in files:
        if path.suffix == ".safetensors":
            try:
                reader = SafetensorsReader(path)
                with open(path, "rb") as f:
                    for name in reader.entries_in_order():
                        yield TensorEntry(name, reader.shape(name), reader.entries[name][0], str(path),
                                          lambda dt, dev, tr, n=name: reader.read_as(n, dt, dev, tr, f))
            except OSError as e:
                raise GptkitError(f"{path}: unreadable ({e.strerror or e})") from None
        else:
            sd = _torch_load_weights(path)
            for name in sorted(sd, key=lambda k: k.endswith("lm_head.weight")):
                t = sd.pop(name)
                yield TensorEntry(name, tuple(t.shape), t.dtype, str(path),
                                  lambda dt, dev, tr, t=t: (t.t() if tr and t.dim() == 2 else t).to(
                                      device=dev, dtype=dt, memory_format=torch.contiguous_format))
                del t


def _torch_load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses pickled code; corrupt zips fail too
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise GptkitError(f"{path}: refused or unreadable: torch.load(weights_only=True) failed "
                          f"({type(e).__name__}: {msg[:200]})") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise GptkitError(f"{path}: not a state dict of tensors")
    return sd


def read_weights(directory: Path) -> tuple[dict[str, torch.Tensor], str]:
    """All tensors of a model directory under their file names (HF layout, Conv1D shapes)."""
    directory = Path(directory)
    files = weight_files(directory)
    source = str(files[0]) if len(files) == 1 else str(directory)
    sd = {}
    for e in iter_tensors(files):
        if e.name in sd:
            raise GptkitError(f"{e.source}: tensor {e.name} appears twice in the checkpoint")
        sd[e.name] = e.load()
    return sd, source


def hf_to_gptkit_name(name: str) -> str | None:
    """Our name for a GPT-2 tensor name (with or without the 'transformer.' prefix); None for
    what is not a parameter: the causal-mask buffers of old checkpoints, other classes' heads."""
    if name.endswith((".attn.bias", ".attn.masked_bias")) or name.startswith(_SKIPPED_HEADS):
        return None
    if not name.startswith(("transformer.", "lm_head.")):
        name = "transformer." + name
    return name


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
    """GPT-2 tensors -> our names and shapes. Consumes `sd` (each tensor is popped as it is
    converted), so the weights are never held twice."""
    out = {}
    for name in list(sd):
        t = sd.pop(name)
        ours = hf_to_gptkit_name(name)
        if ours is None:
            continue
        if ours.endswith(_CONV1D_SUFFIXES) and t.dim() == 2:
            t = t.t().contiguous()
        out[ours] = t
    lm_head = out.pop("lm_head.weight", None)
    wte = out.get("transformer.wte.weight")
    if lm_head is not None and wte is not None and not _same(lm_head, wte):
        raise GptkitError(f"{source}: lm_head.weight differs from transformer.wte.weight; gptkit ties the "
                          "output layer to the token embedding (untied heads are not supported)")
    return out


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.to(b.device, b.dtype), b)


def load_state_into(model: GPT, sd: dict[str, torch.Tensor], source: str, assign: bool = True) -> None:
    """Check names and shapes, then load; assign=True adopts the tensors (no copy, meta models)."""
    expected = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise GptkitError(f"{source}: missing tensor {missing[0]}{more}")
    if unexpected:
        raise GptkitError(f"{source}: unexpected tensor {unexpected[0]} (not a GPT-2 model of this config?)")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise GptkitError(f"{source}: tensor {k} has shape {tuple(v.shape)}, config.json implies "
                              f"{tuple(expected[k].shape)}")
    model.load_state_dict(sd, strict=False, assign=assign)
    model.lm_head.weight = model.transformer.wte.weight  # re-tie after assign


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
    """
    target = resolve_dtype(dtype)
    directory = resolve_model_dir(name_or_path)
    d = read_config_dict(directory)
    config = config_from_hf(d, str(directory / CONFIG_FILE))
    files = weight_files(directory)
    source = str(files[0]) if len(files) == 1 else str(directory)
    if target is None:
        target = torch.float32
    elif target == "auto":
        target = _declared_dtype(d)  # None: the first floating tensor's dtype decides
    device = torch.device(device)

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
    leftover = [n for n, p in model.named_parameters() if p.is_meta]
    if leftover:  # load_state_into checks names, so this would be a bug, not a user error
        raise RuntimeError(f"{source}: parameters left unloaded: {leftover[:3]}")
    model.tokenizer, model.tokenizer_error = _maybe_tokenizer(directory, config.vocab_size)
    model.source = str(directory)
    return model.eval()


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


def load_hf_tokenizer(directory: str | os.PathLike) -> Any:
    """A gptkit Tokenizer from a Hugging Face GPT-2 tokenizer directory, or None if it has no
    tokenizer files. vocab.json + merges.txt are read as they are; a tokenizer.json (the "fast"
    format) is converted: its model.vocab and model.merges are the same data."""
    from .tokenizer import Tokenizer
    directory = Path(directory)
    if (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        return Tokenizer.load(directory)
    if (directory / "tokenizer.json").is_file():
        return tokenizer_from_tokenizer_json(directory / "tokenizer.json")
    return None


def tokenizer_from_tokenizer_json(path: str | os.PathLike) -> Any:
    """Convert a byte-level BPE tokenizer.json (GPT-2's) into a gptkit Tokenizer.

    Anything that would make its ids differ from GPT-2-style byte-level BPE (a normalizer,
    add_prefix_space, a non-BPE model, another pre-tokenizer) is refused by name.
    """
    from .tokenizer import EOT, Tokenizer
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GptkitError(f"{path}: not valid JSON ({e})") from None
    model = d.get("model") or {}
    if model.get("type", "BPE") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise GptkitError(f"{path}: model type {model.get('type')!r} is not byte-level BPE (GPT-2's kind)")
    pre = d.get("pre_tokenizer") or {}
    pres = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    if len(pres) != 1 or pres[0].get("type") != "ByteLevel":
        raise GptkitError(f"{path}: pre_tokenizer {pre.get('type')!r} is not GPT-2's ByteLevel")
    if pres[0].get("add_prefix_space"):
        raise GptkitError(f"{path}: add_prefix_space=true is not supported (GPT-2 adds no prefix space)")
    if pres[0].get("use_regex", True) is False:
        raise GptkitError(f"{path}: ByteLevel use_regex=false is not supported (GPT-2 splits with its regex)")
    if d.get("normalizer"):
        raise GptkitError(f"{path}: normalizer {d['normalizer'].get('type')!r} is not supported (GPT-2 has none)")
    post = d.get("post_processor") or {}
    posts = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    if any(pp.get("type") == "TemplateProcessing" and any("SpecialToken" in piece for piece in pp.get("single", []))
           for pp in posts):
        raise GptkitError(f"{path}: its post_processor adds special tokens to every text; GPT-2 adds none")
    vocab = dict(model["vocab"])
    for added in d.get("added_tokens") or []:
        if added.get("content") == EOT:
            vocab.setdefault(EOT, added.get("id"))
    merges = []
    for m in model.get("merges") or []:
        merges.append(m if isinstance(m, str) else " ".join(m))
    with tempfile.TemporaryDirectory(prefix="gptkit-tok-") as tmp:
        Path(tmp, "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        Path(tmp, "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        config = path.parent / "tokenizer_config.json"  # its gptkit_kind, if gptkit wrote it first
        if config.is_file():
            Path(tmp, config.name).write_bytes(config.read_bytes())
        try:
            return Tokenizer.load(tmp)
        except GptkitError as e:  # name the file the user has, not our temporary copy
            msg = str(e).replace(str(Path(tmp) / "vocab.json"), str(path))
            msg = msg.replace(str(Path(tmp) / "merges.txt"), str(path)).replace(tmp, str(path.parent))
            raise GptkitError(msg) from None


# ---------------------------------------------------------------------------- save

def save_model(model: GPT, directory: str | os.PathLike, tokenizer: Any = None) -> Path:
    """Write config.json + model.safetensors (+ tokenizer files) into `directory`, atomically.

    The result is a Hugging Face GPT-2 directory; what GPT-2 cannot express is refused here,
    never silently dropped.
    """
    if not model.config.bias:
        raise GptkitError("a model with bias=False has no GPT-2 equivalent; it cannot be saved in the "
                          "Hugging Face GPT-2 layout")
    if model.lm_head.weight is not model.transformer.wte.weight:
        raise GptkitError("the model's output layer is not tied to its token embedding; GPT-2's layout "
                          "cannot express that")
    if any(p.is_meta for p in model.parameters()):
        raise GptkitError("the model has parameters on the meta device (not loaded); nothing to save")
    sd = to_hf_state_dict(model)
    _check_exportable(model.config, sd)
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


def _check_exportable(config: GPTConfig, sd: dict[str, torch.Tensor]) -> None:
    """Exactly GPT-2's tensors, floating point, of GPT-2's shapes: anything else (a quantized or
    adapted model, an extra module) is refused by name rather than written half-right."""
    with torch.device("meta"):
        reference = to_hf_state_dict(GPT(config))
    extra = sorted(set(sd) - set(reference))
    missing = sorted(set(reference) - set(sd))
    if extra or missing:
        what = f"tensor {extra[0]} has" if extra else f"tensor {missing[0]} is missing, which has"
        raise GptkitError(f"cannot save in the Hugging Face GPT-2 layout: {what} no GPT-2 equivalent "
                          "(a quantized or modified model?)")
    for k, t in sd.items():
        if not t.is_floating_point() or t.shape != reference[k].shape:
            raise GptkitError(f"cannot save in the Hugging Face GPT-2 layout: tensor {k} is {t.dtype} "
                              f"{tuple(t.shape)}, GPT-2 needs a float tensor of {tuple(reference[k].shape)}")


# ---------------------------------------------------------------------------- the Hub

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
HUB_FILES = ["config.json", "generation_config.json", "vocab.json", "merges.txt", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"]
HUB_SAFETENSORS = [WEIGHTS_FILE, WEIGHTS_INDEX_FILE, "model-*-of-*.safetensors"]
HUB_BIN = [BIN_FILE, BIN_INDEX_FILE, "pytorch_model-*-of-*.bin"]


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
    """A local directory as is; a Hub id ('gpt2', 'openai-community/gpt2') downloaded and cached
    through huggingface_hub (safetensors preferred; pytorch_model.bin only where there is none)."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise GptkitError(f"{path}: not a directory (a model is a directory with config.json and "
                              "model.safetensors)")
        return path
    name = os.fspath(name_or_path)
    looks_like_a_file = name.endswith((".json", ".safetensors", ".bin"))
    if not HUB_ID.match(name) or name.startswith(".") or ".." in name or looks_like_a_file:
        raise GptkitError(f"{path}: no such model directory")
    return _download(name)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now, or as huggingface_hub read it at import."""
    env = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").upper()
    if env in ("1", "ON", "YES", "TRUE"):
        return True
    try:
        from huggingface_hub import constants
        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub import errors as hf_errors
    except ImportError:
        raise GptkitError(f"{repo_id!r} is not a local directory, and huggingface_hub (needed to download "
                          "it from the Hub) is not installed") from None
    offline = hub_offline()
    not_found = tuple(getattr(hf_errors, n) for n in ("RepositoryNotFoundError", "GatedRepoError",
                                                      "RevisionNotFoundError") if hasattr(hf_errors, n))
    incomplete = getattr(hf_errors, "IncompleteSnapshotError", ())  # huggingface_hub >= 1.x
    try:
        local = Path(snapshot_download(repo_id, allow_patterns=HUB_FILES + HUB_SAFETENSORS,
                                       local_files_only=offline))
        if not (local / WEIGHTS_FILE).is_file() and not (local / WEIGHTS_INDEX_FILE).is_file():
            local = Path(snapshot_download(repo_id, allow_patterns=HUB_FILES + HUB_BIN,
                                           local_files_only=offline))
        return local
    except not_found:
        raise GptkitError(f"{repo_id!r}: no such local directory, and no accessible model of that name on "
                          "the Hugging Face Hub (private or gated repos need `hf auth login`)") from None
    except incomplete:
        raise GptkitError(f"{repo_id!r}: its cached download is incomplete and the Hugging Face Hub cannot be "
                          "reached to finish it; pass a local model directory instead") from None
    except Exception as e:  # LocalEntryNotFoundError; connection errors differ between hub versions
        if not _is_connection_problem(e):
            raise
        why = "offline mode is on (HF_HUB_OFFLINE)" if offline else "the Hugging Face Hub cannot be reached"
        raise GptkitError(f"{repo_id!r} is not a local directory, {why}, and it is not in the local Hugging "
                          "Face cache; pass a local model directory (config.json + model.safetensors) "
                          "instead") from None


def _is_connection_problem(e: BaseException) -> bool:
    names = {c.__name__ for c in type(e).__mro__}
    if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "ConnectError",
                "TimeoutException", "Timeout", "ProxyError"}:
        return True
    return "connect" in type(e).__name__.lower() or "timeout" in type(e).__name__.lower()


# ---------------------------------------------------------------------------- training state

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
