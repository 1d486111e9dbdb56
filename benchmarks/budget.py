"""The GPT-2 recipe against a tuned budget recipe, for the same wall-clock budget, in one run.

    python benchmarks/budget.py --corpus book.txt --minutes 10            # raw text, bytes tokenizer
    python benchmarks/budget.py --stdlib --minutes 4 --repeats 2          # make run's corpus (BPE 4096)

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
    return {"recipe": name, "steps": r.step, "tokens_per_s": round(r.tokens_per_s), "train_minutes": round(wall / 60, 2),
            "val_loss": round(whole["loss"], 4), "bits_per_byte": round(whole["bits_per_byte"], 4),
            "eval_tokens": whole["eval_tokens"], "params": model.num_parameters(), "dtype": cfg.dtype}


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
    p.add_argument("--only", choices=["baseline", "recipe"], default=None, help="run one side only")
    p.add_argument("--out", default=None, help="where the run directories go (default: a temporary directory)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
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
    for rep in range(a.repeats):
        order = [("gpt2-recipe", baseline), (a.recipe, recipe)]
        if rep % 2:
            order.reverse()
        for name, overrides in order:
            if a.only and (a.only == "baseline") != (name == "gpt2-recipe"):
                continue
            r = run(name, overrides, data, out / f"{name}-{rep}", a.minutes, seed=1337 + rep)
            results.append(r)
            print(json.dumps(r) if a.json else f"{name:>12}: {r['steps']:,} steps, {r['tokens_per_s']:,} tok/s, "
                  f"val loss {r['val_loss']:.4f}, {r['bits_per_byte']:.4f} bits/byte over the whole val split "
                  f"({r['eval_tokens']:,} tokens), {r['params']:,} parameters", flush=True)
    by = {}
    for r in results:
        by.setdefault(r["recipe"], []).append(r["bits_per_byte"])
    if len(by) == 2 and not a.json:
        (n0, b0), (n1, b1) = by.items()
        m0, m1 = sum(b0) / len(b0), sum(b1) / len(b1)
        print(f"mean bits/byte: {n0} {m0:.4f} ({', '.join(f'{x:.4f}' for x in b0)}), "
              f"{n1} {m1:.4f} ({', '.join(f'{x:.4f}' for x in b1)}); {a.recipe} is {m0 - m1:+.4f} bits/byte "
              f"better ({(m0 - m1) / m0:+.1%}) at {a.minutes:g} minutes each")
    print(f"runs in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
