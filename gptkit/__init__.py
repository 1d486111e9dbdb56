"""gptkit: build, train and use GPT-style language models end to end."""
from __future__ import annotations

import os
from typing import Any

from .errors import GptkitError
from .model import GPT, PRESETS, GPTConfig, preset_config

__version__ = "0.1.0"
__all__ = ["GPT", "GPTConfig", "GptkitError", "PRESETS", "preset_config", "load_model",
           "load_tokenizer", "TrainConfig", "__version__"]


def load_model(name_or_path: str | os.PathLike, dtype: Any = None, device: str = "cpu",
               quantize: str | None = None) -> GPT:
    """A GPT from a run directory, a Hugging Face GPT-2 directory or a Hub id (e.g. "gpt2").

    dtype: None or "float32" (default), "bfloat16", "float16", a torch dtype, or "auto" (as
    stored). quantize: None, or "int8" (weight-only, per output channel: an inference model; see
    gptkit.quantize). The tokenizer saved beside the weights, if any, is `model.tokenizer`.
    """
    from .hf import load_model as _load
    from .quantize import quantize as _quantize
    return _quantize(_load(name_or_path, dtype=dtype, device=device), quantize)


def load_tokenizer(name_or_path: str | os.PathLike) -> Any:
    """"gpt2", "bytes", or a directory holding vocab.json + merges.txt (a data, run or model dir)."""
    from .tokenizer import load_tokenizer as _load
    return _load(name_or_path)


def __getattr__(name: str) -> Any:  # the trainer imports the data stack: load it on first use
    if name == "TrainConfig":  # train with `from gptkit.train import TrainConfig, train`
        from .train import TrainConfig
        return TrainConfig
    raise AttributeError(name)
