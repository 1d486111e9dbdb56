"""What cleaning does to memorization: the README's audit table.

A real corpus this machine ships (Debian's /usr/share/doc/*/copyright files: licence texts, many
repeated across packages, and maintainers' names and e-mail addresses), with 8 planted canaries
(6-digit secrets, 2 at each of 1, 4, 16 and 64 copies), prepared twice with the same canaries:

  raw      --pii keep --keep-duplicates (every copy of every canary, every e-mail address)
  cleaned  the default cleaning (PII redacted, exact and near duplicates removed)

Each trains the same model for the same number of steps, then `gptkit audit` measures canary
exposure by copies planted, extraction (train vs validation windows) and membership inference.

    python benchmarks/bench_audit.py [--max-bytes 1000000] [--iters 500] [--out /tmp/bench-audit]

About 10 minutes on 2 cores (AMD EPYC with AVX512-BF16); run it under the CPU lock on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from gptkit.audit import AuditConfig, audit
from gptkit.data import prepare
from gptkit.data.clean import CleanConfig
from gptkit.train import TrainConfig, train

DOCS = Path("/usr/share/doc")


def corpus(out: Path, max_bytes: int, max_file: int = 30_000) -> tuple[int, int]:
    """Copy copyright files (each under max_file bytes, in name order) until max_bytes."""
    out.mkdir(parents=True, exist_ok=True)
    total = files = 0
    for p in sorted(DOCS.glob("*/copyright")):
        try:
            size = p.stat().st_size
            if not 200 <= size <= max_file:
                continue
            text = p.read_bytes()
        except OSError:
            continue
        (out / f"{p.parent.name}.txt").write_bytes(text)
        total, files = total + size, files + 1
        if total >= max_bytes:
            break
    return files, total


def run(args: argparse.Namespace) -> dict:
    root = Path(args.out)
    files, nbytes = corpus(root / "corpus", args.max_bytes)
    print(f"corpus: {files} copyright files, {nbytes:,} bytes")
    results = {"corpus": {"files": files, "bytes": nbytes}, "iters": args.iters}
    for name, clean in (("raw", CleanConfig(pii="keep", dedup=False)), ("cleaned", CleanConfig())):
        t0 = time.time()
        data = root / f"data-{name}"
        meta = prepare([root / "corpus"], data, tokenizer="bpe", vocab_size=2048, val_fraction=0.05, seed=0,
                       progress=False, overwrite=True, clean=clean, canaries=8, canary_digits=6, canary_seed=args.seed)
        run_dir = root / f"run-{name}"
        shutil.rmtree(run_dir, ignore_errors=True)
        res = train(TrainConfig(data=str(data), out=str(run_dir), preset="mini", block_size=128, batch_size=16,
                                max_iters=args.iters, max_minutes=args.max_minutes, eval_interval=args.iters,
                                eval_iters=10, log_interval=100, progress=False, dtype="auto", seed=0,
                                tensorboard=False))
        t1 = time.time()
        r = audit(AuditConfig(model=str(run_dir), data=str(data), out=str(root / f"audit-{name}"),
                              parts=["canaries", "extraction", "membership", "pii"], windows=args.windows,
                              prompt_tokens=[16, 32, 64], suffix_tokens=32, samples=100, progress=False))
        results[name] = {
            "steps": res.step, "val_loss": round(res.val["loss"], 3),
            "train_tokens": meta["splits"]["train"]["tokens"], "val_tokens": meta["splits"]["val"]["tokens"],
            "prepare_train_s": round(t1 - t0, 1), "audit_s": round(time.time() - t1, 1),
            "exposure_by_copies": {k: round(v["mean_exposure"], 2) for k, v in r["canaries"]["by_repeats"].items()},
            "copies_in_train": {c["repeats"]: c["copies_in_train"] for c in r["canaries"]["canaries"]},
            "max_exposure": round(r["canaries"]["max_exposure"], 2),
            "extraction": {s: {k: v["exact"] for k, v in rows.items()} for s, rows in r["extraction"]["splits"].items()},
            "mia_auc": {k: round(r["membership"][k]["auc"], 3) for k in ("loss", "zlib")},
            "mean_loss": r["membership"]["mean_loss"],
            "pii_findings": r["pii"]["findings"], "pii_in_training_text": r["pii"]["findings_in_training_text"],
        }
        print(name, json.dumps(results[name]))
    (root / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-bytes", type=int, default=1_000_000)
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--max-minutes", type=float, default=4.0, help="a cap on each training run (wall time)")
    p.add_argument("--windows", type=int, default=400)
    p.add_argument("--seed", type=int, default=22, help="seed of the canaries (the same in both corpora)")
    p.add_argument("--out", default="/tmp/bench-audit")
    run(p.parse_args())


if __name__ == "__main__":
    main()
