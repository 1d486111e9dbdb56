"""CPU data parallelism: training tokens/s of one process against torchrun DDP ranks on this
machine's cores, same model, same global batch, same data.

    python benchmarks/bench_ddp_cpu.py [--preset mini] [--block-size 128] [--global-batch 16]
                                       [--iters 40] [--procs 2]

Runs `gptkit train` three ways on a byte-level corpus of Python's standard library:
  1 process x 1 thread           micro-batch = global batch
  1 process x P threads          micro-batch = global batch (intra-op parallelism: PyTorch's own)
  torchrun P processes x 1 thread, DDP (gloo), micro-batch = global batch / P
and prints the steady-state tokens/s of each (median over log intervals after the first),
and the ratios. The global batch, hence the loss curve, is the same in all three. On a machine
shared with other jobs the best interval (the least disturbed one) is the steadier figure.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(name: str, cmd: list[str], threads: int, out: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT)}
    t = time.time()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{name} failed:\n{r.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [row for row in rows if row["kind"] == "train"]
    speeds = [row["tokens_per_s"] for row in train[1:]]
    tps, best = statistics.median(speeds), max(speeds)
    losses = [row["loss"] for row in train]
    print(f"{name:<40} {tps:>8,.0f} tokens/s median, {best:>8,.0f} best interval   "
          f"(final loss {losses[-1]:.4f}, {time.time() - t:.0f} s)", flush=True)
    return {"tokens_per_s": tps, "best": best, "losses": losses}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mini")
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--global-batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    if args.global_batch % args.procs:
        sys.exit("--global-batch must be a multiple of --procs")
    from gptkit.data import prepare, stdlib_corpus_files
    work = Path(args.work or tempfile.mkdtemp(prefix="gptkit-ddp-"))
    data = work / "data"
    if not (data / "meta.json").is_file():
        prepare(stdlib_corpus_files(max_bytes=4_000_000), data, tokenizer="bytes", progress=False)
    common = ["--data", str(data), "--preset", args.preset, "--block-size", str(args.block_size),
              "--max-iters", str(args.iters), "--eval-interval", str(args.iters), "--eval-iters", "1",
              "--log-interval", "5", "--dtype", "float32", "--samples", "0", "-q"]
    print(f"cores: {os.cpu_count()}, preset {args.preset}, block {args.block_size}, global batch "
          f"{args.global_batch}, {args.iters} steps, torch {__import__('torch').__version__}", flush=True)
    results = {}
    for name, threads, procs in (("1 process x 1 thread", 1, 1),
                                 (f"1 process x {args.procs} threads", args.procs, 1),
                                 (f"torchrun {args.procs} processes x 1 thread (DDP)", 1, args.procs)):
        out = work / f"run-{procs}x{threads}"
        if out.exists():
            import shutil
            shutil.rmtree(out)
        micro = ["--batch-size", str(args.global_batch // procs), "--out", str(out)]
        if procs == 1:
            cmd = [sys.executable, "-m", "gptkit", "train", *common, *micro]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
                   "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
                   "-m", "gptkit", "train", *common, *micro]
        results[name] = run(name, cmd, threads, out, args)
    base = results["1 process x 1 thread"]["tokens_per_s"]
    names = list(results)
    best = results["1 process x 1 thread"]["best"]
    print(f"speed-up over 1 x 1 (median / best): {args.procs} threads "
          f"{results[names[1]]['tokens_per_s'] / base:.2f}x / {results[names[1]]['best'] / best:.2f}x, "
          f"{args.procs} DDP ranks {results[names[2]]['tokens_per_s'] / base:.2f}x / "
          f"{results[names[2]]['best'] / best:.2f}x")
    ref, ddp = results[names[0]]["losses"], results[names[2]]["losses"]
    print(f"largest loss difference, DDP vs 1 process: {max(abs(a - b) for a, b in zip(ref, ddp)):.2e}")


if __name__ == "__main__":
    main()
