"""Helpers of the serve tests: a tiny GPT saved by transformers with gptkit's bytes tokenizer
(every UTF-8 byte a token, so characters are split across tokens), and servers for it on free
loopback ports, run in a thread of the test process; and the fixtures of the serve tests, which
each test module imports (not a conftest.py: the suite's modules import tests/conftest.py by
the name `conftest`, which a second conftest would shadow)."""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

import gptkit
from gptkit.tokenizer import bytes_tokenizer

CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}Assistant: {{ m['content'] }}{{ eos_token }}\n"
    "{% elif m['role'] == 'system' %}{{ m['content'] }}\n"
    "{% else %}{{ raise_exception('unknown role ' + m['role']) }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def save_tiny(directory: Path, chat: bool = False, n_positions: int = 96) -> Path:
    """A random 2-layer GPT-2 saved by transformers, with gptkit's bytes tokenizer beside it."""
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=257, n_positions=n_positions, n_embd=32, n_layer=2, n_head=2,
                                       bos_token_id=256, eos_token_id=256))
    # sharpen the output layer a little so that text is not uniform noise (greedy ties are rarer)
    with torch.no_grad():
        model.transformer.wte.weight.mul_(8)
    model.save_pretrained(directory)
    bytes_tokenizer().save(directory)
    if chat:
        cfg_path = directory / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["chat_template"] = CHAT_TEMPLATE
        cfg_path.write_text(json.dumps(cfg))
    return directory


class ServerThread:
    def __init__(self, app) -> None:
        import uvicorn
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def start_server(model_dir: Path, **options) -> ServerThread:
    from gptkit.serve import ServeConfig, build_app
    cfg = ServeConfig(model=str(model_dir), dtype="float32", log_level="warning", **options)
    return ServerThread(build_app(cfg))


def start_slow_server(model_dir: Path, step_delay: float, **options) -> ServerThread:
    """A server whose decode steps each take step_delay seconds longer: easy to fill, and slow
    enough to watch text arrive and to stop it."""
    s = start_server(model_dir, model_name="tiny", **options)
    engine = s.app.state.engine
    step = engine._step

    def slow_step():
        time.sleep(step_delay)
        step()
    engine._step = slow_step
    return s


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="session")
def chat_dir(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("serve") / "tiny-chat", chat=True)


def save_chatml(directory: Path, n_positions: int = 256) -> Path:
    """A tiny gptkit chat model: bytes tokenizer + ChatML's tokens and template, embeddings grown."""
    from gptkit.chat.template import make_chat_ready
    from gptkit.hf import save_model
    from gptkit.model import GPT, GPTConfig
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=257, n_positions=n_positions, n_embd=32, n_layer=2, n_head=2,
                          bos_token_id=256, eos_token_id=256))
    with torch.no_grad():
        model.transformer.wte.weight.mul_(8)
    tok = make_chat_ready(model, bytes_tokenizer())
    return save_model(model, directory, tok)


@pytest.fixture(scope="session")
def chatml_dir(tmp_path_factory) -> Path:
    return save_chatml(tmp_path_factory.mktemp("serve") / "tiny-chatml")


@pytest.fixture(scope="module")
def chatml_server(chatml_dir):
    s = start_server(chatml_dir, model_name="chatml", max_batch=4)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def reference(tiny_dir):
    """A second copy of the served weights, for computing expected answers in the test thread."""
    return gptkit.load_model(tiny_dir)


@pytest.fixture(scope="module")
def server(tiny_dir):
    s = start_server(tiny_dir, model_name="tiny", max_batch=8, max_queue=32)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def chat_server(chat_dir):
    s = start_server(chat_dir, model_name="tiny-chat", max_batch=4)
    yield s
    s.stop()


@pytest.fixture()
def client(server):
    import openai
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)
