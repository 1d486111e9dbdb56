"""Benchmarks of issue 21, on a multiple-choice task built from what this machine has: for a
function of an installed third-party package (never in the standard-library training corpus), pick
the first line of its docstring among four (three from other functions of the same package).

    python benchmarks/bench_evals.py speed [--questions 500] [--batch-size 32]
    python benchmarks/bench_evals.py demo [--minutes 4 10] [--questions 500]

speed: a GPT-2 124M-shaped model with random weights (built with transformers, nothing
downloaded), scored through lm-evaluation-harness by lm-eval's own `hf` model and by gptkit's
model on the same files and the same local YAML task, in one run: seconds, questions/s, the ratio,
and whether the accuracies and per-choice log-likelihoods agree.

demo: `gptkit train --preset cpu-4min` (the `make run` model), scored on which line of code comes
next among four (nextline_mc), on the true next line among it and three copies with its words
shuffled (wordorder_mc), or on the docstring task (docstring_mc), and the same recipe trained longer,
each with `--eval-tasks` on the task, so that the accuracy at every evaluation lands in
metrics.jsonl and loss.png beside the loss.
"""
from __future__ import annotations

import argparse
import ast
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PACKAGES = ("numpy", "requests", "click", "tqdm", "matplotlib", "urllib3", "jinja2", "yaml")


def _functions(package: str) -> list[tuple[str, str]]:
    """(the function's def line and docstring opener, the docstring's first line) per documented
    function of an installed package."""
    import importlib.util
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    out = []
    for path in sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.py")):
        if "test" in path.parts[-1] or "tests" in path.parts:
            continue
        try:
            src = path.read_text(encoding="utf-8")
            tree = ast.parse(src)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        lines = src.splitlines()
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            first = doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""
            if not 20 <= len(first) <= 120 or node.body[0].lineno - 1 >= len(lines):
                continue
            head = "\n".join(lines[node.lineno - 1:node.body[0].lineno - 1])  # the def line(s)
            indent = " " * (len(lines[node.body[0].lineno - 1]) - len(lines[node.body[0].lineno - 1].lstrip()))
            out.append((f"{head}\n{indent}\"\"\"", first))
    return out


def _next_lines(package: str, rng: random.Random, per_file: int = 3) -> list[tuple[str, str, list[str]]]:
    """(up to 8 lines of code, the next line without its indentation, 3 other lines of the same
    file) from an installed package. The context ends with the next line's indentation less one
    space, which the scorer's " " delimiter completes: every choice is read at that indentation."""
    import importlib.util
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    out = []
    for path in sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.py")):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        good = [i for i, ln in enumerate(lines) if i >= 8 and len(ln.strip()) >= 12 and ln.startswith("    ")
                and not ln.strip().startswith("#")]
        pool = sorted({lines[i].strip() for i in good})
        if len(pool) < 8:
            continue
        for i in rng.sample(good, min(per_file, len(good))):
            line = lines[i]
            indent = line[:len(line) - len(line.lstrip())]
            wrong = rng.sample([w for w in pool if w != line.strip()], 3)
            out.append(("\n".join(lines[i - 8:i]) + "\n" + indent[:-1], line.strip(), wrong))
    return out


def build_nextline_task(path: Path, questions: int, seed: int = 0) -> int:
    """A JSONL of {context, choices, label}: pick a line of code that comes next among four."""
    rng = random.Random(seed)
    return _write_mc(path, [it for p in PACKAGES for it in _next_lines(p, rng)], questions, rng)


def _write_mc(path: Path, items: list[tuple[str, str, list[str]]], questions: int, rng: random.Random) -> int:
    """Up to `questions` of (context, right, three wrong) as JSONL {context, choices, label}."""
    rows = []
    for ctx, right, wrong in rng.sample(items, min(questions, len(items))):
        label = rng.randrange(4)
        rows.append({"context": ctx, "choices": wrong[:label] + [right] + wrong[label:], "label": label})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def _shuffled(line: str, rng: random.Random, n: int = 3) -> list[str] | None:
    """n distinct copies of a line of code with its words (runs split at spaces) in another order,
    or None when the line has too few distinct orders."""
    words, out = line.split(" "), set()
    for _ in range(50):
        w = words[:]
        rng.shuffle(w)
        if (cand := " ".join(w)) != line:
            out.add(cand)
        if len(out) == n:
            return sorted(out)
    return None


def build_wordorder_task(path: Path, questions: int, seed: int = 0) -> int:
    """A JSONL of {context, choices, label}: the true next line of code among it and three copies of
    it with its words shuffled (same characters, same length: only the order tells them apart)."""
    rng = random.Random(seed)
    items = [(ctx, right, wrong) for p in PACKAGES for ctx, right, _ in _next_lines(p, rng)
             if len(right.split(" ")) >= 4 and (wrong := _shuffled(right, rng))]
    return _write_mc(path, items, questions, rng)


TASKS = {"nextline_mc": build_nextline_task, "wordorder_mc": build_wordorder_task}


def build_task(path: Path, questions: int, seed: int = 0) -> int:
    """A JSONL of {context, choices, label}: `questions` functions spread over PACKAGES."""
    rng = random.Random(seed)
    rows = []
    pools = {p: _functions(p) for p in PACKAGES}
    pools = {p: f for p, f in pools.items() if len(f) >= 8}
    picks = {p: rng.sample(f, len(f)) for p, f in pools.items()}  # each package's functions, shuffled
    taken = {p: 0 for p in pools}
    while len(rows) < questions and any(taken[p] < len(picks[p]) for p in pools):
        for p in pools:  # round robin: every package as evenly as its size allows
            if taken[p] < len(picks[p]) and len(rows) < questions:
                ctx, first = picks[p][taken[p]]
                taken[p] += 1
                wrong = rng.sample(sorted({f for _, f in pools[p] if f != first}), 3)
                label = rng.randrange(4)
                rows.append({"context": ctx, "choices": wrong[:label] + [first] + wrong[label:], "label": label})
    rng.shuffle(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def _yaml(task_jsonl: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "docstring_mc.yaml").write_text(
        "task: docstring_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {task_jsonl}\ntest_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: '{{context}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: label\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")


def _model_124m(directory: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from gptkit.tokenizer import gpt2_tokenizer
    if not (directory / "model.safetensors").is_file():
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).eval().save_pretrained(directory)
        gpt2_tokenizer().save(directory)
    return directory


def speed(args: argparse.Namespace) -> None:
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from gptkit.evals.harness import GptkitLM
    torch.set_num_threads(torch.get_num_threads())
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_evals_"))
    work.mkdir(parents=True, exist_ok=True)
    n = build_task(work / "task.jsonl", args.questions)
    _yaml(work / "task.jsonl", work / "tasks")
    model = _model_124m(work / "gpt2-124m")
    tm = TaskManager(include_path=str(work / "tasks"), include_defaults=False)
    runs = {}
    for name in args.order:
        t = time.perf_counter()
        if name == "hf":
            r = simple_evaluate(model="hf", model_args=f"pretrained={model},dtype=float32", tasks=["docstring_mc"],
                                task_manager=tm, device="cpu", batch_size=args.batch_size, log_samples=True)
        else:
            lm = GptkitLM(pretrained=str(model), dtype="float32", batch_size=args.batch_size)
            r = simple_evaluate(model=lm, tasks=["docstring_mc"], task_manager=tm, log_samples=True)
        runs[name] = (time.perf_counter() - t, r)
    (th, rh), (tg, rg) = runs["hf"], runs["gptkit"]
    diff = max(abs(a[0][0] - b[0][0]) for x, y in zip(rh["samples"]["docstring_mc"], rg["samples"]["docstring_mc"])
               for a, b in zip(x["resps"], y["resps"]))
    same = all(rh["results"]["docstring_mc"][m] == rg["results"]["docstring_mc"][m] for m in ("acc,none", "acc_norm,none"))
    print(f"{n} questions x 4 choices, GPT-2 124M shape, fp32, batch size {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    print(f"lm-eval hf model:     {th:7.1f} s  {n / th:6.2f} questions/s")
    print(f"gptkit lm-eval model: {tg:7.1f} s  {n / tg:6.2f} questions/s")
    print(f"gptkit / hf: {th / tg:.2f}x faster; same accuracy: {same}; "
          f"largest per-choice log-likelihood difference: {diff:.2e}")


def demo(args: argparse.Namespace) -> None:
    work = Path(args.work or "runs/bench_evals")
    work.mkdir(parents=True, exist_ok=True)
    task = work / f"{args.task}.jsonl"
    n = TASKS.get(args.task, build_task)(task, args.questions)
    print(f"task: {task} ({n} questions, 4 choices, chance 0.25)")
    for minutes in args.minutes:
        out = work / f"cpu-4min-{minutes}min"
        cmd = [sys.executable, "-m", "gptkit", "train", "--preset", "cpu-4min", "--max-minutes", str(minutes),
               "--eval-tasks", str(task), "--out", str(out)]
        print("$", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        accs = [(r["step"], r[k]) for r in rows for k in r if k.endswith(f"{args.task}/acc")]
        if accs:
            print(f"{minutes} min: {args.task} acc by step " + ", ".join(f"{s}: {a:.3f}" for s, a in accs[:: max(len(accs) // 8, 1)])
                  + f" ... final {accs[-1][1]:.3f} (step {accs[-1][0]}); plot: {out / 'loss.png'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--questions", type=int, default=500)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--order", nargs=2, default=["gptkit", "hf"], choices=["gptkit", "hf"])
    s.add_argument("--work", default=None)
    d = sub.add_parser("demo")
    d.add_argument("--minutes", type=float, nargs="+", default=[4, 10])
    d.add_argument("--questions", type=int, default=500)
    d.add_argument("--task", default="nextline_mc", choices=[*TASKS, "docstring_mc"])
    d.add_argument("--work", default=None)
    args = p.parse_args()
    speed(args) if args.what == "speed" else demo(args)


if __name__ == "__main__":
    main()
