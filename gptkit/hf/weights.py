"""Reading the tensors of a Hugging Face model directory: safetensors (single or sharded, read
tensor by tensor with plain reads) and pytorch_model.bin (torch.load(weights_only=True)).
"""
from __future__ import annotations

import json
import math
import os
import pickle
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..errors import GptkitError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
BIN_FILE = "pytorch_model.bin"
BIN_INDEX_FILE = "pytorch_model.bin.index.json"

def read_config_dict(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise GptkitError(f"{path}: missing (not a model directory: it needs config.json and "
                          "model.safetensors)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
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
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, RecursionError):
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
                                          lambda dt, dev, tr, n=name, r=reader, f=f: r.read_as(n, dt, dev, tr, f))
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
        with warnings.catch_warnings():  # torch's own warnings would add lines to the one error line
            warnings.simplefilter("ignore")
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refuses anything but tensors and plain containers
        raise GptkitError(f"{path}: refused: it holds pickled objects that could run code, which "
                          "torch.load(weights_only=True) will not load; use safetensors weights") from None
    except Exception as e:  # a corrupt or truncated zip
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise GptkitError(f"{path}: unreadable: torch.load(weights_only=True) failed "
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
