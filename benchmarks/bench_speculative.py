"""Speculative decoding on the code-summarization task (benchmarks/tasks.py's pydoc corpus): tokens/s
of greedy summaries of the test split, plain against n-gram drafting and a draft model, outputs
checked identical.

    python benchmarks/tasks.py --corpus pydoc --stages corpus,pretrain,finetune   # the target model
    python benchmarks/bench_speculative.py                                         # + a draft model (~4 min)

The draft model: the `tiny` preset pretrained on the same prepared text (same tokenizer) for
--draft-minutes and fine-tuned on the same pairs, kept in runs/tasks/pydoc/draft/. Each system
summarizes the same --limit test examples, one at a time (batch 1: where speculation pays), with
the task's prompt, stop string and --max-new-tokens; plain decoding at the task's batch size (16)
is printed beside them.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RUNS, DATA = ROOT / "runs" / "tasks" / "pydoc", ROOT / "data" / "tasks" / "pydoc"
SPLIT = ["--val-fraction", "0.05", "--test-fraction", "0.05", "--split-seed", "0"]


def gptkit(*args: str) -> None:
    print("$ gptkit " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "gptkit", *args], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT),
                                                                                         **__import__("os").environ})


def build_draft(minutes: float) -> Path:
    draft = RUNS / "draft"
    if not (draft / "pretrained" / "model.safetensors").exists():
        gptkit("train", "--data", str(DATA / "prepared"), "--out", str(draft / "pretrained"), "--preset", "tiny",
               "--block-size", "256", "--batch-size", "16", "--max-iters", "1000000000", "--max-minutes", str(minutes),
               "--eval-interval", "200", "--samples", "0", "-q")
    if not (draft / "finetuned" / "best").exists():
        gptkit("finetune", "--task", "summarize", "--data", str(DATA / "pairs.jsonl"), "--init-from",
               str(draft / "pretrained"), "--out", str(draft / "finetuned"), *SPLIT, "--block-size", "320",
               "--batch-size", "16", "--lr", "1e-3", "--max-iters", "1000000000", "--max-minutes", str(minutes / 2),
               "--eval-interval", "100", "--eval-iters", "10", "--on-long", "truncate", "--no-progress")
    return draft / "finetuned" / "best"


def prompts(tok, n_ctx: int, max_new: int, limit: int) -> tuple[list[str], tuple[str, ...]]:
    from gptkit.tasks.data import load_split
    from gptkit.tasks.run import fit_prompts
    from gptkit.tasks.templates import builtin
    template = builtin("summarize")
    exs = load_split(DATA / "pairs.jsonl", "test", val_fraction=0.05, test_fraction=0.05, seed=0)[:limit]
    return [p.prompt for p in fit_prompts(exs, template, tok, n_ctx, max_new, on_long="truncate")], template.stop


def run(model, tok, texts, batch: int, **kw) -> tuple[float, list[str], int]:
    from gptkit.generate import generate_text
    n, out, t0 = 0, [], time.perf_counter()
    for b in range(0, len(texts), batch):
        for r in generate_text(model, tok, texts[b:b + batch], **kw):
            n += len(r["token_ids"]) + (r["finish_reason"] == "eos")
            out.append(r["text"])
    return n / (time.perf_counter() - t0), out, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=100, help="test examples summarized by each system")
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--k", type=int, default=8, help="draft tokens per step")
    ap.add_argument("--draft-minutes", type=float, default=2.0)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    import gptkit
    target = RUNS / "finetuned" / "best"
    if not (target / "model.safetensors").exists():
        sys.exit(f"{target}: no model; run benchmarks/tasks.py --corpus pydoc --stages corpus,pretrain,finetune first")
    draft_dir = build_draft(args.draft_minutes)
    model = gptkit.load_model(target, dtype="float32").eval()
    draft = gptkit.load_model(draft_dir, dtype="float32").eval()
    tok = model.tokenizer
    texts, stop = prompts(tok, model.config.n_positions, args.max_new_tokens, args.limit)
    kw = dict(max_new_tokens=args.max_new_tokens, stop=list(stop) or None)
    print(f"target {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, draft "
          f"{sum(p.numel() for p in draft.parameters()) / 1e6:.1f}M; {len(texts)} test prompts; "
          f"{torch.get_num_threads()} threads", flush=True)
    run(model, tok, texts[:2], 1, **kw)  # warm-up
    base, ref, n = run(model, tok, texts, 1, **kw)
    rows = {"plain, batch 1": (base, True, n)}
    for name, extra in (("n-gram drafting", dict(speculative="ngram", num_speculative_tokens=args.k)),
                        ("draft model", dict(speculative=draft, num_speculative_tokens=min(args.k, 4)))):
        tps, out, n = run(model, tok, texts, 1, **kw, **extra)
        rows[name] = (tps, out == ref, n)
    tps, out, n = run(model, tok, texts, 16, **kw)
    rows["plain, batch 16 (the task's default)"] = (tps, out == ref, n)
    for name, (tps, same, n) in rows.items():
        print(f"{name:38s} {tps:8.1f} tokens/s  {tps / base:5.2f}x  outputs identical to plain: {same}  ({n} tokens)")
    if args.json:
        Path(args.json).write_text(json.dumps({k: {"tokens_per_s": v[0], "ratio": v[0] / base, "identical": v[1]}
                                               for k, v in rows.items()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
