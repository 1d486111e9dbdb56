"""`gptkit serve`: an OpenAI-compatible HTTP server with continuous batching, streaming and a
web playground. See app.py (the API), engine.py (the batching scheduler), chat.py (templates).

    from gptkit.serve import ServeConfig, serve
    serve(ServeConfig(model="runs/stdlib"))            # blocks; Ctrl-C stops it
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..device import DTYPES
from ..errors import GptkitError


@dataclass
class ServeConfig:
    """Options of `gptkit serve` (the CLI's flags are these fields, with dashes)."""
    model: str = field(default="", metadata={"help": "model to serve: a run directory, a Hugging Face GPT-2 "
                                                     "directory or a Hub id", "cli": {"required": True}})
    host: str = field(default="127.0.0.1", metadata={
        "help": "address to bind; loopback by default (another address without --api-key prints a warning)"})
    port: int = field(default=8000, metadata={"help": "TCP port (0 = any free port)"})
    dtype: str = field(default="auto", metadata={
        "help": "precision of the weights and computation; auto: the fastest this hardware has natively "
                "(bfloat16 on CUDA and on CPUs with AVX512-BF16 or AMX, else float32)",
        "cli": {"choices": ["auto", *DTYPES]}})
    quantize: str = field(default="none", metadata={"help": "int8: weight-only, per output channel",
                                                    "cli": {"choices": ["none", "int8"]}})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:N"})
    api_key: str | None = field(default=None, metadata={
        "help": "require 'Authorization: Bearer KEY' on /v1/* (also read from GPTKIT_API_KEY)"})
    model_name: str | None = field(default=None, metadata={
        "help": "the model id clients send and /v1/models lists (none: the model directory's name)"})
    chat_template: str | None = field(default=None, metadata={
        "help": "a Jinja chat template file for /v1/chat/completions (none: the model directory's, if any)"})
    max_batch: int = field(default=16, metadata={
        "help": "sequences decoded together (KV-cache slots: memory grows with it)"})
    max_queue: int = field(default=64, metadata={
        "help": "requests that may wait for a slot; more get 429 with Retry-After"})
    prefix_cache_mb: int = field(default=256, metadata={
        "help": "memory for the keys and values of prompt prefixes reused across requests (0: off)"})
    timeout: float = field(default=600.0, metadata={"help": "longest a request may take, waiting included (seconds)"})
    max_body_bytes: int = field(default=1 << 20, metadata={"help": "largest request body accepted (bytes)"})
    log_level: str = field(default="info", metadata={
        "help": "how much uvicorn logs", "cli": {"choices": ["critical", "error", "warning", "info", "debug"]}})

    def validate(self) -> None:
        if not self.model:
            raise GptkitError("--model is required (a run directory, a GPT-2 directory or a Hub id)")
        if not 0 <= self.port <= 65535:
            raise GptkitError(f"--port must be in 0..65535, got {self.port}")
        if self.quantize not in ("none", "int8"):
            raise GptkitError(f"--quantize must be none or int8, got {self.quantize!r}")
        if self.dtype not in ("auto", *DTYPES):
            raise GptkitError(f"--dtype must be float32, bfloat16, float16 or auto, got {self.dtype!r}")
        if not 1 <= self.max_batch <= 1024:
            raise GptkitError(f"--max-batch must be in 1..1024, got {self.max_batch}")
        if not 1 <= self.max_queue <= 100_000:
            raise GptkitError(f"--max-queue must be in 1..100000, got {self.max_queue}")
        if not 0 <= self.prefix_cache_mb <= 1 << 20:
            raise GptkitError(f"--prefix-cache-mb must be in 0..{1 << 20}, got {self.prefix_cache_mb}")
        if not self.timeout > 0:
            raise GptkitError(f"--timeout must be > 0 seconds, got {self.timeout}")
        if not 1024 <= self.max_body_bytes <= 1 << 30:
            raise GptkitError(f"--max-body-bytes must be in 1024..{1 << 30}, got {self.max_body_bytes}")
        if self.log_level not in ("critical", "error", "warning", "info", "debug"):
            raise GptkitError(f"--log-level must be critical, error, warning, info or debug, got {self.log_level!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise GptkitError("--api-key is empty")
        if self.chat_template is not None and Path(self.chat_template).is_dir():
            raise GptkitError(f"--chat-template {self.chat_template}: a directory, not a Jinja template file")
        if self.chat_template is not None and not Path(self.chat_template).is_file():
            raise GptkitError(f"--chat-template {self.chat_template}: no such file")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_app(cfg: ServeConfig, model: Any = None) -> Any:
    """The FastAPI app for cfg (loading the model unless one is given)."""
    import os

    from .app import ServerOptions, create_app
    from .chat import find_chat_template
    cfg.validate()
    if model is None:
        import torch

        from .. import load_model
        from ..device import compute_dtype
        dtype = compute_dtype(cfg.dtype, torch.device(cfg.device))
        model = load_model(cfg.model, dtype=dtype, device=cfg.device,
                           quantize=None if cfg.quantize == "none" else cfg.quantize)
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        detail = getattr(model, "tokenizer_error", None)
        raise GptkitError(f"{cfg.model}: serving needs the model's tokenizer (vocab.json + merges.txt or "
                          f"tokenizer.json beside the weights){f': {detail}' if detail else ''}")
    model_dir = cfg.model if Path(cfg.model).is_dir() else None
    template = find_chat_template(model_dir, cfg.chat_template, tokenizer)
    if template is not None:  # one that cannot show where a reply begins: refused before serving
        from .chat import check_generation_prompt
        try:
            check_generation_prompt(template)
        except GptkitError as e:
            raise GptkitError(f"{template.where}: {e}") from None
    name = cfg.model_name or Path(cfg.model.rstrip("/")).name or "gptkit"
    api_key = cfg.api_key or os.environ.get("GPTKIT_API_KEY") or None
    opts = ServerOptions(model_name=name, api_key=api_key, max_batch=cfg.max_batch, max_queue=cfg.max_queue,
                         timeout=cfg.timeout, max_body_bytes=cfg.max_body_bytes,
                         prefix_cache_bytes=cfg.prefix_cache_mb << 20)
    return create_app(model, tokenizer, opts, template)


def serve(cfg: ServeConfig, model: Any = None) -> None:
    """Run the server until interrupted (Ctrl-C)."""
    import os
    import socket
    import sys

    import uvicorn
    cfg.validate()
    if not is_loopback(cfg.host) and not (cfg.api_key or os.environ.get("GPTKIT_API_KEY")):
        print(f"gptkit: warning: serving on {cfg.host} without --api-key: anyone who can reach this address can "
              "use the model; set --api-key (or GPTKIT_API_KEY), or bind 127.0.0.1", file=sys.stderr)
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host.strip("[]"), cfg.port))
    except OSError as e:  # before the model loads: a taken port fails fast
        sock.close()
        raise GptkitError(f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror or e}") from None
    app = build_app(cfg, model)
    host, port = sock.getsockname()[:2]
    print(f"gptkit: serving {app.state.model_name!r} on http://{cfg.host}:{port}/ (playground) and "
          f"http://{cfg.host}:{port}/v1 (OpenAI API); Ctrl-C stops", file=sys.stderr, flush=True)
    # SIGTERM / Ctrl-C: open streams run on for the app's drain (3 s), then end with an error event
    # and [DONE]; uvicorn waits for them (up to 5 s) before it stops
    server = uvicorn.Server(uvicorn.Config(app, log_level=cfg.log_level, timeout_graceful_shutdown=5))
    run_on_main_thread(app.state.engine, server, sock)


def run_on_main_thread(engine: Any, server: Any, sock: Any) -> None:
    """The engine's loop on this (the main) thread, uvicorn's event loop on another: a decode step
    on a thread that is not the main one measured ~2x slower on a 2-core CPU (OpenMP / oneDNN
    underneath), which was most of one client's overhead through the server. Ctrl-C and SIGTERM
    reach uvicorn as when it owns the main thread (its graceful shutdown and the SSE drain), and
    the engine stops when uvicorn ends, however it ends."""
    import signal
    import threading

    def web() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            engine.stop()

    if threading.current_thread() is not threading.main_thread():  # signals need the main thread
        server.run(sockets=[sock])
        return
    engine.external = True
    previous = {sig: signal.signal(sig, server.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=web, name="gptkit-http", daemon=True)
    try:
        thread.start()
        engine.run()
        thread.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for sig in reversed(getattr(server, "_captured_signals", [])):  # as uvicorn does: exit as signalled
        signal.raise_signal(sig)
