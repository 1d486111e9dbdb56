"""The GPT-2 recipe against a tuned budget recipe (and that recipe with AdamW instead of Muon),
for the same wall-clock budget, in one run.

    python benchmarks/budget.py --corpus book.txt --minutes 10            # raw text, bytes tokenizer
    python benchmarks/budget.py --stdlib --minutes 4 --repeats 2          # make run's corpus (BPE 4096)
    python benchmarks/budget.py --corpus book.txt --minutes 10 --emulate-avx2   # a CPU without native bf16

Contenders: "gpt2-recipe" (the baseline below), the recipe (default cpu-10min: Muon, --dtype and
--muon-dtype auto) and "<recipe>-adamw" (the same recipe with --optimizer adamw: what Muon costs
or buys at equal time; its tokens/s should be within ~10% of the recipe's on any host). `--only`
picks some of them.

--emulate-avx2 runs on this host as on an AVX2-only CPU (no native bf16): ATEN_CPU_CAPABILITY=avx2
and ONEDNN_MAX_CPU_ISA=AVX2, set before torch loads (bf16 products then run at ~2-3 GFLOPS,
emulated, against ~100-150 in fp32 here), so a host with native bf16 can measure that case.

Each contender trains from scratch under `--max-minutes` (the schedule runs on the time budget,
so warm-up and decay complete in both), then is evaluated on the WHOLE validation split (as
`gptkit eval` does, at the training block size). Prints val loss (nats per token; per byte for the
bytes tokenizer) and bits per byte for each, and the difference. Contenders alternate when
--repeats > 1, so that a slow spell of a shared machine does not land on one of them only.

Baselines ("the GPT-2 recipe": GPT-2's architecture, AdamW, warm-up + cosine):
- bytes corpora: nanoGPT's CPU character-level recipe (4 layers, 128 wide, block 64, batch 12,
  lr 1e-3), the reference of issue 11.
- the stdlib corpus: `make run`'s defaults until now (the mini preset, block 256, batch 16, lr 3e-3).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASELINES = {
    "bytes": dict(preset="tiny", n_layer=4, n_head=4, n_embd=128, n_positions=64, block_size=64, batch_size=12,
                  lr=1e-3, warmup_iters=100, eval_interval=500, eval_iters=20),
    "stdlib": dict(preset="mini", eval_interval=100, eval_iters=20),
}


def run(name: str, overrides: dict, data: str, out: Path, minutes: float, seed: int) -> dict:
    from gptkit.data import TokenShards
    from gptkit.device import autocast_dtype
    from gptkit.evaluate import evaluate
    from gptkit.hf import load_model
    from gptkit.train import TrainConfig, train
    cfg = TrainConfig.from_dict({"max_iters": 1_000_000_000, **overrides, "data": data, "out": str(out),
                                 "max_minutes": minutes, "progress": False, "seed": seed})
    t = time.time()
    r = train(cfg)
    wall = time.time() - t
    model = load_model(out)
    val = TokenShards(data, "val")
    amp = autocast_dtype("float32", model.device)
    whole = evaluate(model, val, cfg.block_size, 16, None, amp)
    return {"recipe": name, "steps": r.step, "tokens_per_s": round(r.tokens_per_s),
            "median_tokens_per_s": median_tokens_per_s(out), "train_minutes": round(wall / 60, 2),
            "val_loss": round(whole["loss"], 4), "bits_per_byte": round(whole["bits_per_byte"], 4),
            "nats_per_byte": round(whole["bits_per_byte"] * math.log(2), 4), "eval_tokens": whole["eval_tokens"],
            "params": model.num_parameters(), "dtype": cfg.dtype,
            "muon_dtype": cfg.muon_dtype if cfg.optimizer == "muon" else None}


def median_tokens_per_s(out: Path) -> int:
    """The median of the run's logged tokens/s (one figure per --log-interval steps): what the
    recipe runs at, less the evaluations and a shared machine's slow spells, which the whole run's
    tokens/s includes."""
    import statistics

    from gptkit.rundir import read_metrics
    rates = [r["tokens_per_s"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
    return round(statistics.median(rates)) if rates else 0


def host() -> str:
    """The CPU and what torch computes on it (after --emulate-avx2, if given)."""
    import platform

    import torch

    from gptkit.device import bf16_matmul_speedup, cpu_has_fast_bf16
    try:
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or "unknown CPU"
    return (f"{name}, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
            f"{torch.get_num_threads()} threads; bf16/fp32 matmul speed {bf16_matmul_speedup():.2f}x: bf16 "
            f"{'native' if cpu_has_fast_bf16() else 'emulated'}")


def summary(results: list[dict], recipe: str, minutes: float) -> list[str]:
    """Means per contender, then the ratios the issue asks about."""
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["recipe"], []).append(r)
    keys = ("nats_per_byte", "bits_per_byte", "tokens_per_s", "median_tokens_per_s")
    mean = {n: {k: sum(r[k] for r in rs) / len(rs) for k in keys} for n, rs in by.items()}
    lines = [f"{n:>16}: {m['nats_per_byte']:.4f} nats/byte ({m['bits_per_byte']:.4f} bits/byte), "
             f"{m['tokens_per_s']:,.0f} tokens/s over the run, median {m['median_tokens_per_s']:,.0f} "
             f"(mean of {len(by[n])})" for n, m in mean.items()]
    adamw, base = mean.get(f"{recipe}-adamw"), mean.get("gpt2-recipe")
    if recipe in mean and adamw:
        m, w = mean[recipe], adamw
        lines.append(f"{recipe} / {recipe}-adamw tokens/s: {m['tokens_per_s'] / w['tokens_per_s']:.3f} over the run, "
                     f"{m['median_tokens_per_s'] / w['median_tokens_per_s']:.3f} median; "
                     f"nats/byte {m['nats_per_byte'] - w['nats_per_byte']:+.4f}")
    for n in (recipe, f"{recipe}-adamw"):
        if n in mean and base:
            d = mean[n]["nats_per_byte"] - base["nats_per_byte"]
            lines.append(f"{n} vs gpt2-recipe: {d:+.4f} nats/byte ({d / base['nats_per_byte']:+.1%}), tokens/s "
                         f"x{mean[n]['tokens_per_s'] / base['tokens_per_s']:.3f}, at {minutes:g} minutes each")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", help="a raw text file (prepared with --tokenizer, last --val-fraction as val)")
    p.add_argument("--data", help="an already prepared data directory")
    p.add_argument("--stdlib", action="store_true", help="make run's corpus: the standard library, BPE 4096")
    p.add_argument("--tokenizer", default="bytes")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--recipe", default="cpu-10min", help="the tuned preset to compare (default cpu-10min)")
    p.add_argument("--baseline", choices=list(BASELINES), default=None, help="default: bytes, or stdlib with --stdlib")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--only", default=None, help="comma-separated contenders to run: baseline, recipe, adamw (default all)")
    p.add_argument("--emulate-avx2", action="store_true", help="run as on a CPU without native bf16 (see above)")
    p.add_argument("--out", default=None, help="where the run directories go (default: a temporary directory)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    only = set((a.only or "baseline,recipe,adamw").split(","))
    if not only or only - {"baseline", "recipe", "adamw"}:
        p.error(f"--only {a.only!r}: name some of baseline, recipe, adamw")
    if a.emulate_avx2:  # before torch loads: both are read once, at start-up
        os.environ.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    print(host(), flush=True)
    if a.stdlib:
        from gptkit.cli.prepare import stdlib_data_dir
        data = str(stdlib_data_dir(progress=False))
    elif a.data:
        data = a.data
    elif a.corpus:
        from gptkit.data import prepare
        data = tempfile.mkdtemp(prefix="gptkit-budget-data-")
        prepare([a.corpus], data, tokenizer=a.tokenizer, val_fraction=a.val_fraction, progress=False, overwrite=True)
    else:
        p.error("give --corpus, --data or --stdlib")
    baseline = BASELINES[a.baseline or ("stdlib" if a.stdlib else "bytes")]
    recipe = {"preset": a.recipe}
    out = Path(a.out or tempfile.mkdtemp(prefix="gptkit-budget-"))
    results = []
    contenders = [("baseline", "gpt2-recipe", baseline), ("recipe", a.recipe, recipe),
                  ("adamw", f"{a.recipe}-adamw", {**recipe, "optimizer": "adamw"})]
    for rep in range(a.repeats):
        order = contenders[::-1] if rep % 2 else contenders
        for key, name, overrides in order:
            if key not in only:
                continue
            r = run(name, overrides, data, out / f"{name}-{rep}", a.minutes, seed=1337 + rep)
            results.append(r)
            ns = f", Newton-Schulz in {r['muon_dtype']}" if r["muon_dtype"] else ""
            print(json.dumps(r) if a.json else f"{name:>16}: {r['steps']:,} steps, {r['tokens_per_s']:,} tok/s "
                  f"(median {r['median_tokens_per_s']:,}), "
                  f"val {r['nats_per_byte']:.4f} nats/byte, {r['bits_per_byte']:.4f} bits/byte over the whole val "
                  f"split ({r['eval_tokens']:,} tokens), {r['params']:,} parameters, {r['dtype']}{ns}", flush=True)
    if not a.json:
        print("\n".join(summary(results, a.recipe, a.minutes)))
    print(f"runs in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
