"""Run a task: examples -> prompts -> batched generation -> a resumable JSONL of outputs.

    run_task(model, tokenizer, examples, template, "out.jsonl", batch_size=16,
             generation=dict(max_new_tokens=64, num_beams=4))

One line per example: {"index", "origin", "source", "prompt", "output", "finish_reason"} plus
"target" when the example has one and "outputs" (all candidates) when -n > 1.

Every prompt is built and measured before anything is written, so bad input fails with nothing
half-written; a prompt that does not fit the model's context beside max_new_tokens is refused
(on_long="error", naming the line) or its source is cut from the end to fit (on_long="truncate",
with one warning that counts them). Prompts are generated longest first in ragged, left-padded
batches; each finished batch is appended to `out` and fsynced, so a killed run keeps whole lines
only (at most a cut last line, dropped on restart). Running the same command again continues
with the examples not yet in the file (a sidecar `out.run.json` holds the settings, and a
different model, template or option is refused rather than mixed in); once every example is
done the file is rewritten in input order (atomically).
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptkit.errors import GptkitError

from .data import Example, read_records
from .templates import Template

ON_LONG = ("error", "truncate")


@dataclass
class Prepared:
    index: int
    example: Example
    prompt: str
    n_tokens: int
    truncated: bool


def fit_prompts(examples: Sequence[Example], template: Template, tokenizer: Any, n_ctx: int, max_new_tokens: int,
                shots: Sequence[Example] = (), on_long: str = "error") -> list[Prepared]:
    """Render and measure every prompt; apply the context rule (see the module doc)."""
    if on_long not in ON_LONG:
        raise GptkitError(f"--on-long must be one of {', '.join(ON_LONG)}, got {on_long!r}")
    budget = n_ctx - max_new_tokens
    if budget < 1:
        raise GptkitError(f"--max-new-tokens {max_new_tokens} leaves no room for a prompt in the model's "
                          f"context of {n_ctx} tokens")
    out = []
    for i, ex in enumerate(examples):
        prompt = template.render(ex.source, shots)
        n = len(tokenizer.encode(prompt))
        cut = False
        if n > budget:
            if on_long == "error":
                raise GptkitError(f"{ex.origin}: the prompt is {n} tokens, more than the {budget} that the model's "
                                  f"context ({n_ctx}) leaves beside --max-new-tokens {max_new_tokens}; pass "
                                  "--on-long truncate to cut long sources")
            prompt, n = _truncate(ex.source, template, tokenizer, shots, budget, ex.origin)
            cut = True
        out.append(Prepared(i, ex, prompt, n, cut))
    return out


def _truncate(source: str, template: Template, tokenizer: Any, shots: Sequence[Example], budget: int,
              origin: str) -> tuple[str, int]:
    """Cut the source (from its end) until its prompt fits in `budget` tokens."""
    src_ids = tokenizer.encode(source)
    overhead = len(tokenizer.encode(template.render("", shots)))
    keep = min(len(src_ids), budget - overhead)
    while keep > 0:
        prompt = template.render(tokenizer.decode(src_ids[:keep]), shots)
        n = len(tokenizer.encode(prompt))
        if n <= budget:
            return prompt, n
        keep -= max(1, n - budget)
    raise GptkitError(f"{origin}: the template (with its k-shot examples) alone takes {overhead} tokens, more "
                      f"than the {budget} the context leaves for the prompt; use fewer --shots")


def is_task_output(p: Path) -> bool:
    """An empty file, or one whose first line is an output line this command writes."""
    with open(p, encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), None)
    if first is None:
        return True
    row = json.loads(first)
    return isinstance(row, dict) and "index" in row and "output" in row


def check_out(out: str | os.PathLike, inputs: Sequence[str | os.PathLike | None] = ()) -> Path:
    """--out may be written: not an input, and new or outputs of this command (to continue or,
    with --overwrite, replace). Returns the path to write."""
    from gptkit.outputs import output_file
    return output_file(out, "out", inputs=inputs, ours=is_task_output, what="task output")


def _read_done(out: Path) -> dict[int, dict[str, Any]]:
    """The complete lines of an earlier (possibly killed) run; a cut last line is dropped."""
    if not out.exists():
        return {}
    data = out.read_bytes()
    good_end = data.rfind(b"\n") + 1
    done: dict[int, dict[str, Any]] = {}
    for k, line in enumerate(data[:good_end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            done[int(row["index"])] = row
        except (ValueError, KeyError, TypeError, RecursionError):
            raise GptkitError(f"{out}:{k}: not a line this command wrote; choose another --out or pass --overwrite") from None
    if good_end < len(data):  # a line cut by a kill: drop it so appends start on a line boundary
        with open(out, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
    return done


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    """The settings an earlier run wrote beside its outputs; None if missing or not what it wrote."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return old if isinstance(old, dict) else None


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def run_task(model: Any, tokenizer: Any, examples: Sequence[Example], template: Template, out: str | os.PathLike,
             *, generation: dict[str, Any] | None = None, shots: Sequence[Example] = (), batch_size: int = 16,
             on_long: str = "error", overwrite: bool = False, progress: bool = True, prefix_cache: bool = True,
             settings: dict[str, Any] | None = None, inputs: Sequence[str | os.PathLike | None] = ()) -> dict[str, Any]:
    """Run the task over the examples into `out` (see the module doc). Returns a summary dict:
    {"done", "resumed", "generated", "truncated", "out"}. inputs: the files the examples came from
    (`out` is never one of them). prefix_cache: one PrefixCache for the run, so the k-shot part
    every prompt starts with is computed once (outputs are the same without it)."""
    from gptkit.engine import PrefixCache
    from gptkit.generate import generate_text

    if batch_size < 1:
        raise GptkitError(f"--batch-size must be >= 1, got {batch_size}")
    gen = {"max_new_tokens": 64, **(generation or {})}
    if "stop" not in gen or gen["stop"] is None:
        gen["stop"] = list(template.stop) or None
    from gptkit.generate import make_config
    make_config(**gen)  # bad options fail before anything is written
    n_ctx = model.config.n_positions
    prepared = fit_prompts(examples, template, tokenizer, n_ctx, gen["max_new_tokens"], shots, on_long)
    cut = [p for p in prepared if p.truncated]
    if cut:
        warnings.warn(f"{len(cut)} source(s) cut to fit the model's context of {n_ctx} tokens "
                      f"(first: {cut[0].example.origin})", stacklevel=2)
    out = check_out(out, inputs)
    sidecar = out.with_name(out.name + ".run.json")
    fingerprint = {"template": template.prompt, "target_prefix": template.target_prefix,
                   "shots": [[s.source, s.target] for s in shots], "generation": gen, "n_examples": len(examples),
                   **(settings or {})}
    fingerprint = json.loads(json.dumps(fingerprint, default=str))
    if overwrite:
        for p in (out, sidecar):
            if p.exists():
                p.unlink()
    done = _read_done(out)
    if done:
        old = _read_sidecar(sidecar)
        if old is None:
            raise GptkitError(f"{out} holds {len(done)} outputs but not the settings they were made with ({sidecar.name} "
                              "is missing or unreadable), so they cannot be continued; pass --overwrite to start "
                              "again or choose another --out")
        if old != fingerprint:
            changed = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
            raise GptkitError(f"{out} holds outputs of a run with other settings ({', '.join(changed) or 'unknown'}); "
                              "pass --overwrite to start again or choose another --out")
        for i, row in done.items():
            if i >= len(prepared) or row.get("source") != prepared[i].example.source:
                raise GptkitError(f"{out}: line for example {i} does not match the input; pass --overwrite "
                                  "or choose another --out")
    else:
        _atomic_write_text(sidecar, json.dumps(fingerprint, indent=1, ensure_ascii=False) + "\n")
    todo = sorted((p for p in prepared if p.index not in done), key=lambda p: (-p.n_tokens, p.index))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(prepared), initial=len(done), desc=template.name, unit="ex", dynamic_ncols=True,
                   file=sys.stderr)
    n_seq = int(gen.get("num_return_sequences", 1))
    seed = gen.pop("seed", None)
    generated = 0
    prefix = PrefixCache(model) if prefix_cache else False
    with open(out, "a", encoding="utf-8") as f:
        for b in range(0, len(todo), batch_size):
            batch = todo[b:b + batch_size]
            kw = dict(gen)
            if seed is not None:  # a per-batch seed from the batch's first example: reproducible
                kw["seed"] = int(seed) * 1_000_003 + batch[0].index
            results = generate_text(model, tokenizer, [p.prompt for p in batch], prefix_cache=prefix, **kw)
            lines = []
            for j, p in enumerate(batch):
                cands = results[j * n_seq:(j + 1) * n_seq]
                row: dict[str, Any] = {"index": p.index, "origin": p.example.origin, "source": p.example.source,
                                       "prompt": p.prompt, "output": cands[0]["text"].strip(),
                                       "finish_reason": cands[0]["finish_reason"]}
                if n_seq > 1:
                    row["outputs"] = [c["text"].strip() for c in cands]
                if p.example.target is not None:
                    row["target"] = p.example.target
                if p.truncated:
                    row["truncated"] = True
                lines.append(json.dumps(row, ensure_ascii=False) + "\n")
                done[p.index] = row
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
            generated += len(batch)
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    if len(done) == len(prepared) and generated:  # finished: the file in input order
        _atomic_write_text(out, "".join(json.dumps(done[i], ensure_ascii=False) + "\n" for i in range(len(prepared))))
    return {"done": len(done), "resumed": len(prepared) - len(todo), "generated": generated,
            "truncated": len(cut), "out": str(out)}


def read_outputs(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The lines of a task output file, in index order, checked: text "output" (and "source",
    "outputs" when present), a whole-number "index" that no other line has."""
    path = Path(path)
    if path.is_dir():
        raise GptkitError(f"{path}: a directory, not a file of outputs (give the .jsonl that summarize/translate wrote)")
    if not path.is_file():
        raise GptkitError(f"{path}: no such file")
    rows, seen = [], {}
    for k, row in read_records(path, "jsonl"):
        _check_row(row, f"{path}:{k}")
        index = row.get("index", len(rows))
        if index in seen:
            raise GptkitError(f"{path}:{k}: index {index} again (line {seen[index]} has it): each example once")
        seen[index] = k
        rows.append(row)
    rows.sort(key=lambda r: r.get("index", 0))
    return rows


def _check_row(row: dict[str, Any], where: str) -> None:
    def kind(v: Any) -> str:
        return "null" if v is None else type(v).__name__
    if "output" not in row:
        raise GptkitError(f"{where}: no \"output\" field (expected a line written by gptkit summarize/translate)")
    if not isinstance(row["output"], str):
        raise GptkitError(f"{where}: \"output\" is {kind(row['output'])}, not text")
    for key in ("source", "target"):
        if key in row and not isinstance(row[key], str):
            raise GptkitError(f"{where}: \"{key}\" is {kind(row[key])}, not text")
    outs = row.get("outputs")
    if outs is not None and not (isinstance(outs, list) and all(isinstance(o, str) for o in outs)):
        raise GptkitError(f"{where}: \"outputs\" must be a list of texts")
    index = row.get("index")
    if "index" in row and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
        raise GptkitError(f"{where}: \"index\" is {index!r}, not a whole number >= 0")
