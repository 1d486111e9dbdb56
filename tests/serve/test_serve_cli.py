"""`gptkit serve` from the command line: it starts, says where, serves, stops on Ctrl-C; bad
options are one line and exit status 2, before any model loads."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from gptkit.serve import is_loopback

pytest_plugins = ["serve_helpers"]  # the fixtures (tests/serve/serve_helpers.py)


def gptkit(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gptkit", *args], capture_output=True, text=True, timeout=120, **kw)


def test_serve_starts_answers_and_stops(chat_dir):
    proc = subprocess.Popen([sys.executable, "-m", "gptkit", "serve", "--model", str(chat_dir), "--port", "0",
                             "--log-level", "warning", "--dtype", "float32"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "GPTKIT_API_KEY": ""})
    try:
        line = proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/ \(playground\)", line)
        assert m, line
        url = f"http://127.0.0.1:{m.group(1)}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        models = httpx.get(url + "/v1/models").json()
        assert models["data"][0]["id"] == chat_dir.name and models["data"][0]["chat"] is True
        r = httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                            "max_tokens": 3}, timeout=60)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
        assert "gptkit playground" in httpx.get(url + "/").text
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) in (0, 130)  # 130: "gptkit: interrupted", as every command
        assert "Traceback" not in proc.stderr.read()


@pytest.mark.parametrize("args, message", [
    ([], "--model"),
    (["--model", "x", "--port", "70000"], "--port must be in 0..65535"),
    (["--model", "x", "--max-batch", "0"], "--max-batch must be in 1..1024"),
    (["--model", "x", "--quantize", "int4"], "--quantize"),
    (["--model", "x", "--timeout", "-1"], "--timeout must be > 0"),
    (["--model", "x", "--chat-template", "/nonexistent.jinja"], "no such file"),
    (["--model", "/nonexistent/model"], "/nonexistent/model"),
])
def test_bad_options_are_one_line(args, message):
    r = gptkit("serve", *args)
    assert r.returncode == 2
    assert "error: " in r.stderr and message in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1].startswith(("gptkit: error: ", "gptkit serve: error: "))  # argparse's: usage first


def test_non_loopback_without_key_warns():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.9")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.com")
    # 192.0.2.1 is TEST-NET-1 (never assigned to this machine): the warning comes first, then the bind fails
    r = gptkit("serve", "--model", "x", "--host", "192.0.2.1", "--port", "8000", env={**os.environ, "GPTKIT_API_KEY": ""})
    assert r.returncode == 2
    assert "gptkit: warning: serving on 192.0.2.1 without --api-key" in r.stderr
    assert "gptkit: error: cannot listen on 192.0.2.1:8000" in r.stderr


SLOW_SERVE = """
import sys, threading, time
from gptkit.serve import ServeConfig, serve
from gptkit.serve.engine import Engine
step = Engine._step
def slow(self):  # 0.1 s a decode step: a 90-token answer takes 9 s, longer than the drain
    if threading.current_thread() is not threading.main_thread():  # a step off it ran ~2x slower
        print("decode step off the main thread", file=sys.stderr, flush=True)
    time.sleep(0.1)
    step(self)
Engine._step = slow
serve(ServeConfig(model=sys.argv[1], port=0, dtype="float32", log_level="warning"))
"""


def test_sigterm_ends_open_streams_so_the_openai_client_sees_it(tiny_dir):
    """SIGTERM: a stream that ends within the drain finishes normally; one still running after it
    ends with an error event and [DONE], which the real openai client raises (not a silent cut)."""
    import threading

    import openai
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SERVE, str(tiny_dir)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "GPTKIT_API_KEY": ""})
    try:
        m = re.search(r"http://127\.0\.0\.1:(\d+)/ \(playground\)", proc.stderr.readline())
        assert m
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{m.group(1)}/v1", api_key="unused", max_retries=0,
                               timeout=60)
        results: dict[str, object] = {}
        started = threading.Barrier(3)

        def consume(name: str, max_tokens: int) -> None:
            text, reason = "", None
            try:
                s = client.completions.create(model=tiny_dir.name, prompt="a", max_tokens=max_tokens, stream=True,
                                              temperature=0)
                for i, chunk in enumerate(s):
                    if i == 0:
                        started.wait(timeout=60)
                    text += chunk.choices[0].text if chunk.choices else ""
                    reason = (chunk.choices[0].finish_reason if chunk.choices else None) or reason
                results[name] = (text, reason)
            except openai.APIError as e:
                results[name] = e
        threads = [threading.Thread(target=consume, args=("short", 8)), threading.Thread(target=consume, args=("long", 90))]
        for t in threads:
            t.start()
        started.wait(timeout=60)  # both streams have sent their first chunk
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=30)
        assert isinstance(results["short"], tuple) and results["short"][1] == "length", results["short"]
        cut = results["long"]
        assert isinstance(cut, openai.APIError) and "shutting down" in str(cut), cut
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
        err = proc.stderr.read()
    assert "Traceback" not in err, err
    assert "decode step off the main thread" not in err
