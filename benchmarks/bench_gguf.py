"""GGUF export checked by llama.cpp itself: greedy-token parity with gptkit, and the file sizes.

Installs llama-cpp-python if it is missing (`pip install llama-cpp-python`: it builds llama.cpp from
source, 5-10 minutes on 2 cores), then for a GPT-2-layout model, a Llama-layout one (also with
Llama-3's RoPE scaling: llama.cpp's rope_freqs) and a Qwen2-layout one (q/k/v biases) (random weights
whose next-token distributions are peaked, and a real tokenizer: GPT-2's; a BPE trained on the
standard library's docstrings; GQA where the model has n_kv_head) exports f32, f16 and q8_0 files
with `gptkit export`, loads each in llama.cpp and prints, against gptkit in fp32 on the same prompt:
whether llama.cpp's tokenizer gives the same prompt ids, how many of N greedy tokens agree (f32
must agree on all), the largest logit difference relative to the logits' scale, and the size and
llama.cpp's decode speed.

    python benchmarks/bench_gguf.py [--tokens 32] [--no-install]
"""
from __future__ import annotations

import argparse
import importlib
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PROMPT = "def parse(text: str) -> list[str]:\n    \"\"\"Split the text into words"


def ensure_llama_cpp(install: bool):
    try:
        return importlib.import_module("llama_cpp")
    except ImportError:
        if not install:
            sys.exit("llama-cpp-python is not installed (rerun without --no-install to build it)")
    print("installing llama-cpp-python (builds llama.cpp from source: minutes)...", flush=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "llama-cpp-python"], check=True)
    print(f"  built and installed in {time.perf_counter() - t:.0f} s", flush=True)
    return importlib.import_module("llama_cpp")


def spread(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                std = 1.0 if "wte" in name or "wpe" in name else 1 / math.sqrt(p.shape[1])
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def models(work: Path):
    from dataclasses import fields

    from gptkit.hf import save_model
    from gptkit.model import GPT, GPTConfig
    from gptkit.tokenizer import gpt2_tokenizer, train_bpe
    docs = [m.__doc__ or "" for m in (argparse, math, subprocess, tempfile, Path, np.linalg)]
    bpe = train_bpe(docs * 3, vocab_size=2048)
    llama = dict(position_embedding="rope", norm="rmsnorm", gated_mlp=True, activation_function="silu", bias=False,
                 tie_word_embeddings=False)
    if any(f.name == "n_kv_head" for f in fields(GPTConfig)):
        llama["n_kv_head"] = 2  # grouped-query attention, where gptkit has it
    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 32}  # the prompt runs past it
    shapes = {"gpt2 (GPT-2 tokenizer)": (gpt2_tokenizer(), dict()),
              "llama (trained BPE)": (bpe, llama),
              "llama3-rope (trained BPE)": (bpe, {**llama, "rope_theta": 500000.0, "rope_scaling": llama3}),
              "qwen2 (trained BPE)": (bpe, {**llama, "qkv_bias": True, "tie_word_embeddings": True})}
    for label, (tok, kw) in shapes.items():
        config = GPTConfig(vocab_size=tok.vocab_size, n_positions=256, n_embd=256, n_layer=4, n_head=8, **kw)
        model = spread(GPT(config))
        directory = work / label.split()[0]
        save_model(model, directory, tok)
        yield label, directory, tok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=32, help="greedy tokens compared")
    ap.add_argument("--no-install", action="store_true", help="do not pip install llama-cpp-python")
    args = ap.parse_args()
    llama_cpp = ensure_llama_cpp(not args.no_install)
    from gptkit.cli import main as gptkit
    from gptkit.hf import load_model
    torch.set_num_threads(2)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"llama-cpp-python {llama_cpp.__version__}, torch {torch.__version__}, {args.tokens} greedy tokens, {cpu}")
    print(f"{'model':<27}{'quant':>6}{'MB':>8}{'ids':>5}{'greedy':>9}{'max|dlogit|/scale':>19}{'llama.cpp tok/s':>17}")
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-gguf-") as tmp:
        for label, directory, tok in models(Path(tmp)):
            model = load_model(directory)
            ids = tok.encode(PROMPT)
            with torch.no_grad():
                ours_logits = model(torch.tensor([ids]))[0].numpy()
                ours = model.generate(torch.tensor([ids]), max_new_tokens=args.tokens, do_sample=False)[0, len(ids):]
            ours = ours.tolist()
            for quant in ("f32", "f16", "q8_0"):
                out = Path(tmp) / f"{directory.name}-{quant}.gguf"
                if gptkit(["export", str(directory), str(out), "--quantize", quant]) != 0:
                    sys.exit(f"export of {label} as {quant} failed")
                llm = llama_cpp.Llama(model_path=str(out), n_ctx=256, n_threads=2, n_batch=256, logits_all=True,
                                      verbose=False)
                same_ids = llm.tokenize(PROMPT.encode(), add_bos=False, special=False) == ids
                t = time.perf_counter()
                theirs = []
                for token in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
                    theirs.append(int(token))
                    if len(theirs) == len(ours):
                        break
                tps = len(theirs) / (time.perf_counter() - t)
                llm.reset()
                llm.eval(ids)
                diff = np.abs(np.array(llm.scores[: len(ids)]) - ours_logits).max() / np.abs(ours_logits).max()
                agree = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), len(ours))
                print(f"{label:<27}{quant:>6}{out.stat().st_size / 1e6:>8.1f}{'same' if same_ids else 'DIFF':>5}"
                      f"{agree:>5}/{len(ours):<3}{diff:>19.2e}{tps:>17.0f}", flush=True)
                if quant == "f32" and (not same_ids or agree != len(ours)):
                    failed = True
                del llm
    print("f32 parity:", "FAILED" if failed else "every f32 file decodes gptkit's greedy tokens exactly")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
