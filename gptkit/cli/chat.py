"""`gptkit chat --model M`: talk to a chat model in the terminal (see gptkit/chat/terminal.py)."""
from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GptkitError
from .args import DTYPE_CHOICES, DTYPE_HELP, add_dataclass_args, from_args
from .args import option as _opt

# one streamed reply: the beam-search and many-sequence options of generate do not apply
SKIPPED = ("num_beams", "length_penalty", "early_stopping", "num_return_sequences", "pad_token_id", "context",
           "eos_token_id")


@dataclass
class ChatCommand:
    model: str = _opt(None, "a chat model: a run directory or Hugging Face directory with a chat template "
                      "(gptkit finetune --task chat makes one)", required=True)
    system: str | None = _opt(None, "the system prompt to start with (/system changes it)")
    chat_template: str | None = _opt(None, "a Jinja chat template file instead of the model's")
    dtype: str = _opt("auto", DTYPE_HELP, choices=DTYPE_CHOICES)
    quantize: str = _opt("none", "int8: weight-only, per output channel (fastest on CPU)", choices=["none", "int8"])
    device: str = _opt("auto", "cpu, cuda, cuda:1, ... (auto: cuda if available)")


def cmd_chat(args: argparse.Namespace) -> int:
    from .. import load_model
    from ..chat.template import chat_template
    from ..chat.terminal import Chat, run
    from ..device import compute_dtype, resolve_device
    from ..generate.config import GenerationConfig, make_config
    kw = from_args(GenerationConfig, args)
    if kw.get("do_sample") is None:
        kw["do_sample"] = True
    make_config(**kw)  # bad options: one line, before the model loads
    override = None
    if args.chat_template:
        path = Path(args.chat_template)
        if path.is_dir():
            raise GptkitError(f"--chat-template {path}: a directory, not a Jinja template file")
        if not path.is_file():
            raise GptkitError(f"--chat-template {path}: no such file")
        try:
            override = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise GptkitError(f"--chat-template {path}: cannot read the chat template ({e})") from None
    device = resolve_device(args.device)
    quantize = None if args.quantize == "none" else args.quantize
    with warnings.catch_warnings():  # an unusable tokenizer is the error below, said once
        warnings.filterwarnings("ignore", message="tokenizer not loaded")
        model = load_model(args.model, dtype=compute_dtype(args.dtype, device), device=str(device), quantize=quantize)
    tok = model.tokenizer
    if tok is None:
        raise GptkitError(model.tokenizer_error or f"{args.model}: no tokenizer files beside the model")
    if override is None and not tok.chat_template and Path(args.model).is_dir():
        from ..serve.chat import find_chat_template  # a chat_template.jinja beside the weights
        found = find_chat_template(args.model)
        override = found.source if found else None
    template = chat_template(tok, override)
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:  # pragma: no cover
        pass
    return run(Chat(model, tok, template, kw, args.system))


def register(sub: Any) -> None:
    from ..generate.config import GenerationConfig
    p = sub.add_parser("chat", help="talk to a chat model in the terminal (streaming; /reset, /system, /save)")
    add_dataclass_args(p, ChatCommand)
    add_dataclass_args(p, GenerationConfig, skip=SKIPPED)
    p.set_defaults(func=cmd_chat)
