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
