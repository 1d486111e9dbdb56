"""`gptkit audit`: memorization, planted canaries, membership inference, personal data in samples
and stereotype preference of a model on the data it was trained on (gptkit/audit/)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ..errors import OptionError
from .args import DTYPE_CHOICES, DTYPE_HELP, add_dataclass_args
from .args import option as _opt


def _ints(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise OptionError("prompt_tokens", f"must be comma-separated integers such as 8,16,32, got {s!r}") from None


def cmd_audit(args: argparse.Namespace) -> int:
    from ..audit import AuditConfig, audit
    from ..data.datacard import command_line
    parts = [p.strip() for p in args.parts.split(",") if p.strip()] if args.parts else None
    cfg = AuditConfig(model=args.model, data=args.data, out=args.out, parts=parts, windows=args.windows,
                      prompt_tokens=_ints(args.prompt_tokens), suffix_tokens=args.suffix_tokens,
                      mi_tokens=args.mi_tokens, samples=args.samples, sample_tokens=args.sample_tokens,
                      canary_samples=args.canary_samples, exact_limit=args.exact_limit, pairs=args.pairs,
                      batch_size=args.batch_size, seed=args.seed, dtype=args.dtype, progress=not args.quiet,
                      command=command_line())
    r = audit(cfg)
    print(summary(r, args.out))
    return 0


def summary(r: dict, out: str) -> str:
    """A few lines: the headline figure of each part, and where the report is."""
    lines = []
    if "canaries" in r:
        by = r["canaries"]["by_repeats"]
        lines.append("canary exposure by copies planted: " + ", ".join(
            f"{k}x {v['mean_exposure']:.1f}" for k, v in by.items()) + f" bits (max {r['canaries']['max_exposure']:.1f})")
    if "extraction" in r:
        e = r["extraction"]
        k = str(max(e["prompt_tokens"]))
        lines.append(f"extraction at k={k}: " + ", ".join(
            f"{s} {100 * rows[k]['exact']:.1f} %" for s, rows in e["splits"].items()) + " exact")
    if "membership" in r:
        m = r["membership"]
        lines.append(f"membership inference AUC: loss {m['loss']['auc']:.3f}, zlib {m['zlib']['auc']:.3f}")
    if "pii" in r:
        p = r["pii"]
        lines.append(f"personal data in {p['samples']} samples: {p['findings']} findings")
    if "stereotype" in r:
        a = r["stereotype"]["by_bias_type"]["all"]
        lines.append(f"stereotype preferred in {100 * a['stereotyped']:.1f} % of {a['pairs']} pairs")
    lines.append(f"report: {out}/AUDIT.md")
    return "\n".join(lines)


@dataclass
class AuditCommand:
    model: str = _opt(None, "a run directory or a Hugging Face GPT-2 directory", required=True)
    data: str = _opt(None, "the data directory the model was trained on (written by `gptkit prepare`)", required=True)
    out: str = _opt("audit", "directory for AUDIT.md, audit.json and the plots")
    parts: str | None = _opt(None, "comma-separated parts: extraction, canaries, membership, pii, stereotype (none: "
                             "all that apply: canaries when the data has them, stereotype with --pairs)")
    windows: int = _opt(1000, "windows per split for extraction and membership inference")
    prompt_tokens: str = _opt("8,16,32", "extraction: prompt lengths k (comma-separated)")
    suffix_tokens: int = _opt(32, "extraction: tokens decoded greedily and compared (m)")
    mi_tokens: int = _opt(64, "membership inference: tokens per window")
    samples: int = _opt(200, "pii: samples drawn (half unconditional, half prompted by training text)")
    sample_tokens: int = _opt(64, "pii: tokens per sample")
    canary_samples: int = _opt(1000, "canaries: candidates sampled per canary when the space is large")
    exact_limit: int = _opt(10000, "canaries: score every candidate when the space has at most this many")
    pairs: str | None = _opt(None, "stereotype: a CrowS-Pairs-format file (CSV or JSON lines with sent_more, "
                             "sent_less, bias_type), or an lm-eval task: a name such as crows_pairs_english "
                             "(downloaded by datasets) or a local .yaml task file")
    batch_size: int = _opt(32, "sequences per forward pass")
    seed: int = _opt(0, "seed of the windows and samples drawn")
    dtype: str = _opt("auto", DTYPE_HELP, choices=DTYPE_CHOICES)
    quiet: bool = _opt(False, "no progress bars", flags=["-q"])


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="memorization, canaries, membership inference, PII and stereotypes of a model")
    add_dataclass_args(p, AuditCommand)
    p.set_defaults(func=cmd_audit)
