"""`gptkit serve`: an OpenAI-compatible HTTP server for a model (see gptkit/serve)."""
from __future__ import annotations

import argparse
from typing import Any

from .args import add_dataclass_args, from_args


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serve import ServeConfig, serve
    serve(ServeConfig(**from_args(ServeConfig, args)))  # validates every option before loading the model
    return 0


def register(sub: Any) -> None:
    from ..serve import ServeConfig
    p = sub.add_parser("serve", help="serve a model over HTTP: OpenAI's API (completions, chat, streaming), "
                                     "continuous batching, /metrics, and a playground page at /",
                       description="Serve a model over HTTP with OpenAI's API. Loopback only by default; "
                                   "open http://127.0.0.1:8000/ for the playground.")
    add_dataclass_args(p, ServeConfig)
    p.set_defaults(func=cmd_serve)
