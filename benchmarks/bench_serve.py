"""gptkit serve under load, on loopback only: 1, 4 and 16 concurrent streaming clients against
a GPT-2-124M-shaped model (random weights, GPT-2's tokenizer) and a `make run`-shaped model (the
mini preset, a 4096-token BPE), then a plain loop over model.generate, one request at a time, on
the same model, prompts and lengths; and the server's RSS over 1,000 requests.

    python benchmarks/bench_serve.py                 # both models, ~6 minutes on 2 cores
    python benchmarks/bench_serve.py --models mini --seconds 10
    python benchmarks/bench_serve.py --model runs/stdlib   # also a model directory of yours

Per level: aggregate generated tokens/s (all clients, wall clock), time to first token (request
sent -> first streamed token) p50/p99, per-token latency (a request's mean gap between tokens)
p50/p99, failed requests. Every client sends requests back to back for --seconds (bounded: at
most --max-requests each level). Nothing leaves the machine: the server binds 127.0.0.1.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT_SEEDS = [
    "def parse_arguments(argv):\n    parser = argparse.ArgumentParser(description=",
    "The history of the printing press begins in the fifteenth century, when",
    "class LRUCache:\n    \"\"\"A least-recently-used cache with a fixed capacity.\"\"\"\n\n    def __init__(self,",
    "In mathematics, a prime number is a natural number greater than one that",
    "import json\nimport os\n\n\ndef load_config(path):\n    with open(path) as f:",
    "Once upon a time, in a village at the edge of a great forest, there lived",
]


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# ---------------------------------------------------------------------------- models

def build_models(which: list[str], workdir: Path) -> dict[str, Path]:
    from gptkit.hf import save_model
    from gptkit.model import GPT, preset_config
    out = {}
    if "124m" in which:
        from gptkit.tokenizer import gpt2_tokenizer
        torch.manual_seed(0)
        model = GPT(preset_config("gpt2"))
        out["124m"] = save_model(model, workdir / "gpt2-124m-random", tokenizer=gpt2_tokenizer())
        del model
    if "mini" in which:
        import inspect

        from gptkit.tokenizer import train_bpe
        texts = [inspect.getsource(m) for m in (argparse, json, random, statistics, subprocess, tempfile)]
        tok = train_bpe(texts, vocab_size=4096)
        torch.manual_seed(0)
        model = GPT(preset_config("mini", vocab_size=tok.vocab_size))
        out["mini"] = save_model(model, workdir / "mini-random", tokenizer=tok)
        del model
    return out


# ---------------------------------------------------------------------------- server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, port: int, max_batch: int, dtype: str | None, **options) -> subprocess.Popen:
    """`gptkit serve` in a child process (ServeConfig's `options` on top), once /health answers."""
    extra = "".join(f", {k}={v!r}" for k, v in options.items())
    code = ("import sys; from gptkit.serve import ServeConfig, serve; "
            f"serve(ServeConfig(model={str(model_dir)!r}, port={port}, max_batch={max_batch}, max_queue=1024, "
            f"dtype={dtype!r}, model_name='bench', log_level='warning'{extra}))")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    import httpx
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start within 300 s")


def rss_mb(pid: int) -> float:
    import psutil
    return psutil.Process(pid).memory_info().rss / 2**20


# ---------------------------------------------------------------------------- clients

async def one_request(client, url: str, prompt: str, max_tokens: int, seed: int) -> dict:
    body = {"model": "bench", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "seed": seed,
            "stream": True, "stream_options": {"include_usage": True}, "logit_bias": {str(EOS[0]): -100}}
    t0 = time.perf_counter()
    first = last = None
    tokens = 0
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            return {"ok": False, "why": f"HTTP {r.status_code}: {r.text[:200]}"}
        done = False
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            ev = json.loads(data)
            if "error" in ev:
                return {"ok": False, "why": ev["error"]["message"]}
            if ev.get("usage"):
                tokens = ev["usage"]["completion_tokens"]
            elif ev["choices"] and ev["choices"][0]["finish_reason"] is None:
                now = time.perf_counter()
                first = first or now
                last = now
    if not done or tokens != max_tokens or first is None:
        return {"ok": False, "why": f"incomplete: done={done} tokens={tokens}"}
    return {"ok": True, "tokens": tokens, "ttft": first - t0,
            "tpot": (last - first) / (tokens - 1) if tokens > 1 else None, "end": time.perf_counter()}


EOS = [0]


async def run_level(url: str, clients: int, seconds: float, max_requests: int, max_tokens: int,
                    prompts: list[str]) -> dict:
    import httpx
    results: list[dict] = []
    count = 0
    stop_at = time.perf_counter() + seconds

    async def worker(w: int, client) -> None:
        nonlocal count
        while time.perf_counter() < stop_at and count < max_requests:
            count += 1
            i = count
            try:
                results.append(await one_request(client, url, prompts[i % len(prompts)], max_tokens, i))
            except Exception as e:
                results.append({"ok": False, "why": f"{type(e).__name__}: {e}"})

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w, client) for w in range(clients)))
        wall = time.perf_counter() - t0
    ok = [r for r in results if r["ok"]]
    tokens = sum(r["tokens"] for r in ok)
    return {
        "clients": clients, "requests": len(results), "failed": len(results) - len(ok), "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "ttft_p50_ms": 1000 * percentile([r["ttft"] for r in ok], 0.5),
        "ttft_p99_ms": 1000 * percentile([r["ttft"] for r in ok], 0.99),
        "tpot_p50_ms": 1000 * percentile([r["tpot"] for r in ok if r["tpot"] is not None], 0.5),
        "tpot_p99_ms": 1000 * percentile([r["tpot"] for r in ok if r["tpot"] is not None], 0.99),
        "why": sorted({r["why"] for r in results if not r["ok"]})[:3],
    }


def plain_loop(model_dir: Path, dtype: str | None, seconds: float, max_tokens: int, prompts: list[str]) -> dict:
    """The baseline: model.generate, one request at a time, same prompts, lengths and sampling."""
    import gptkit
    model = gptkit.load_model(model_dir, dtype=dtype)
    tok = model.tokenizer
    ids = [tok.encode(p) for p in prompts]
    model.generate([ids[0]], max_new_tokens=4, do_sample=True, top_k=0, temperature=0.8, seed=0)  # warm-up
    tokens, n = 0, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        out = model.generate([ids[n % len(ids)]], max_new_tokens=max_tokens, do_sample=True, top_k=0,
                             temperature=0.8, seed=n, eos_token_id=[])
        tokens += out.size(1) - len(ids[n % len(ids)])
        n += 1
    wall = time.perf_counter() - t0
    del model
    return {"requests": n, "tokens_per_s": tokens / wall}


def rss_run(url: str, pid: int, total: int, clients: int, max_tokens: int, prompts: list[str]) -> dict:
    """`total` requests from `clients` clients; the server's RSS after each tenth of them."""
    samples = [rss_mb(pid)]
    failed = 0
    for _ in range(10):
        res = asyncio.run(run_level(url, clients, 1e9, total // 10, max_tokens, prompts))
        failed += res["failed"]
        samples.append(rss_mb(pid))
    return {"requests": total, "failed": failed, "rss_mb": samples}


def resolve_dtype(name: str | None) -> str:
    from gptkit.device import compute_dtype
    return compute_dtype(name or "auto", torch.device("cpu"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="124m,mini", help="built-in models to bench: 124m, mini (comma-separated)")
    ap.add_argument("--model", action="append", default=[], help="also bench this model directory")
    ap.add_argument("--clients", default="1,4,16", help="concurrency levels")
    ap.add_argument("--seconds", type=float, default=20.0, help="duration of each level (s)")
    ap.add_argument("--max-requests", type=int, default=400, help="at most this many requests per level")
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens generated per request")
    ap.add_argument("--max-batch", type=int, default=16, help="the server's --max-batch")
    ap.add_argument("--dtype", default=None, help="weights' dtype (default: bfloat16 on AMX/AVX-512-BF16 CPUs)")
    ap.add_argument("--rss-requests", type=int, default=1000, help="requests of the memory run (0 = skip)")
    ap.add_argument("--rss-model", default="mini", help="which model the memory run uses")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    dtype = resolve_dtype(args.dtype)
    levels = [int(x) for x in args.clients.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, dtype {dtype}, "
          f"{args.max_tokens} tokens per request, {args.seconds:g} s per level", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    report: dict = {"dtype": dtype, "max_tokens": args.max_tokens, "models": {}}
    try:
        models = build_models([m for m in args.models.split(",") if m], work)
        for p in args.model:
            models[Path(p).name] = Path(p)
        for name, path in models.items():
            import gptkit
            tok = gptkit.load_tokenizer(path)
            EOS[0] = tok.eot_id
            prompts = [p[:200] for p in PROMPT_SEEDS]
            n_prompt = statistics.mean(len(tok.encode(p)) for p in prompts)
            print(f"\n== {name}: {path.name} (prompts ~{n_prompt:.0f} tokens)", flush=True)
            plain = plain_loop(path, dtype, args.seconds, args.max_tokens, prompts)
            print(f"plain loop over model.generate, one request at a time: {plain['tokens_per_s']:.1f} tokens/s "
                  f"({plain['requests']} requests)", flush=True)
            port = free_port()
            proc = start_server(path, port, args.max_batch, dtype)
            url = f"http://127.0.0.1:{port}"
            try:
                asyncio.run(run_level(url, 2, 2.0, 4, 8, prompts))  # warm-up
                rows = []
                print(f"{'clients':>7} {'requests':>8} {'failed':>6} {'tokens/s':>9} {'vs 1':>5} {'TTFT p50':>9} "
                      f"{'TTFT p99':>9} {'tok p50':>8} {'tok p99':>8}  (ms)", flush=True)
                for c in levels:
                    r = asyncio.run(run_level(url, c, args.seconds, args.max_requests, args.max_tokens, prompts))
                    rows.append(r)
                    base = rows[0]["tokens_per_s"]
                    print(f"{c:>7} {r['requests']:>8} {r['failed']:>6} {r['tokens_per_s']:>9.1f} "
                          f"{r['tokens_per_s'] / base:>5.2f} {r['ttft_p50_ms']:>9.1f} {r['ttft_p99_ms']:>9.1f} "
                          f"{r['tpot_p50_ms']:>8.1f} {r['tpot_p99_ms']:>8.1f}" + (f"  {r['why']}" if r["why"] else ""),
                          flush=True)
                top = rows[-1]
                print(f"serve at {rows[0]['clients']} client(s) vs the plain loop: "
                      f"{rows[0]['tokens_per_s'] / plain['tokens_per_s']:.2f}x (goal >= 0.9x at 1 client)", flush=True)
                print(f"serve at {top['clients']} clients vs the plain loop: "
                      f"{top['tokens_per_s'] / plain['tokens_per_s']:.2f}x; "
                      f"vs serve at {rows[0]['clients']} client(s): {top['tokens_per_s'] / rows[0]['tokens_per_s']:.2f}x",
                      flush=True)
                entry = {"plain": plain, "levels": rows}
                if args.rss_requests and name == args.rss_model:
                    mem = rss_run(url, proc.pid, args.rss_requests, max(levels), 16, prompts)
                    s = mem["rss_mb"]
                    print(f"memory over {mem['requests']} requests ({max(levels)} clients, 16 tokens each): "
                          f"RSS {s[0]:.0f} MB -> {s[-1]:.0f} MB (after each 10%: "
                          f"{', '.join(f'{x:.0f}' for x in s[1:])}); failed {mem['failed']}", flush=True)
                    entry["memory"] = mem
                report["models"][name] = entry
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
