"""GPT-2 124M on one GPU in one go: prepare, train for a fixed time, measure (run by gpu.sh).

    python benchmarks/bench_gpu.py --work DIR [--minutes 4] [--batch-size 32] [--smoke]

1. prepares Python's standard library (offline, in every Python) with the GPT-2 tokenizer;
2. trains GPT-2 124M (`gptkit train --preset gpt2 --block-size 1024 --compile`, bf16 autocast,
   TF32, fused AdamW) for --minutes of wall clock, compilation included;
3. reads the run's metrics: steady-state tokens/s and MFU (median over the log intervals after
   warm-up that hold no evaluation or checkpoint), and the final validation loss;
4. decodes with the trained model (bf16, KV cache, greedy, end-of-text off) and times new
   tokens/s at batch 1 and 8;
5. prints a summary and writes it to DIR/summary.json.

--smoke shrinks everything (tiny model, 1 MB of corpus, seconds of training, CPU allowed) so
that the whole path can be checked on a machine without a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

T0 = time.time()


def log(msg: str) -> None:
    print(f"[bench_gpu {time.time() - T0:6.1f}s] {msg}", flush=True)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="scratch directory (data, run, summary.json)")
    ap.add_argument("--smoke", action="store_true", help="tiny everything: checks the path on a CPU")
    ap.add_argument("--minutes", type=float, default=None, help="training wall clock (default 4; smoke 0.15)")
    ap.add_argument("--batch-size", type=int, default=None, help="micro-batch (default 32; smoke 8)")
    ap.add_argument("--max-iters", type=int, default=None, help="the cosine schedule's length (default 3000)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="torch.compile (default: on with CUDA, off in smoke mode)")
    ap.add_argument("--decode-tokens", type=int, default=None, help="new tokens per decode run (default 256)")
    a = ap.parse_args()
    smoke = a.smoke
    a.minutes = a.minutes if a.minutes is not None else (0.15 if smoke else 4.0)
    a.batch_size = a.batch_size or (8 if smoke else 32)
    a.max_iters = a.max_iters or (100_000 if smoke else 3000)
    a.decode_tokens = a.decode_tokens or (32 if smoke else 256)
    a.preset, a.block_size = ("tiny", 64) if smoke else ("gpt2", 1024)
    a.corpus_bytes = 1_000_000 if smoke else None
    return a


def environment(a: argparse.Namespace) -> dict:
    import torch

    from gptkit.train.speed import peak_flops
    cuda = torch.cuda.is_available()
    if not cuda and not a.smoke:
        sys.exit("bench_gpu: no CUDA device visible (GPU_SH_SMOKE=1 runs the CPU smoke version)")
    dev = torch.device("cuda") if cuda else torch.device("cpu")
    name = torch.cuda.get_device_name(dev) if cuda else "cpu"
    peak = peak_flops(dev)
    if a.compile is None:
        a.compile = cuda and not a.smoke
    info = {"date": time.strftime("%Y-%m-%d"), "device": name, "torch": torch.__version__,
            "cuda": torch.version.cuda, "peak_bf16_tflops": peak / 1e12 if peak else None}
    log(f"device {name}, torch {torch.__version__} (CUDA {torch.version.cuda}), bf16 dense peak "
        f"{f'{peak / 1e12:.0f} TFLOP/s' if peak else 'unknown (no MFU)'}")
    return info


def prepare_corpus(a: argparse.Namespace, work: Path) -> Path:
    from gptkit.data import format_summary, prepare, stdlib_corpus_files
    from gptkit.tokenizer import gpt2_tokenizer
    data = work / "data"
    if (data / "meta.json").is_file():
        log(f"corpus already prepared in {data}")
        return data
    tok = gpt2_tokenizer(os.environ.get("GPT2_TOKENIZER_DIR") or None)
    files = stdlib_corpus_files(max_bytes=a.corpus_bytes)
    t = time.time()
    meta = prepare(files, data, tokenizer=tok, val_fraction=0.01, progress=False)
    log(f"prepared {len(files)} standard-library files with the GPT-2 tokenizer: "
        + format_summary(meta, time.time() - t).replace("\n", "; "))
    return data


def train(a: argparse.Namespace, data: Path, run: Path) -> float:
    warmup = 20 if a.smoke else 200
    eval_interval = 50 if a.smoke else 1000
    cmd = [sys.executable, "-m", "gptkit", "train", "--data", str(data), "--out", str(run),
           "--preset", a.preset, "--block-size", str(a.block_size), "--batch-size", str(a.batch_size),
           "--max-iters", str(a.max_iters), "--max-minutes", str(a.minutes),
           "--lr", "6e-4", "--min-lr", "6e-5", "--warmup-iters", str(warmup), "--weight-decay", "0.1",
           "--eval-interval", str(eval_interval), "--eval-iters", "20",
           "--log-interval", "2" if a.smoke else "10",
           "--dtype", "bfloat16" if not a.smoke else "float32", "--samples", "0",
           "--compile" if a.compile else "--no-compile"]
    log("train: " + " ".join(cmd[1:]))
    env = {**os.environ, "TQDM_MININTERVAL": "15", "PYTHONUNBUFFERED": "1"}
    t = time.time()
    r = subprocess.run(cmd, env=env, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"bench_gpu: training failed (exit status {r.returncode})")
    return time.time() - t


def training_figures(run: Path, tokens_per_step: int) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    eval_steps = {r["step"] for r in evals}
    # steady state: past the first 10% of intervals (compilation, warm-up), and no interval that
    # holds an evaluation + checkpoint
    prev = {b["step"]: a["step"] for a, b in zip(train, train[1:])}
    skip = max(2, len(train) // 10)
    steady = [r for r in train[skip:] if not any(prev.get(r["step"], 0) <= s < r["step"] for s in eval_steps)]
    steady = steady or train[-1:]
    # a run stopped by the clock ends with an evaluation, not necessarily with a log row
    steps = max([r["step"] for r in rows] or [0])
    out = {"steps": steps, "tokens": steps * tokens_per_step,
           "train_loss": train[-1]["loss"] if train else None,
           "tokens_per_s": statistics.median(r["tokens_per_s"] for r in steady) if steady else None,
           "val_loss": evals[-1]["val_loss"] if evals else None,
           "val_perplexity": evals[-1]["val_perplexity"] if evals else None}
    mfus = [r["mfu"] for r in steady if "mfu" in r]
    out["mfu"] = statistics.median(mfus) if mfus else None
    return out


def decode(a: argparse.Namespace, run: Path) -> dict:
    import torch

    from gptkit.hf import load_model
    cuda = torch.cuda.is_available()
    model = load_model(run, dtype="bfloat16" if cuda else "float32", device="cuda" if cuda else "cpu")
    tok = model.tokenizer
    prompt = tok.encode("def parse_args(argv=None):\n    \"\"\"")
    out: dict = {}
    for batch in (1, 8):
        x = torch.tensor([prompt] * batch, device=model.device)
        model.generate(x, max_new_tokens=8, eos_token_id=[])  # warm-up
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        ids = model.generate(x, max_new_tokens=a.decode_tokens, eos_token_id=[])
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        new = (ids.shape[1] - len(prompt)) * batch
        out[f"decode_tokens_per_s_batch{batch}"] = new / dt
        if batch == 1:
            out["sample"] = tok.decode(ids[0].tolist())[:300]
    return out


def main() -> None:
    a = parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    info = environment(a)
    data = prepare_corpus(a, work)
    run = work / "run"
    if run.exists():
        import shutil
        shutil.rmtree(run)
    wall = train(a, data, run)
    figures = training_figures(run, a.batch_size * a.block_size)
    figures["epochs"] = figures["tokens"] / json.loads((data / "meta.json").read_text())["splits"]["train"]["tokens"]
    log(f"training done in {wall:.0f} s")
    figures.update(decode(a, run))
    summary = {**info, "preset": a.preset, "block_size": a.block_size, "batch_size": a.batch_size,
               "compile": a.compile, "train_minutes": a.minutes, "train_wall_s": wall, **figures,
               "total_s": time.time() - T0, "smoke": a.smoke}
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    mfu = f"{summary['mfu']:.1%}" if summary.get("mfu") is not None else "n/a (no bf16 peak for this device)"
    print("\n===== gptkit GPU benchmark" + (" (SMOKE: tiny model, not a measurement)" if a.smoke else "") + " =====")
    print(f"date              {summary['date']}")
    print(f"device            {summary['device']}  (torch {summary['torch']}, CUDA {summary['cuda']})")
    print(f"model             {a.preset}, block {a.block_size}, micro-batch {a.batch_size}, "
          f"compile {'on' if a.compile else 'off'}")
    print(f"trained           {summary['steps']} steps, {summary['tokens']:,} tokens in {wall:.0f} s "
          f"(limit {a.minutes:g} min incl. compilation)")
    tps = summary["tokens_per_s"]
    print(f"train tokens/s    {f'{tps:,.0f}' if tps else 'n/a (fewer steps than one log interval)'}"
          "  (steady-state median)")
    print(f"MFU               {mfu}")
    print(f"val loss          {summary['val_loss']:.4f}  (perplexity {summary['val_perplexity']:.2f}; after "
          f"{summary['epochs']:.1f} epochs of a small corpus: a sanity figure, not a quality one)")
    print(f"decode tokens/s   {summary['decode_tokens_per_s_batch1']:,.0f} at batch 1, "
          f"{summary['decode_tokens_per_s_batch8']:,.0f} at batch 8 ({a.decode_tokens} new tokens, greedy)")
    print(f"total             {summary['total_s']:.0f} s; summary in {work / 'summary.json'}")


if __name__ == "__main__":
    main()
