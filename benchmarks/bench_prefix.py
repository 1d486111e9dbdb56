"""Prefix caching (issue 19), two measurements side by side with the cache off, same run:

1. Through `gptkit serve`: two requests that share a 1,000-token prefix (token ids, different
   last tokens), max_tokens 1, one after the other; the second's time to its (only) token against
   the first's, with the server's prefix cache on, and the same pair with it off (--prefix-cache-mb 0).
   GPT-2 124M shape, random weights, GPT-2's tokenizer.
2. A 3-shot `translate` run (gptkit.tasks.run_task, what `gptkit translate --shots 3` runs) over
   --examples synthetic sentence pairs, with and without the prefix cache: wall time and whether
   the outputs are identical. The `make run` shape (mini preset, random weights, GPT-2's tokenizer).

    python benchmarks/bench_prefix.py [--examples 200] [--skip-serve]
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_serve import start_server  # noqa: E402 (after the path it lives on)

WORDS = ("the river the city a small house near old green bright morning evening we they walk read write "
         "quickly slowly under over with without friends books letters windows garden music").split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def serve_ttft(model_dir: Path, prefix_mb: int, dtype: str, prefix_len: int) -> tuple[float, float]:
    import httpx
    from bench_serve import free_port

    port = free_port()
    proc = start_server(model_dir, port, 4, dtype, prefix_cache_mb=prefix_mb)
    url = f"http://127.0.0.1:{port}/v1/completions"
    try:
        httpx.post(url, json={"prompt": [1, 2, 3], "max_tokens": 1}, timeout=600)  # warm-up
        rng = random.Random(0)
        head = [rng.randrange(50000) for _ in range(prefix_len)]
        times = []
        for last in ([11, 12, 13], [21, 22, 23]):
            t0 = time.perf_counter()
            r = httpx.post(url, json={"prompt": head + last, "max_tokens": 1, "temperature": 0}, timeout=600)
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
        return times[0], times[1]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def translate(n: int, max_new: int) -> dict:
    from gptkit.model import GPT, preset_config
    from gptkit.tasks.data import Example
    from gptkit.tasks.run import run_task
    from gptkit.tasks.templates import builtin
    from gptkit.tokenizer import gpt2_tokenizer
    tok = gpt2_tokenizer()
    torch.manual_seed(0)
    model = GPT(preset_config("mini", vocab_size=tok.vocab_size)).eval()
    rng = random.Random(1)
    shots = [Example(sentence(rng, 14), sentence(rng, 14)) for _ in range(3)]
    examples = [Example(sentence(rng, rng.randrange(6, 16)), None) for _ in range(n)]
    template = builtin("translate", "English", "German")
    out, res = {}, {}
    with tempfile.TemporaryDirectory() as d:
        for on in (False, True, False, True):  # interleaved; the best of two each
            t0 = time.perf_counter()
            run_task(model, tok, examples, template, Path(d) / f"{on}.jsonl", generation={"max_new_tokens": max_new},
                     shots=shots, overwrite=True, progress=False, prefix_cache=on)
            res.setdefault(on, []).append(time.perf_counter() - t0)
            out[on] = (Path(d) / f"{on}.jsonl").read_text()
    return {"off_s": min(res[False]), "on_s": min(res[True]), "identical": out[True] == out[False]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--prefix-len", type=int, default=1000)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--skip-serve", action="store_true")
    args = ap.parse_args()
    from bench_serve import build_models, resolve_dtype
    dtype = resolve_dtype(args.dtype)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, dtype {dtype}", flush=True)
    if not args.skip_serve:
        with tempfile.TemporaryDirectory() as work:
            path = build_models(["124m"], Path(work))["124m"]
            for mb in (256, 0):
                first, second = serve_ttft(path, mb, dtype, args.prefix_len)
                print(f"serve, prefix cache {'on ' if mb else 'off'}: {args.prefix_len}-token shared prefix, first "
                      f"request {1000 * first:.0f} ms, second {1000 * second:.0f} ms: {first / second:.2f}x sooner",
                      flush=True)
    r = translate(args.examples, args.max_new_tokens)
    print(f"3-shot translate over {args.examples} examples (mini, random weights, fp32): prefix cache off "
          f"{r['off_s']:.1f} s, on {r['on_s']:.1f} s: {r['off_s'] / r['on_s']:.2f}x; outputs identical: "
          f"{r['identical']}", flush=True)


if __name__ == "__main__":
    main()
