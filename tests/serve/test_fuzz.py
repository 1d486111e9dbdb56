"""Hundreds of malformed and hostile requests (bad JSON, wrong types, absurd numbers, invalid
UTF-8, oversized bodies, raw garbage, connections dropped mid-body and mid-stream) while a
well-behaved client keeps asking: every bad request gets a 4xx with an OpenAI error object, never
a 5xx, and the good client's answers stay right."""
from __future__ import annotations

import concurrent.futures as cf
import json
import random
import socket
import threading
import time

import httpx

from gptkit.generate import generate_text

pytest_plugins = ["serve_helpers"]  # the fixtures (tests/serve/serve_helpers.py)

GOOD = ["Hello", "def f(x):", "naïve café", "12345"]

VALID = {"model": "tiny", "prompt": "hi", "max_tokens": 4}
BAD_VALUES = {
    "prompt": [123, True, None, {}, [1.5], [[]], [], [[1], "a"], [-1], [2**40], "x" * 2000, ["a"] * 1000,
               [[1] * 200], {"text": "a"}],
    "max_tokens": [-1, "10", 1e10, 2**70, True, 1.5, 100000, [], None],
    "temperature": [-1, 3, "hot", 1e308, -0.0001, [], {}],
    "top_p": [0, 1.5, -3, "1", True],
    "n": [0, 1000, -2, 2.5, "2", 17],
    "stop": ["", [""], [1], ["a"] * 10, "s" * 1000, {}, [None]],
    "seed": [2**80, -(2**70), 1.5, "7", True],
    "logprobs": [100, -1, "2", 6, True],
    "logit_bias": [{"abc": 1}, {"99999": 1}, {"1": 1000}, {"1": "x"}, [1], "x", {"-1": 1},
                   {str(i): 1 for i in range(400)}],
    "echo": ["yes", 1, None],
    "stream": ["true", 1, {}],
    "top_k": [-5, 2**40, "3", 1.5],
    "min_p": [-0.1, 2, "0"],
    "repetition_penalty": [0, -1, 1e9, "1"],
    "presence_penalty": [5, -5, "0"],
    "best_of": [3, 0],
    "suffix": ["tail"],
    "model": ["gpt-4", 5, "", "\ud800"],
    "stream_options": [{"include_usage": "yes"}, {"foo": 1}, 3],
    "frobnicate": [1],
    "user": [5, "u" * 1000],
}
BAD_CHAT = [
    {"messages": []}, {"messages": "hi"}, {"messages": [{"role": "wizard", "content": "x"}]},
    {"messages": [{"role": "user"}], "max_tokens": 0}, {"messages": [{"content": "x"}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
    {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
    {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}},
    {"messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 50},
    {"messages": [{"role": "user", "content": "x"}]},  # no chat template on this model: 400
]
RAW_BODIES = [
    b"", b"{", b"}", b"[]", b"null", b"42", b'"prompt"', b"{'prompt': 'x'}", b'{"prompt": "x",}',
    b'{"prompt": NaN}', b'{"prompt": "x", "temperature": Infinity}', b'{"prompt": "x", "max_tokens": -Infinity}',
    b'{"prompt": "\xff\xfe"}', b"\xef\xbb\xbf{}", b'{"prompt": "x"} trailing', b"[" * 100000 + b"]" * 100000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000, b'{"prompt": "x", "max_tokens": 1' + b"0" * 5000 + b"}",
    b'{"prompt": "\\ud800\\udc00\\ud800", "max_tokens": 2}', b"\x00" * 100, b'{"prompt": "x"}' * 1000,
    json.dumps({"prompt": "y" * (2 << 20)}).encode(),  # over the 1 MiB body limit
    b'{"prompt": "x", "prompt": 5}',
]


def hostile_requests(rng: random.Random) -> list[tuple[str, str, dict, bytes]]:
    reqs = []
    for field, values in BAD_VALUES.items():
        for v in values:
            body = {**VALID, field: v}
            reqs.append(("POST", "/v1/completions", {}, json.dumps(body).encode("utf-8", "surrogatepass")))
    for b in BAD_CHAT:
        reqs.append(("POST", "/v1/chat/completions", {}, json.dumps({"model": "tiny", **b}).encode()))
    for raw in RAW_BODIES:
        reqs.append(("POST", rng.choice(["/v1/completions", "/v1/chat/completions"]), {}, raw))
    reqs += [
        ("GET", "/v1/completions", {}, b""), ("PUT", "/v1/completions", {}, b"{}"),
        ("DELETE", "/v1/models", {}, b""), ("GET", "/v1/nothing", {}, b""), ("GET", "/../../etc/passwd", {}, b""),
        ("POST", "/v1/completions", {"content-length": "abc"}, b"{}"),
        ("POST", "/v1/completions", {"content-type": "text/plain"}, json.dumps(VALID).encode()),
        ("POST", "/v1/completions", {"authorization": "Bearer x" * 100}, json.dumps(VALID).encode()),
        ("GET", "/metrics?x=" + "%00" * 50, {}, b""),
    ]
    # random mutations of a valid body: drop/duplicate/flip characters
    base = json.dumps({**VALID, "temperature": 0.5, "stop": ["\n"], "n": 2}).encode()
    for _ in range(200):
        b = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(b))
            op = rng.random()
            if op < 0.4:
                b[i] = rng.randrange(256)
            elif op < 0.7:
                del b[i]
            else:
                b.insert(i, rng.randrange(256))
        reqs.append(("POST", "/v1/completions", {}, bytes(b)))
    rng.shuffle(reqs)
    return reqs


def raw_abuse(port: int, rng: random.Random) -> None:
    """Connections that misbehave below HTTP: garbage, a body cut short, a stream dropped."""
    kinds = ["garbage", "short-body", "drop-stream", "slow-close", "half-headers"]
    for i in range(40):
        kind = kinds[i % len(kinds)]
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
        try:
            if kind == "garbage":
                s.sendall(bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))) + b"\r\n\r\n")
            elif kind == "short-body":
                s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 1000\r\n\r\n{\"prompt\": \"ab")
            elif kind == "drop-stream":
                body = json.dumps({"model": "tiny", "prompt": "stream me", "max_tokens": 80, "stream": True}).encode()
                s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                s.recv(rng.randint(1, 400))  # read a little of the stream, then vanish
            elif kind == "slow-close":
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            else:
                s.sendall(b"POST /v1/completions HTTP/1.1\r\nContent-Le")
            try:
                s.recv(100)
            except OSError:
                pass
        except OSError:
            pass
        finally:
            s.close()


def test_fuzz_while_serving(server, reference):
    rng = random.Random(1234)
    tok = reference.tokenizer
    expect = {p: generate_text(reference, tok, p, max_new_tokens=8)[0]["text"] for p in GOOD}
    stop = threading.Event()
    good_results: list[bool] = []
    good_errors: list[str] = []

    def good_client() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            i = 0
            while not stop.is_set() or i < 8:
                p = GOOD[i % len(GOOD)]
                stream = i % 2 == 1
                body = {"model": "tiny", "prompt": p, "max_tokens": 8, "temperature": 0, "stream": stream}
                try:
                    if stream:
                        with http.stream("POST", "/v1/completions", json=body) as r:
                            lines = [ln[5:].strip() for ln in r.iter_lines() if ln.startswith("data:")]
                        text = "".join(json.loads(x)["choices"][0]["text"] for x in lines[:-1])
                        ok = r.status_code == 200 and lines[-1] == "[DONE]" and text == expect[p]
                    else:
                        r = http.post("/v1/completions", json=body)
                        ok = r.status_code == 200 and r.json()["choices"][0]["text"] == expect[p]
                    if not ok:
                        good_errors.append(f"{p!r} stream={stream}: {r.status_code}")
                    good_results.append(ok)
                except Exception as e:
                    good_errors.append(f"{p!r}: {type(e).__name__}: {e}")
                    good_results.append(False)
                i += 1

    statuses: list[tuple[int, str]] = []
    malformed: list[str] = []

    def send(req: tuple[str, str, dict, bytes]) -> None:
        method, path, headers, body = req
        with httpx.Client(base_url=server.url, timeout=20) as http:
            try:
                r = http.request(method, path, content=body, headers={"content-type": "application/json", **headers})
            except httpx.HTTPError as e:  # the server may close a connection it cannot parse
                statuses.append((0, f"{type(e).__name__} for {path} {body[:60]!r}"))
                return
            detail = f"{method} {path} {body[:80]!r} -> {r.status_code} {r.text[:200]}"
            statuses.append((r.status_code, detail))
            if 400 <= r.status_code < 500 and r.text != "Invalid HTTP request received.":  # (uvicorn's own)
                try:
                    err = r.json()["error"]
                    assert isinstance(err["message"], str) and err["message"] and "type" in err
                except Exception:
                    malformed.append(detail)

    reqs = hostile_requests(rng)
    assert len(reqs) >= 300
    good = threading.Thread(target=good_client, daemon=True)
    good.start()
    abuse = threading.Thread(target=raw_abuse, args=(server.port, random.Random(5)), daemon=True)
    abuse.start()
    t0 = time.monotonic()
    try:
        with cf.ThreadPoolExecutor(8) as ex:
            list(ex.map(send, reqs))
        abuse.join(timeout=60)
    finally:
        stop.set()
        good.join(timeout=60)
    assert time.monotonic() - t0 < 120
    assert not malformed, malformed[:5]
    fives = [d for s, d in statuses if s >= 500]
    assert not fives, fives[:5]
    codes = {s for s, _ in statuses}
    assert codes <= {200, 400, 404, 405, 413, 0}, codes
    assert sum(1 for s, _ in statuses if 400 <= s < 500) >= 250
    assert good_results and all(good_results), good_errors[:5]
    # still healthy, and the dropped streams freed their slots
    with httpx.Client(base_url=server.url, timeout=30) as http:
        deadline = time.monotonic() + 10
        while http.get("/health").json()["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        h = http.get("/health").json()
        assert h["status"] == "ok" and h["running"] == 0 and h["queued"] == 0
