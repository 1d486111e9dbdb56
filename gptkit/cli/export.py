"""`gptkit export`: a model as a file for another runtime (GGUF, for llama.cpp and what is built on it)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ..export import FORMATS, QUANTIZE
from .args import add_dataclass_args
from .args import option as _opt


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import export_gguf
    r = export_gguf(args.model, args.out, quantize=args.quantize, overwrite=args.overwrite)
    print(f"wrote {r.path}: GGUF {r.arch}, {r.quantize}, {r.tensors} tensors, {r.bytes / 1e6:,.1f} MB, "
          f"{r.tokenizer} tokenizer of {r.vocab_size:,} tokens")
    return 0


@dataclass
class ExportCommand:
    model: str = _opt(None, "a run directory, a Hugging Face directory or a Hub id (GPT-2, Llama, Mistral or Qwen3 "
                      "layout, with its tokenizer)", positional=True)
    out: str = _opt(None, "the file to write (e.g. model.gguf)", positional=True, metavar="OUT")
    format: str = _opt("gguf", "the file format: gguf (llama.cpp)", choices=FORMATS)
    quantize: str = _opt("f16", "the type of the weight matrices: f32, f16, or q8_0 (8-bit blocks of 32); norms and "
                         "biases stay f32", choices=QUANTIZE)
    overwrite: bool = _opt(False, "replace OUT if it exists")


def register(sub: Any) -> None:
    ex = sub.add_parser("export", help="write a model as a GGUF file for llama.cpp, tokenizer inside")
    add_dataclass_args(ex, ExportCommand)
    ex.set_defaults(func=cmd_export)
