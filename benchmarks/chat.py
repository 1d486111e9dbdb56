"""A chat model from what this machine has: pretrain a small GPT, fine-tune it on conversations
(`gptkit finetune --task chat`), and score it on conversations from held-out sources.

    python benchmarks/chat.py                                          # about 40 minutes on 2 cores
    python benchmarks/chat.py --pretrain-minutes 3 --finetune-minutes 3 --limit 100   # a quick look

Conversations (data/chat/): English -> German message pairs from the gettext catalogs installed
here (benchmarks/task_corpora.py build_po; each catalog's licence is its package's, listed in
data/chat/po/sources.json), turned into two instruction kinds:

    translate   user "Translate into German: Open the file"          -> assistant "Datei öffnen"
    followup    user "Translate into German: A" -> "A'", then user "And this one: B" -> "B'"
                (the second turn says only "this one": the instruction is in the first)

Held out by source: every pair of the test catalogs (a seeded tenth of the catalogs, by name)
is in test.jsonl only; the pretraining text and the fine-tuning data come from the other
catalogs. Scored (chrF, sacrebleu) on the last assistant turn of each test conversation, per
kind: the chat model, the base model given the same template (ChatML tokens added with the mean
rows, so it sees exactly the chat model's prompt), and copy-the-input (the English text), with
paired-bootstrap 95% intervals of the differences. A two-turn transcript with the chat model is
printed as it came out. Results: runs/chat/results.json.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

ASK, MORE = "Translate into German: ", "And this one: "
TEST_SHARE = 0.1
UNCAPPED = "1000000000"


def gptkit(*args: str) -> None:
    print("$ gptkit " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "gptkit", *args], check=True, cwd=ROOT,
                   env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})


def conversations(data: Path) -> None:
    """data/chat/{train,test}.jsonl and pretrain.jsonl from the catalogs' pairs (see the module doc)."""
    if (data / "test.jsonl").exists():
        return
    import task_corpora

    from gptkit.tasks.data import split_of
    if not (data / "po" / "pairs.jsonl").exists():
        task_corpora.build_po("de", data / "po")
    pairs = [json.loads(line) for line in open(data / "po" / "pairs.jsonl", encoding="utf-8")]
    by_source: dict[str, list[dict]] = {}
    for p in pairs:
        by_source.setdefault(p["origin"], []).append(p)
    rng = random.Random(0)
    out: dict[str, list[dict]] = {"train": [], "test": []}
    text: list[str] = []
    for origin, rows in sorted(by_source.items()):
        split = "test" if split_of(origin, 0.0, TEST_SHARE, 0) == "test" else "train"
        rng.shuffle(rows)
        i = 0
        while i < len(rows):
            a = rows[i]
            turns = [{"role": "user", "content": ASK + a["source"]}, {"role": "assistant", "content": a["target"]}]
            kind = "translate"
            if i + 1 < len(rows) and i % 3 == 2:
                b = rows[i + 1]
                turns += [{"role": "user", "content": MORE + b["source"]}, {"role": "assistant", "content": b["target"]}]
                kind, i = "followup", i + 1
            out[split].append({"messages": turns, "kind": kind, "group": origin})
            i += 1
        if split == "train":
            text += [r["source"] for r in rows] + [r["target"] for r in rows]
    rng.shuffle(text)
    for name, rows in out.items():
        with open(data / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    with open(data / "pretrain.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in text)
    tests = sorted({r["group"] for r in out["test"]})
    print(f"conversations: {len(out['train'])} train, {len(out['test'])} test from {len(tests)} held-out catalogs "
          f"({', '.join(tests)})")


def replies(model, tok, convs: list[dict], batch: int, max_new: int) -> list[str]:
    """The greedy reply to each conversation's last user turn."""
    from gptkit.chat.template import chat_template, end_of_turn
    from gptkit.generate import generate_text
    template = chat_template(tok)
    prompts = [tok.encode_special(template.render(c["messages"][:-1], True)) for c in convs]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outs: dict[int, str] = {}
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        res = generate_text(model, tok, [prompts[i] for i in idx], max_new_tokens=max_new,
                            eos_token_id=end_of_turn(tok))
        outs.update({i: r["text"].strip() for i, r in zip(idx, res)})
    return [outs[i] for i in range(len(convs))]


def score(runs: Path, data: Path, limit: int, batch: int) -> dict:
    import torch

    from gptkit import load_model
    from gptkit.chat.template import make_chat_ready
    from gptkit.tasks.score import paired_bootstrap
    from gptkit.tasks.score import score as metric
    torch.set_grad_enabled(False)
    test = [json.loads(line) for line in open(data / "test.jsonl", encoding="utf-8")]
    chat = load_model(runs / "sft" / "best")
    base = load_model(runs / "base")
    make_chat_ready(base, base.tokenizer)
    results: dict = {}
    for kind in ("translate", "followup"):
        convs = [c for c in test if c["kind"] == kind][:limit]
        refs = [c["messages"][-1]["content"] for c in convs]
        t0 = time.time()
        systems = {"chat": replies(chat, chat.tokenizer, convs, batch, 48),
                   "base": replies(base, base.tokenizer, convs, batch, 48),
                   "copy": [c["messages"][-2]["content"].removeprefix(ASK).removeprefix(MORE) for c in convs]}
        row = {name: metric(h, refs, ["chrf"])["chrf"] for name, h in systems.items()}
        row["n"] = len(convs)
        for other in ("base", "copy"):
            row[f"chat-{other}"] = paired_bootstrap("chrf", systems[other], systems["chat"], refs)
        row["seconds"] = round(time.time() - t0, 1)
        results[kind] = row
        print(kind, json.dumps(row), flush=True)
    results["transcript"] = transcript(chat)
    return results


def transcript(model) -> list[dict]:
    """A short two-turn conversation with the chat model, as it came out."""
    tok = model.tokenizer
    messages: list[dict] = []
    for text in (ASK + "Open the file", MORE + "Save all changes before closing"):
        messages.append({"role": "user", "content": text})
        messages.append({"role": "assistant", "content": replies(model, tok, [{"messages": messages + [{}]}], 1, 48)[0]})
    return messages


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pretrain-minutes", type=float, default=20.0)
    ap.add_argument("--finetune-minutes", type=float, default=12.0)
    ap.add_argument("--preset", default="mini", help="the pretrained model's preset")
    ap.add_argument("--limit", type=int, default=300, help="test conversations scored per kind")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args(argv)
    data, runs = ROOT / "data" / "chat", ROOT / "runs" / "chat"
    data.mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    conversations(data)
    if not (data / "prepared" / "meta.json").exists():
        gptkit("prepare", str(data / "pretrain.jsonl"), "--field", "text", "--tokenizer", "bpe", "--vocab-size", "4096",
               "--out", str(data / "prepared"))
    if not (runs / "base" / "model.safetensors").exists():
        gptkit("train", "--data", str(data / "prepared"), "--out", str(runs / "base"), "--preset", args.preset,
               "--block-size", "128", "--batch-size", "16", "--max-iters", UNCAPPED, "--max-minutes",
               str(args.pretrain_minutes), "--eval-interval", "200", "--warmup-iters", "50", "--log-interval", "50",
               "--samples", "0", "-q")
    if not (runs / "sft" / "best").exists():
        gptkit("finetune", "--task", "chat", "--data", str(data / "train.jsonl"), "--init-from", str(runs / "base"),
               "--out", str(runs / "sft"), "--val-fraction", "0.05", "--test-fraction", "0", "--block-size", "192",
               "--batch-size", "16", "--lr", "1e-3", "--warmup-iters", "30", "--max-iters", UNCAPPED, "--max-minutes",
               str(args.finetune_minutes), "--eval-interval", "100", "--eval-iters", "10", "--patience", "4",
               "--score-examples", "100", "--mix", f"{data / 'prepared'}:0.2", "--no-progress")
    results = score(runs, data, args.limit, args.batch)
    results["settings"] = vars(args)
    (runs / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(results["transcript"], indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
