"""A chat model from what this machine has: pretrain a small GPT, fine-tune it on conversations
(`gptkit finetune --task chat --mix`), and score it on conversations from held-out sources.

    flock /tmp/cpu.lock python benchmarks/chat.py              # about 20 minutes on 2 cores
    python benchmarks/chat.py --out runs/chat-smoke --pretrain-minutes 1 --finetune-minutes 1 --limit 20

Conversations (DATA, default data/chat/): English -> German message pairs from the gettext
catalogs installed here (benchmarks/task_corpora.py build_po; each catalog's licence is its
package's, listed in DATA/po/sources.json), turned into two instruction kinds:

    translate   user "Translate into German: Open the file"          -> assistant "Datei öffnen"
    followup    user "Translate into German: A" -> "A'", then user "And this one: B" -> "B'"
                (the second turn says only "this one": the instruction is in the first)

Held out by source: every pair of the test catalogs (a seeded tenth of the catalogs, by name)
is in test.jsonl only; the pretraining text (each train catalog's English and German strings,
unpaired and shuffled) and the fine-tuning conversations come from the other catalogs. Scored
(chrF, sacrebleu) on the last assistant turn of each test conversation, per kind, greedy: the chat
model; the base model given the same template (ChatML's tokens added with the mean rows, so it
sees exactly the chat model's prompt); the base model prompted as base models are (three training
pairs in plain text, then the English: base-3-shot); copy-the-input (the English text of the last
user turn); and, for followup, repeat-the-first-reply. Paired-bootstrap 95% intervals of chat
minus each.
A short conversation with `gptkit chat` in a pseudo-terminal is kept as it came out.
Results: OUT/results.json (OUT default runs/chat/); a finished step is reused on a rerun.
"""
from __future__ import annotations

import argparse
import json
import os
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
TRANSCRIPT = (ASK + "Open the file", MORE + "Save all changes before closing", MORE + "Print the document")


def gptkit(*args: str) -> None:
    print("$ gptkit " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "gptkit", *args], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})


def conversations(data: Path) -> None:
    """DATA/{train,test}.jsonl and pretrain.jsonl from the catalogs' pairs (see the module doc)."""
    if (data / "test.jsonl").exists():
        return
    import task_corpora

    from gptkit.files import write_text
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
        out[split] += _conversations(rows, origin)
        if split == "train":
            text += [r["source"] for r in rows] + [r["target"] for r in rows]
    rng.shuffle(text)
    write_text(data / "pretrain.jsonl", "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in text))
    for name in ("train", "test"):  # test.jsonl last: its presence says the step is done
        write_text(data / f"{name}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out[name]))
    tests = sorted({r["group"] for r in out["test"]})
    print(f"conversations: {len(out['train'])} train, {len(out['test'])} test from {len(tests)} held-out catalogs "
          f"({', '.join(tests)})", flush=True)


def _conversations(rows: list[dict], origin: str) -> list[dict]:
    """A catalog's pairs as conversations: one in three followup (two turns), the rest translate."""
    out, i = [], 0
    while i < len(rows):
        a = rows[i]
        turns = [{"role": "user", "content": ASK + a["source"]}, {"role": "assistant", "content": a["target"]}]
        kind = "translate"
        if i + 1 < len(rows) and i % 3 == 2:
            b = rows[i + 1]
            turns += [{"role": "user", "content": MORE + b["source"]}, {"role": "assistant", "content": b["target"]}]
            kind, i = "followup", i + 1
        out.append({"messages": turns, "kind": kind, "group": origin})
        i += 1
    return out


def replies(model, tok, convs: list[dict], batch: int, max_new: int) -> list[str]:
    """The greedy reply to each conversation's last user turn (shortest prompts batched together)."""
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


def few_shot(model, train: list[dict], convs: list[dict], batch: int, max_new: int, shots: int = 3) -> list[str]:
    """The base model prompted as a base model is: `shots` training pairs in plain text
    ("English: ...\nGerman: ...", from as many catalogs), then the English of the last user turn;
    greedy, up to the line's end."""
    from gptkit.generate import generate_text
    tok, seen, lines = model.tokenizer, set(), []
    for c in train:
        if c["kind"] == "translate" and c["group"] not in seen and len(lines) < shots:
            seen.add(c["group"])
            lines.append(f"English: {c['messages'][0]['content'].removeprefix(ASK)}\n"
                         f"German: {c['messages'][1]['content']}\n\n")
    head = "".join(lines)
    english = baselines(convs, "translate")["copy"]
    prompts = [tok.encode(f"{head}English: {e}\nGerman:") for e in english]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outs: dict[int, str] = {}
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        res = generate_text(model, tok, [prompts[i] for i in idx], max_new_tokens=max_new, stop=["\n"])
        outs.update({i: r["text"].strip() for i, r in zip(idx, res)})
    return [outs[i] for i in range(len(convs))]


def baselines(convs: list[dict], kind: str) -> dict[str, list[str]]:
    """copy: the English of the last user turn; repeat (followup): the conversation's first reply."""
    out = {"copy": [c["messages"][-2]["content"].removeprefix(ASK).removeprefix(MORE) for c in convs]}
    if kind == "followup":
        out["repeat"] = [c["messages"][1]["content"] for c in convs]
    return out


def score(runs: Path, data: Path, limit: int, batch: int, max_new: int) -> dict:
    import torch

    from gptkit import load_model
    from gptkit.chat.template import make_chat_ready
    from gptkit.tasks.score import paired_bootstrap
    from gptkit.tasks.score import score as metric
    torch.set_grad_enabled(False)
    test = [json.loads(line) for line in open(data / "test.jsonl", encoding="utf-8")]
    train = [json.loads(line) for line in open(data / "train.jsonl", encoding="utf-8")]
    chat = load_model(runs / "sft" / "best")
    plain = load_model(runs / "base")
    base = load_model(runs / "base")
    make_chat_ready(base, base.tokenizer)
    results: dict = {}
    for kind in ("translate", "followup"):
        convs = [c for c in test if c["kind"] == kind][:limit]
        refs = [c["messages"][-1]["content"] for c in convs]
        t0 = time.time()
        systems = {"chat": replies(chat, chat.tokenizer, convs, batch, max_new),
                   "base": replies(base, base.tokenizer, convs, batch, max_new),
                   "base-3-shot": few_shot(plain, train, convs, batch, max_new), **baselines(convs, kind)}
        row: dict = {"n": len(convs), "chrf": {name: metric(h, refs, ["chrf"])["chrf"] for name, h in systems.items()}}
        row["chat_minus"] = {other: paired_bootstrap("chrf", systems[other], systems["chat"], refs)
                             for other in systems if other != "chat"}
        row["examples"] = [{"prompt": c["messages"][-2]["content"], "reference": r, "chat": h, "base": b,
                            "base-3-shot": f} for c, r, h, b, f in list(zip(convs, refs, systems["chat"], systems["base"],
                                                                           systems["base-3-shot"]))[:3]]
        row["base_empty"] = sum(not h for h in systems["base"])
        row["seconds"] = round(time.time() - t0, 1)
        results[kind] = row
        print(kind, json.dumps({k: v for k, v in row.items() if k != "examples"}), flush=True)
    return results


def transcript(model_dir: Path, max_new: int) -> str:
    """A conversation with `gptkit chat` (greedy) in a pseudo-terminal, as the terminal showed it."""
    import pexpect
    model_dir = model_dir.absolute()
    where = model_dir.parents[2]  # the model shown by its path under the runs folder: chat/sft/best
    child = pexpect.spawn(sys.executable, ["-m", "gptkit", "chat", "--model", str(model_dir.relative_to(where)),
                                           "--no-do-sample", "--max-new-tokens", str(max_new)], cwd=str(where),
                          encoding="utf-8",
                          env={**os.environ, "PYTHONPATH": str(ROOT), "TERM": "dumb"}, timeout=120,
                          dimensions=(50, 200))
    shown = []
    for line in (*TRANSCRIPT, "/quit"):
        child.expect_exact(">>> ")
        shown.append(child.before + child.after)
        child.sendline(line)
    child.expect(pexpect.EOF)
    shown.append(child.before)
    child.close()
    return "".join(shown).replace("\r\n", "\n")


def table(results: dict) -> str:
    """The README's table: chrF per kind and system, chat minus each other with its interval."""
    lines = ["| kind | n | system | chrF | chat − system [95% CI] |", "|---|---:|---|---:|---|"]
    for kind in ("translate", "followup"):
        row = results[kind]
        for name, value in row["chrf"].items():
            d = row["chat_minus"].get(name)
            diff = f"{d['diff']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}], p {d['p']:.3f}" if d else ""
            lines.append(f"| {kind} | {row['n']} | {name} | {value:.1f} | {diff} |")
    return "\n".join(lines)


def train(data: Path, runs: Path, args: argparse.Namespace) -> None:
    if not (data / "prepared" / "meta.json").exists():
        gptkit("prepare", str(data / "pretrain.jsonl"), "--field", "text", "--tokenizer", "bpe", "--vocab-size",
               str(args.vocab_size), "--out", str(data / "prepared"))
    if not (runs / "base" / "model.safetensors").exists():
        gptkit("train", "--data", str(data / "prepared"), "--out", str(runs / "base"), "--preset", args.preset,
               "--block-size", "128", "--batch-size", "16", "--max-iters", UNCAPPED, "--max-minutes",
               str(args.pretrain_minutes), "--eval-interval", "200", "--warmup-iters", "50", "--log-interval", "50",
               "--samples", "0", "-q")
    if not (runs / "sft" / "best").exists():
        gptkit("finetune", "--task", "chat", "--data", str(data / "train.jsonl"), "--init-from", str(runs / "base"),
               "--out", str(runs / "sft"), "--val-fraction", "0.05", "--test-fraction", "0", "--split-seed", "1",
               "--block-size", "192",
               "--batch-size", "16", "--lr", "1e-3", "--warmup-iters", "30", "--max-iters", UNCAPPED, "--max-minutes",
               str(args.finetune_minutes), "--eval-interval", "200", "--eval-iters", "10", "--patience", "4",
               "--score-examples", "100", "--mix", f"{data / 'prepared'}:{args.mix}", "--no-progress")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "chat", help="conversations and prepared text")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "chat", help="models and results.json")
    ap.add_argument("--pretrain-minutes", type=float, default=10.0)
    ap.add_argument("--finetune-minutes", type=float, default=8.0)
    ap.add_argument("--preset", default="mini", help="the pretrained model's preset")
    ap.add_argument("--vocab-size", type=int, default=4096, help="the BPE tokenizer trained on the pretraining text")
    ap.add_argument("--mix", type=float, default=0.2, help="share of fine-tuning rows of pretraining text")
    ap.add_argument("--limit", type=int, default=1000, help="test conversations scored per kind")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args(argv)
    from gptkit.files import write_text
    t0 = time.time()
    args.data.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    conversations(args.data)
    train(args.data, args.out, args)
    t1 = time.time()
    results = score(args.out, args.data, args.limit, args.batch, args.max_new_tokens)
    results["transcript"] = transcript(args.out / "sft" / "best", args.max_new_tokens)
    results["seconds"] = {"data_and_training": round(t1 - t0, 1), "scoring_and_transcript": round(time.time() - t1, 1),
                          "total": round(time.time() - t0, 1)}
    results["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    write_text(args.out / "results.json", json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    print(table(results))
    print(results["transcript"])
    print(f"total {results['seconds']['total'] / 60:.1f} min; results -> {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
