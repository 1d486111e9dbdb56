"""`gptkit summarize | translate | finetune | score`: tasks (see gptkit/tasks/).

    gptkit summarize --model runs/x "A long text ..."                   # texts on the command line
    gptkit translate --model runs/y --target-lang German --data pairs.jsonl --split test --out out.jsonl
    gptkit finetune --task translate --data pairs.jsonl --init-from runs/y --out runs/y-ft --target-lang German
    gptkit score out.jsonl --task translate --baselines [--against other.jsonl]
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GptkitError
from .args import add_dataclass_args, from_args, override_default


@dataclass
class DataOptions:
    data: str | None = field(default=None, metadata={"help": "a file of examples: .jsonl (one JSON object a line), "
                                                              ".csv, .tsv or .parquet"})
    source_field: str = field(default="source", metadata={"help": "the field holding the input text"})
    target_field: str = field(default="target", metadata={"help": "the field holding the reference output"})
    split: str = field(default="all", metadata={"help": "which split of --data to use", "choices": ("all", "train", "val", "test")})
    val_fraction: float = field(default=0.05, metadata={"help": "share of --data in the validation split"})
    test_fraction: float = field(default=0.05, metadata={"help": "share of --data in the test split"})
    split_seed: int = field(default=0, metadata={"help": "seed of the train/val/test split (by a hash of each "
                                                          "example's group field, else its source)"})


@dataclass
class TemplateOptions:
    template: str | None = field(default=None, metadata={"help": "a prompt template file (a format string with "
                                                                  "{source}; or JSON, see gptkit/tasks/templates.py); "
                                                                  "default: the task's built-in"})
    source_lang: str | None = field(default=None, metadata={"help": "translate: the source language (name or code; "
                                                                     "default English)"})
    target_lang: str | None = field(default=None, metadata={"help": "translate: the target language (name or code)"})
    on_long: str = field(default="error", metadata={"help": "a source too long for the context: refuse, or cut it "
                                                           "from the end (with a warning)", "choices": ("error", "truncate")})


@dataclass
class RunOptions:
    model: str = field(default="", metadata={"help": "a run directory, a Hugging Face GPT-2 directory or a Hub id"})
    input: str | None = field(default=None, metadata={"help": "a text file: one source per line"})
    out: str | None = field(default=None, metadata={"help": "the output JSONL (resumable: rerun to continue); "
                                                           "default: print the outputs"})
    overwrite: bool = field(default=False, metadata={"help": "start --out again instead of continuing it"})
    shots: int = field(default=0, metadata={"help": "k-shot examples in the prompt, drawn from the train split of "
                                                   "--data (or --shots-from) only"})
    shots_from: str | None = field(default=None, metadata={"help": "a file of examples to draw --shots from "
                                                                  "(its train split)"})
    limit: int | None = field(default=None, metadata={"help": "only the first N examples"})
    batch_size: int = field(default=16, metadata={"help": "prompts generated together (ragged, left-padded)"})
    max_new_tokens: int = field(default=64, metadata={"help": "tokens generated at most per output"})
    num_beams: int = field(default=1, metadata={"help": "beam search with this many beams (1: greedy or sampling)"})
    do_sample: bool = field(default=False, metadata={"help": "sample instead of greedy/beam decoding"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_k: int = field(default=50, metadata={"help": "sample from the k likeliest tokens (0: all)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass"})
    num_return_sequences: int = field(default=1, metadata={"help": "candidates per source (-n; needs beams or sampling)"})
    seed: int | None = field(default=None, metadata={"help": "sampling seed"})
    stop: str | None = field(default=None, metadata={"help": "stop string (default: the template's, end of line)"})
    speculative: str | None = field(default=None, metadata={
        "help": "speculative decoding: ngram (drafts copied from the prompt) or a draft model directory with the "
                "same tokenizer; greedy outputs are unchanged (default: off)", "cli": {"metavar": "ngram|MODEL"}})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or auto"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    prefix_cache: bool = field(default=True, metadata={"help": "reuse the keys and values of prompt prefixes "
                                                              "(the k-shot examples) across examples"})


def _template(task: str, opts: Any) -> Any:
    from ..tasks.templates import builtin, load_template
    if opts.template:
        return load_template(opts.template, opts.source_lang, opts.target_lang or None)
    return builtin(task, opts.source_lang, opts.target_lang)


def _examples(args: argparse.Namespace, need_target: bool) -> list[Any]:
    from ..tasks.data import Example, load_split
    given = [s for s in (args.data, args.input, args.text or None) if s]
    if len(given) != 1:
        raise GptkitError("give the sources one way: texts as arguments, --input FILE (one per line) or --data FILE")
    if args.text:
        exs = [Example(t, None, f"argument {i + 1}") for i, t in enumerate(args.text)]
    elif args.input:
        p = Path(args.input)
        if p.is_dir():
            raise GptkitError(f"--input {p}: a directory, not a text file (one source per line)")
        if not p.is_file():
            raise GptkitError(f"--input {p}: no such file")
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise GptkitError(f"--input {p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        exs = [Example(line, None, f"{p}:{i + 1}") for i, line in enumerate(lines) if line.strip()]
        if not exs:
            raise GptkitError(f"--input {p}: no non-empty lines")
    else:
        exs = load_split(args.data, args.split, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                         seed=args.split_seed, source_field=args.source_field, target_field=args.target_field,
                         require_target=need_target)
        if not exs:
            raise GptkitError(f"--data {args.data}: the {args.split} split is empty")
    if args.limit is not None:
        if args.limit < 1:
            raise GptkitError(f"--limit must be >= 1, got {args.limit}")
        exs = exs[:args.limit]
    return exs


def _shots(args: argparse.Namespace, template: Any) -> list[Any]:
    from ..tasks.data import load_split
    from ..tasks.templates import select_shots
    if args.shots <= 0:
        if args.shots < 0:
            raise GptkitError(f"--shots must be >= 0, got {args.shots}")
        return []
    if "examples" not in template.fields:
        raise GptkitError(f"--shots {args.shots}: template {template.name!r} has no {{examples}} placeholder")
    source = args.shots_from or args.data
    if not source:
        raise GptkitError("--shots needs examples to draw from: --data FILE or --shots-from FILE")
    pool = load_split(source, "train", val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                      seed=args.split_seed, source_field=args.source_field, target_field=args.target_field)
    return select_shots(pool, args.shots, seed=args.split_seed)


def cmd_run(args: argparse.Namespace) -> int:
    from .. import load_model
    from ..tasks.run import check_out, read_outputs, run_task
    task = args.command
    inputs = [args.data, args.input, args.shots_from, args.template]
    if args.out:
        check_out(args.out, inputs)  # before the model is loaded
    template = _template(task, args)
    examples = _examples(args, need_target=False)
    shots = _shots(args, template)
    if not args.model:
        raise GptkitError("--model is required (a run directory, a Hugging Face GPT-2 directory or a Hub id)")
    gen = dict(max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
               do_sample=args.do_sample or (args.num_return_sequences > 1 and args.num_beams == 1),
               temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
               num_return_sequences=args.num_return_sequences, seed=args.seed,
               stop=[args.stop] if args.stop else None)
    if args.speculative:  # only when asked for: the settings files of earlier runs stay what they were
        gen["speculative"] = args.speculative
    from ..generate import make_config
    make_config(**gen)  # bad options: one line, before the model is loaded
    model = load_model(args.model, dtype=args.dtype)
    tok = model.tokenizer
    if tok is None:
        raise GptkitError(f"{args.model}: no tokenizer files beside the model")
    out = Path(args.out) if args.out else None
    printing = out is None
    if printing:
        import tempfile
        out = Path(tempfile.mkdtemp(prefix="gptkit-task-")) / "out.jsonl"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_task(model, tok, examples, template, out, generation=gen, shots=shots,
                           batch_size=args.batch_size, on_long=args.on_long, overwrite=args.overwrite,
                           progress=args.progress and not printing, prefix_cache=args.prefix_cache,
                           settings={"model": str(args.model), "dtype": args.dtype}, inputs=inputs)
    for w in caught:
        print(f"gptkit: warning: {w.message}", file=sys.stderr)
    if printing:
        for row in read_outputs(out):
            for i, text in enumerate(row.get("outputs", [row["output"]])):
                print(text if len(row.get("outputs", [])) <= 1 else f"[{i + 1}] {text}")
        return 0
    print(f"{summary['done']} outputs in {out} ({summary['generated']} generated now, {summary['resumed']} "
          f"from an earlier run, {summary['truncated']} sources cut)", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- finetune

@dataclass
class FinetuneOptions:
    task: str = field(default="custom", metadata={"help": "summarize | translate | custom (custom needs --template) | "
                                                          "chat (--data: conversations, see gptkit/chat/data.py)",
                                                  "choices": ("summarize", "translate", "custom", "chat")})
    strict: bool = field(default=False, metadata={"help": "chat: refuse the first bad conversation, or one whose first "
                                                          "reply does not fit --block-size (default: count and skip)"})
    mix: str | None = field(default=None, metadata={"help": "chat: DIR:RATIO, a share of the training rows taken from "
                                                            "pretraining text (a prepared data directory), e.g. "
                                                            "data/pretrain:0.2"})
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters (peft) instead of every weight"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scale numerator (scale = alpha / r)"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA path"})
    merge: bool = field(default=False, metadata={"help": "LoRA: also write OUT/merged, the best adapters merged into "
                                                         "the weights, a plain GPT-2 directory"})
    patience: int | None = field(default=None, metadata={"help": "stop after this many evaluations without a better "
                                                                 "validation score (none: never)"})
    score_examples: int = field(default=200, metadata={"help": "validation examples scored at every evaluation (0: none)"})
    score_max_new_tokens: int = field(default=64, metadata={"help": "tokens generated at most when scoring"})


def cmd_finetune(args: argparse.Namespace) -> int:
    from ..tasks.finetune import finetune
    from ..train import TrainConfig
    if not args.data:
        raise GptkitError("--data is required: a file of (source, target) examples")
    tvals = from_args(TrainConfig, argparse.Namespace(**{k: v for k, v in vars(args).items()
                                                          if k not in ("data", "progress")}))
    tvals["data"] = args.data
    tvals["progress"] = args.progress
    if not tvals.get("init_from"):
        raise GptkitError("--init-from is required: the model to fine-tune (run dir, HF directory or Hub id)")
    cfg = TrainConfig.from_dict(tvals, source="flags")
    ft = {k: getattr(args, k) for k in FinetuneOptions.__dataclass_fields__}
    if args.task == "chat":
        return _finetune_chat(cfg, args, ft)
    if ft.pop("strict"):
        raise GptkitError("--strict is for --task chat (task examples are always checked strictly)")
    if ft.pop("mix"):
        raise GptkitError("--mix is for --task chat")
    if args.task == "custom" and not args.template:
        raise GptkitError("--task custom needs --template FILE")
    template = _template(args.task if args.task != "custom" else "summarize", args)
    result = finetune(cfg, template=template, split=dict(
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.split_seed),
        fields=dict(source_field=args.source_field, target_field=args.target_field), on_long=args.on_long, **ft)
    if result is None:  # not rank 0
        return 0
    print(result.summary)
    return 0


def _finetune_chat(cfg: Any, args: argparse.Namespace, ft: dict[str, Any]) -> int:
    from ..chat.sft import finetune_chat
    if args.template:
        raise GptkitError("--template is a task prompt template; a chat model's template is its tokenizer's "
                          "(ChatML's is added where it has none)")
    ft.pop("task")
    result = finetune_chat(cfg, split=dict(val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                                           seed=args.split_seed), **ft)
    if result is not None:
        print(result.summary)
    return 0


# ---------------------------------------------------------------------------- score

def cmd_score(args: argparse.Namespace) -> int:
    from ..tasks.report import score_report
    out = None
    if args.out is not None:
        from ..outputs import is_json_with, output_file
        out = output_file(args.out, "out", inputs=[args.outputs, args.against], what="score report",
                          ours=lambda p: is_json_with(p, "outputs", "task", "metrics", "systems"))
    report = score_report(args.outputs, task=args.task, against=args.against, baselines=args.baselines,
                          metrics=args.metrics.split(",") if args.metrics else None, lead_words=args.lead_words,
                          n_samples=args.bootstrap, seed=args.bootstrap_seed)
    if out is not None:
        from ..files import write_text
        write_text(out, json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        from ..tasks.report import format_report
        print(format_report(report))
    return 0


def register(sub: Any) -> None:
    for task, what in (("summarize", "summarize texts with a GPT (GPT-2's TL;DR: prompt or your template)"),
                       ("translate", "translate texts with a GPT (k-shot prompts or a fine-tuned model)")):
        p = sub.add_parser(task, help=what)
        p.add_argument("text", nargs="*", help="source texts (or --input / --data) (default: none)")
        add_dataclass_args(p, RunOptions)
        add_dataclass_args(p, DataOptions)
        add_dataclass_args(p, TemplateOptions)
        p.add_argument("-n", dest="num_return_sequences", type=int, default=argparse.SUPPRESS,
                       help="candidates per source, as --num-return-sequences (default: 1)")
        p.set_defaults(func=cmd_run, **_defaults(RunOptions, DataOptions, TemplateOptions))

    from ..train import TrainConfig
    p = sub.add_parser("finetune", help="fine-tune a model on (source, target) examples: loss on the targets only")
    add_dataclass_args(p, FinetuneOptions)
    add_dataclass_args(p, DataOptions, skip=("split",))
    add_dataclass_args(p, TemplateOptions)
    add_dataclass_args(p, TrainConfig, skip=("data", "progress", "preset"))
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar (default: True)")
    p.set_defaults(func=cmd_finetune, **_defaults(FinetuneOptions, DataOptions, TemplateOptions))
    override_default(p, "out", "runs/finetune")

    p = sub.add_parser("score", help="score task outputs (ROUGE, BLEU, chrF, exact match) with baselines and "
                                     "paired-bootstrap intervals")
    p.add_argument("outputs", help="a JSONL written by gptkit summarize/translate (with targets)")
    p.add_argument("--task", default="custom", choices=("summarize", "translate", "custom"),
                   help="which metrics (summarize: ROUGE; translate: BLEU, chrF; both: custom) (default: custom)")
    p.add_argument("--metrics", default=None, help="comma-separated metrics instead of the task's "
                   "(rouge1, rouge2, rougeL, bleu, chrf, exact) (default: the task's)")
    p.add_argument("--against", default=None, help="another system's outputs on the same examples: paired bootstrap (default: none)")
    p.add_argument("--baselines", action="store_true", help="also score copy-the-source (and lead-N) and compare (default: False)")
    p.add_argument("--lead-words", type=int, default=10, help="N of the lead-N baseline (words) (default: 10)")
    p.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap resamples (default: 1000)")
    p.add_argument("--bootstrap-seed", type=int, default=12345, help="seed of the resamples (default: 12345)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object (default: False)")
    p.add_argument("--out", default=None, help="also write the report (JSON) here (default: none)")
    p.set_defaults(func=cmd_score)


def _defaults(*classes: Any) -> dict[str, Any]:
    """The dataclasses' defaults (add_dataclass_args leaves unset flags out of the namespace)."""
    import dataclasses
    out = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            out[f.name] = f.default
    return out
