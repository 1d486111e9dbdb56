"""The playground page in a real headless browser (Debian's chromium, driven by Playwright through
executable_path: nothing downloads a browser): it loads with no network, streams text in, shows
tokens/s, and its Stop button ends the generation and frees the server's slot. A screenshot is
saved to $GPTKIT_ARTIFACTS (default: test-artifacts/) as playground.png."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytest_plugins = ["serve_helpers"]  # the fixtures (tests/serve/serve_helpers.py)

CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]


def find_chromium() -> str | None:
    env = os.environ.get("GPTKIT_CHROMIUM")
    for path in [env] + CANDIDATES + [shutil.which("chromium") or ""]:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium binary: apt-get install -y chromium (Debian), or set GPTKIT_CHROMIUM")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture()
def slow_server(tiny_dir):
    """Decode steps slowed by 15 ms so that a person (or a test) can watch text arrive and stop it."""
    from serve_helpers import start_slow_server
    s = start_slow_server(tiny_dir, 0.015, max_batch=2)
    yield s
    s.stop()


def artifacts() -> Path:
    d = Path(os.environ.get("GPTKIT_ARTIFACTS", "test-artifacts"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_playground_streams_and_stops(browser, slow_server):
    s = slow_server
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    external = []
    page.on("request", lambda req: external.append(req.url) if not req.url.startswith(s.url) else None)
    page.goto(s.url + "/")
    assert page.title() == "gptkit playground"
    assert page.inner_text("#model") == "tiny"
    page.fill("#prompt", "Once upon a time")
    page.fill("#temperature", "0.7")
    page.fill("#max_tokens", "40")
    page.click("#go")
    # text streams in: the output grows while the stop button is live
    page.wait_for_function("document.querySelector('#output').textContent.length > 'Once upon a time'.length + 3")
    page.wait_for_function("document.querySelector('#go').disabled === false", timeout=30000)
    out = page.inner_text("#output")
    stats = page.inner_text("#stats")
    assert out.startswith("Once upon a time") and len(out) > len("Once upon a time")
    assert "40 tokens" in stats and "tokens/s" in stats and "first token after" in stats, stats
    assert page.inner_text("#error") == ""
    page.screenshot(path=str(artifacts() / "playground.png"), full_page=True)

    # Stop: a long generation is cut off, and the server frees the slot
    page.fill("#max_tokens", "75")
    page.click("#go")
    page.wait_for_function("document.querySelector('#output').textContent.length > 'Once upon a time'.length + 2")
    page.click("#stop")
    page.wait_for_function("document.querySelector('#stats').textContent.includes('stopped')", timeout=10000)
    engine = s.app.state.engine
    deadline = time.monotonic() + 10
    while engine.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.running == 0
    stats = page.inner_text("#stats")
    assert int(stats.split(" token")[0]) < 75, stats
    assert external == []  # offline: the page fetches nothing from anywhere else
    page.close()


@pytest.mark.parametrize("value", ["0", "", "2.5"])
def test_playground_refuses_max_tokens_below_one(browser, server, value):
    """Max tokens 0, empty or fractional: the page says so and sends nothing (it used to show
    "1 tokens" for 0 and generate up to the context for an empty field)."""
    page = browser.new_page()
    sent = []
    page.on("request", lambda req: sent.append(req.url) if "/v1/" in req.url else None)
    page.goto(server.url + "/")
    page.fill("#prompt", "Once")
    page.fill("#max_tokens", value)
    page.click("#go")
    page.wait_for_function("document.querySelector('#error').textContent.length > 0", timeout=10000)
    assert "at least 1" in page.inner_text("#error")
    assert sent == [] and page.inner_text("#stats") == ""
    page.close()


def test_playground_chat_view_two_turns_and_reset(browser, chatml_server):
    """A chat model opens in the chat view: the second turn's request carries the first turn (and
    the system prompt), the replies stream into the transcript, Reset forgets them."""
    s = chatml_server
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    bodies = []
    page.on("request", lambda req: bodies.append(req.post_data_json) if req.url.endswith("/v1/chat/completions")
            else None)
    page.goto(s.url + "/")
    assert page.input_value("#mode") == "chat" and page.is_visible("#chat-log") and not page.is_visible("#output")
    page.fill("#system", "Be brief.")
    page.fill("#temperature", "0")
    page.fill("#max_tokens", "12")

    def send(text: str, turns: int) -> str:
        page.fill("#prompt", text)
        page.click("#go")
        page.wait_for_function(f"document.querySelectorAll('#chat-log .turn').length === {turns}")
        page.wait_for_function("document.querySelector('#go').disabled === false", timeout=30000)
        return page.locator("#chat-log .turn.assistant .content").last.inner_text()

    first = send("Hello", 2)
    assert first and page.inner_text("#error") == "" and page.input_value("#prompt") == ""
    send("And then?", 4)
    assert bodies[1]["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
                                     {"role": "assistant", "content": first},
                                     {"role": "user", "content": "And then?"}]
    assert bodies[1]["stream"] is True
    page.screenshot(path=str(artifacts() / "playground-chat.png"), full_page=True)
    page.click("#reset")
    assert page.locator("#chat-log .turn").count() == 0
    page.fill("#stop_at", "zz")
    send("Again", 2)
    assert [m["role"] for m in bodies[2]["messages"]] == ["system", "user"] and bodies[2]["stop"] == ["zz"]
    page.close()
