"""The modern families, gptkit vs transformers on the same weights: load time and peak memory, decode
speed, and the key/value cache that grouped-query attention saves.

    python benchmarks/bench_families.py [--shapes smollm2-135m qwen3-0.6b] [--new-tokens 32]
                                        [--prompt-len 16] [--batch-sizes 1 8] [--repeats 2]

Two shapes, random weights built and saved by transformers (nothing downloaded; cached under
$TMPDIR/gptkit-bench-families): SmolLM2-135M's (LlamaForCausalLM: 30 layers x 576, 9 heads, 3 key/value
heads, vocab 49152, tied) and Qwen3-0.6B's (Qwen3ForCausalLM: 28 layers x 1024, 16 heads of 128, 8
key/value heads, QK-norm, vocab 151936, tied). All in fp32. Every measurement runs in its own
subprocess, so that peak RSS is that of one load alone:

  load     seconds to a ready model, and the process's peak RSS over what it held before loading
           (interpreter + torch), against the weights' size (goal: <= 1.1x)
  decode   new tokens/s, greedy, --new-tokens after a --prompt-len prompt, end-of-text off, best of
           --repeats after a warm-up: gptkit, transformers' default (dynamic cache) and transformers
           with cache_implementation="static"; the ratio to the faster transformers mode
           (goal at batch 1: >= 1.5x); and whether the greedy ids agree
  kv       cache bytes per token (all layers, keys + values, fp32) with the model's key/value heads,
           against multi-head attention's (n_kv_head = n_head), and gptkit's cache measured
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {
    "smollm2-135m": ("Llama", dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                   num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                                   rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)),
    "qwen3-0.6b": ("Qwen3", dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                                 num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                                 max_position_embeddings=40960, rope_theta=1000000.0, rms_norm_eps=1e-6,
                                 tie_word_embeddings=True)),
}
ROOT = Path(__file__).resolve().parents[1]


def build(shape: str) -> Path:
    """The shape's random-weight checkpoint, saved by transformers (once; then reused)."""
    directory = Path(tempfile.gettempdir()) / "gptkit-bench-families" / shape
    if (directory / "model.safetensors").is_file():
        return directory
    import torch
    import transformers
    family, kw = SHAPES[shape]
    config = getattr(transformers, f"{family}Config")(**kw, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    model = getattr(transformers, f"{family}ForCausalLM")(config)
    model.save_pretrained(directory)
    return directory


def rss_mib() -> float:
    """Peak RSS of this process image: VmHWM (getrusage's ru_maxrss is kept across execve, so a child
    would report its parent's peak)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ---------------------------------------------------------------------------- children (one process each)

def child_load(impl: str, directory: str) -> dict:
    import torch  # all three before the baseline: every contender imports them
    import transformers

    import gptkit
    before = current_rss_mib()
    t = time.perf_counter()
    if impl == "gptkit":
        model = gptkit.load_model(directory)
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    seconds = time.perf_counter() - t
    weights = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
    return {"seconds": seconds, "peak_mib": rss_mib(), "before_mib": before, "weights_mib": weights / 2**20}


def child_decode(impl: str, directory: str, batch: int, prompt_len: int, new_tokens: int, repeats: int) -> dict:
    import torch
    torch.manual_seed(0)
    if impl == "gptkit":
        import gptkit
        model = gptkit.load_model(directory)
        vocab = model.config.vocab_size

        def run(x, n):
            return model.generate(x, max_new_tokens=n, do_sample=False, eos_token_id=[])
    else:
        import transformers
        model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
        vocab = model.config.vocab_size
        extra = {"cache_implementation": "static"} if impl == "transformers-static" else {}

        def run(x, n):
            return model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n,
                                  do_sample=False, pad_token_id=0, **extra)
    x = torch.randint(0, vocab, (batch, prompt_len), generator=torch.Generator().manual_seed(1))
    try:
        with torch.inference_mode():
            run(x, 2)  # warm-up (and, for the static cache, its allocation)
            best_full, best_one, ids = float("inf"), float("inf"), None
            for _ in range(repeats):
                t = time.perf_counter()
                ids = run(x, new_tokens)
                best_full = min(best_full, time.perf_counter() - t)
                t = time.perf_counter()
                run(x, 1)
                best_one = min(best_one, time.perf_counter() - t)
    except Exception as e:  # transformers' static cache on this version/CPU: say why, do not stop the run
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
    decode = max(best_full - best_one, 1e-9)  # the prefill (and first token) taken out
    return {"tokens_per_s": batch * (new_tokens - 1) / decode, "ids": ids[:, prompt_len:].tolist()}


def child_kv(directory: str, new_tokens: int) -> dict:
    import torch

    import gptkit
    model = gptkit.load_model(directory)
    c = model.config
    cache = model.new_cache(1, 1024, dtype=torch.float32)
    measured = (cache.k.numel() + cache.v.numel()) * cache.k.element_size() / 1024  # bytes per token of 1024
    head_dim = c.head_dim
    per_token = 2 * c.n_layer * c.n_kv_head * head_dim * 4
    mha = 2 * c.n_layer * c.n_head * head_dim * 4
    return {"bytes_per_token": per_token, "mha_bytes_per_token": mha, "measured_bytes_per_token": measured,
            "n_kv_head": c.n_kv_head, "n_head": c.n_head}


def child(argv: list[str]) -> None:
    kind, impl, directory, *rest = argv
    if kind == "build":
        out = {"directory": str(build(impl))}
    elif kind == "load":
        out = child_load(impl, directory)
    elif kind == "decode":
        batch, prompt_len, new_tokens, repeats = map(int, rest)
        out = child_decode(impl, directory, batch, prompt_len, new_tokens, repeats)
    else:
        out = child_kv(directory, int(rest[0]))
    print("RESULT " + json.dumps(out))


def spawn_build(shape: str) -> Path:
    """build() in a child: the parent stays small (its memory is no part of any measurement)."""
    r = spawn("build", shape, "-")
    if "error" in r:
        sys.exit(f"building {shape} failed: {r['error']}")
    return Path(r["directory"])


def spawn(*args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], capture_output=True, text=True, env=env)
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        return {"error": (p.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    return json.loads(line[7:])


# ---------------------------------------------------------------------------- the report

def report_shape(shape: str, args: argparse.Namespace) -> None:
    directory = spawn_build(shape)
    print(f"\n== {shape} ({SHAPES[shape][0]}ForCausalLM, random weights, fp32) at {directory}", flush=True)
    loads = {impl: spawn("load", impl, directory) for impl in ("gptkit", "transformers") if "load" in args.parts}
    for impl, r in loads.items():
        if "error" in r:
            print(f"  load {impl:13s} failed: {r['error']}")
            continue
        grown = r["peak_mib"] - r["before_mib"]
        print(f"  load {impl:13s} {r['seconds']:6.2f} s   peak RSS {r['peak_mib']:7.0f} MiB, {grown:7.0f} MiB over the "
              f"{r['before_mib']:.0f} MiB before loading = {grown / r['weights_mib']:.2f}x the weights "
              f"({r['weights_mib']:.0f} MiB)", flush=True)
    for batch in args.batch_sizes if "decode" in args.parts else []:
        runs = {impl: spawn("decode", impl, directory, batch, args.prompt_len, args.new_tokens, args.repeats)
                for impl in ("gptkit", "transformers", "transformers-static")}
        ours = runs["gptkit"]
        hf = [r["tokens_per_s"] for k, r in runs.items() if k != "gptkit" and "tokens_per_s" in r]
        for impl, r in runs.items():
            if "error" in r:
                print(f"  decode batch {batch} {impl:20s} failed: {r['error']}")
                continue
            same = "" if impl == "gptkit" or "ids" not in ours else \
                f"   greedy ids {'identical' if r['ids'] == ours['ids'] else 'DIFFER'} to gptkit's"
            print(f"  decode batch {batch} {impl:20s} {r['tokens_per_s']:8.1f} tok/s{same}", flush=True)
        if hf and "tokens_per_s" in ours:
            print(f"  decode batch {batch} gptkit / faster transformers mode = {ours['tokens_per_s'] / max(hf):.2f}x")
    kv = spawn("kv", "gptkit", directory, args.new_tokens) if "kv" in args.parts else {"error": "not asked"}
    if "error" not in kv:
        print(f"  kv cache: {kv['bytes_per_token'] / 1024:.1f} KiB per token with {kv['n_kv_head']} key/value heads "
              f"(gptkit's cache measured: {kv['measured_bytes_per_token'] / 1024:.1f} KiB), {kv['mha_bytes_per_token'] / 1024:.1f} KiB with "
              f"multi-head attention's {kv['n_head']}: {kv['mha_bytes_per_token'] / kv['bytes_per_token']:.1f}x less")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--parts", nargs="+", default=["load", "decode", "kv"], choices=["load", "decode", "kv"])
    args = p.parse_args()
    import torch
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    for shape in args.shapes:
        report_shape(shape, args)


if __name__ == "__main__":
    main()
