"""Batch-1 decoding: gptkit against llama.cpp, the CPU anchor, on the same GPT-2 124M weights.

    python benchmarks/bench_llama_cpp.py [--prompt-len 32] [--new-tokens 128] [--repeats 2]
                                         [--threads 2] [--no-install]

bench_generate.py's random GPT-2 124M model (built with transformers, nothing downloaded) is saved
by gptkit with GPT-2's tokenizer and converted by gptkit's own exporter (`gptkit export --format
gguf --quantize f32|f16|q8_0`); llama.cpp (llama-cpp-python, installed here if missing: a source
build, minutes) loads each file with n_threads = n_threads_batch = --threads, and gptkit decodes
in fp32, bf16 and int8 with torch held to the same threads. Each pair (gptkit fp32 / llama.cpp
f32, bf16 / f16, int8 / q8_0) decodes the same --prompt-len token prompt greedily for
--new-tokens tokens (no end-of-text stop in either), timed the same way as bench_generate (the
whole call, prompt included), best of --repeats rounds after a warm-up, all six contenders
interleaved in each round. Prints new tokens/s, gptkit's ratio to llama.cpp in each pair, each
side's weight bytes per token against the measured read bandwidth, and how many greedy tokens
llama.cpp f32 shares with gptkit fp32 (random weights give near-uniform distributions, so float
rounding may flip a near-tie; bench_gguf.py checks exact parity on peaked models).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_generate import (
    MODES,
    _loadavg,
    bench,
    build_checkpoint,
    decode_bytes_per_token,
    memory_bandwidth,
    run_gptkit,
)
from bench_gguf import ensure_llama_cpp

PAIRS = (("fp32", "f32"), ("bf16", "f16"), ("int8", "q8_0"))


def gguf_files(hf_dir: Path, work: Path) -> tuple[Path, dict[str, Path]]:
    """The checkpoint saved by gptkit with GPT-2's tokenizer, and its GGUF exports by quantization."""
    from gptkit import load_model
    from gptkit.cli import main as gptkit
    from gptkit.hf import save_model
    from gptkit.tokenizer import gpt2_tokenizer
    model_dir = work / "gptkit"
    save_model(load_model(hf_dir), model_dir, gpt2_tokenizer())
    files = {}
    for _, quant in PAIRS:
        files[quant] = work / f"gpt2-124m-{quant}.gguf"
        if gptkit(["export", str(model_dir), str(files[quant]), "--quantize", quant]) != 0:
            sys.exit(f"gptkit export --quantize {quant} failed")
    return model_dir, files


def run_llama(llm, x: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy decoding in llama.cpp, as bench_generate's runners: the prompt, then new_tokens ids.
    The reset makes every call evaluate its prompt (llama-cpp-python would reuse a cached one)."""
    llm.reset()
    out = []
    for token in llm.generate(x[0].tolist(), top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
        out.append(int(token))
        if len(out) == new_tokens:
            break
    return torch.cat([x[0], torch.tensor(out, dtype=x.dtype)])[None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads and llama.cpp n_threads")
    ap.add_argument("--no-install", action="store_true", help="do not pip install llama-cpp-python")
    args = ap.parse_args()
    llama_cpp = ensure_llama_cpp(not args.no_install)
    torch.set_num_threads(args.threads)
    from gptkit import load_model
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"GPT-2 124M shape (random weights), {cpu}, {args.threads} threads each; torch {torch.__version__}, "
          f"llama-cpp-python {llama_cpp.__version__}")
    print(f"prompt {args.prompt_len} tokens -> {args.new_tokens} new tokens, greedy, best of {args.repeats}, "
          f"interleaved; load average before: {_loadavg()}")
    with tempfile.TemporaryDirectory(prefix="bench-llama-cpp-") as tmp:
        hf_dir = build_checkpoint(Path(tmp) / "hf")
        model_dir, files = gguf_files(hf_dir, Path(tmp))
        ours = {mode: load_model(model_dir, dtype=MODES[mode][0], quantize=MODES[mode][1]) for mode, _ in PAIRS}
        n_ctx = args.prompt_len + args.new_tokens + 8
        theirs = {q: llama_cpp.Llama(model_path=str(f), n_ctx=n_ctx, n_batch=n_ctx, n_threads=args.threads,
                                     n_threads_batch=args.threads, verbose=False) for q, f in files.items()}
        x = torch.randint(0, 50257, (1, args.prompt_len), generator=torch.Generator().manual_seed(0))
        runs = {f"gptkit {m}": (run_gptkit, ours[m]) for m, _ in PAIRS}
        runs.update({f"llama.cpp {q}": (run_llama, theirs[q]) for _, q in PAIRS})
        results = bench(runs, x, args.new_tokens, args.repeats)
        report(args, results, ours, files)
        del theirs
    print(f"load average after: {_loadavg()}")


def report(args: argparse.Namespace, results: dict, ours: dict, files: dict) -> None:
    bw = max(memory_bandwidth().values())
    print(f"\nmeasured read bandwidth {bw:.1f} GB/s; ceiling = bandwidth / weight bytes per token")
    print(f"{'pair':<16}{'gptkit tok/s':>13}{'llama.cpp tok/s':>17}{'ratio':>8}"
          f"{'gptkit MB/tok':>15}{'llama MB/tok':>14}{'gptkit % ceil':>15}{'llama % ceil':>14}")
    for mode, quant in PAIRS:
        ours_tps, theirs_tps = results[f"gptkit {mode}"][0], results[f"llama.cpp {quant}"][0]
        ours_mb, theirs_mb = decode_bytes_per_token(ours[mode]) / 1e6, files[quant].stat().st_size / 1e6
        print(f"{mode + ' / ' + quant:<16}{ours_tps:>13.1f}{theirs_tps:>17.1f}{ours_tps / theirs_tps:>7.2f}x"
              f"{ours_mb:>15.1f}{theirs_mb:>14.1f}{ours_tps * ours_mb / (bw * 1e3):>14.0%}"
              f"{theirs_tps * theirs_mb / (bw * 1e3):>14.0%}")
    a, b = results["gptkit fp32"][1][0, args.prompt_len:], results["llama.cpp f32"][1][0, args.prompt_len:]
    same = next((i for i, (s, t) in enumerate(zip(a.tolist(), b.tolist())) if s != t), len(a))
    print(f"greedy: llama.cpp f32 agrees with gptkit fp32 on the first {same}/{len(a)} new tokens "
          "(random weights: near-uniform distributions, a near-tie may flip)")


if __name__ == "__main__":
    main()
