"""Peak memory of loading a GPT-2 (124M-shaped) checkpoint: gptkit vs transformers' from_pretrained.

    python benchmarks/bench_load.py [--model DIR] [--keep DIR]

Without --model it writes a random-weight GPT-2 (124M) checkpoint with transformers into a
temporary directory (or --keep DIR) first. Each measurement runs in a fresh subprocess:

  cold   peak RSS gained over the RSS before any load (torch and the loader imported);
         includes libtorch code pages that loading touches for the first time.
  warm   peak RSS gained after a warm-up load of a tiny model: the weights' own cost.
  +fwd   peak RSS gained by the end of one forward pass on one token, which makes every
         weight resident (a memory-mapped, lazily-read load looks free until it is used).

All figures are ratios to the checkpoint's fp32 size; the issue's bound is 1.5x. Peak RSS is
VmHWM from /proc/self/status, reset through /proc/self/clear_refs; not ru_maxrss, which a child
inherits from its parent across fork+exec (a child of a process holding a model would report ~0).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import json, sys, time
    import torch
    which, path, tiny, dtype = sys.argv[1:5]

    # Peak RSS from /proc, not ru_maxrss: ru_maxrss survives fork+exec, so a child of a big
    # process starts with its parent's peak and would report (nearly) nothing.
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    def mark():  # reset the peak to the current RSS (Linux >= 4.0), return the baseline
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return status("VmRSS")
        except OSError:
            return status("VmHWM")

    if which == "gptkit":
        from gptkit.hf import load_model
        load = lambda p: load_model(p, dtype=dtype)
        forward = lambda m, x: m(x)
    else:
        from transformers import GPT2LMHeadModel
        from transformers.utils import logging
        logging.disable_progress_bar()
        load = lambda p: GPT2LMHeadModel.from_pretrained(p, dtype=getattr(torch, dtype)).eval()
        forward = lambda m, x: m(x).logits
    cold = status("VmRSS")  # the peak is still this process's own from exec on: no reset needed
    mark()
    if tiny != "-":
        load(tiny)
    warm = mark()
    t = time.perf_counter()
    m = load(path)
    seconds = time.perf_counter() - t
    after_load = status("VmHWM")
    with torch.no_grad():
        forward(m, torch.zeros(1, 1, dtype=torch.long))
    print(json.dumps({"cold": after_load - cold, "warm": after_load - warm,
                      "fwd": status("VmHWM") - warm, "seconds": seconds}))
""")


def make_checkpoint(directory: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(directory)
    return directory


def make_tiny(directory: Path) -> Path:
    from gptkit.hf import save_model
    from gptkit.model import GPT, GPTConfig
    save_model(GPT(GPTConfig(vocab_size=50, n_positions=8, n_embd=8, n_layer=1, n_head=2)), directory)
    return directory


def run(which: str, model: Path, tiny: Path | str, dtype: str) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    out = subprocess.run([sys.executable, "-c", CHILD, which, str(model), str(tiny), dtype],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        raise SystemExit(f"{which} {dtype}: child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if not sys.platform.startswith("linux"):
        raise SystemExit("this reads peak RSS from /proc/self/status: run it on Linux")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="a GPT-2 directory to load (default: write a 124M one)")
    p.add_argument("--keep", default=None, help="write the generated checkpoint here and keep it")
    p.add_argument("--dtypes", default="float32,bfloat16")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="gptkit-bench-load-") as tmp:
        tmp = Path(tmp)
        if args.model:
            model = Path(args.model)
        else:
            model = Path(args.keep) if args.keep else tmp / "gpt2-124m"
            if not (model / "model.safetensors").exists():
                t = time.perf_counter()
                make_checkpoint(model)
                print(f"wrote a GPT-2 (124M) checkpoint to {model} in {time.perf_counter() - t:.1f}s")
        tiny = make_tiny(tmp / "tiny")
        fp32 = (model / "model.safetensors").stat().st_size
        print(f"checkpoint: {model} ({fp32 / 2**20:.0f} MiB of fp32 weights)")
        print(f"{'loader':<30}{'dtype':<10}{'cold':>8}{'warm':>8}{'+fwd':>8}{'load s':>9}   (x fp32 size)")
        for dtype in args.dtypes.split(","):
            for which, label in (("gptkit", "gptkit load_model"), ("hf", "transformers from_pretrained")):
                r = run(which, model, tiny, dtype)
                print(f"{label:<30}{dtype:<10}{r['cold'] / fp32:>8.2f}{r['warm'] / fp32:>8.2f}"
                      f"{r['fwd'] / fp32:>8.2f}{r['seconds']:>9.2f}")


if __name__ == "__main__":
    main()
