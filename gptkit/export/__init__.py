"""Model files for other runtimes: GGUF (llama.cpp) in gguf.py, its tokenizer keys in vocab.py."""
from __future__ import annotations

from .gguf import FORMATS, QUANTIZE, ExportResult, export_gguf

__all__ = ["FORMATS", "QUANTIZE", "ExportResult", "export_gguf"]
