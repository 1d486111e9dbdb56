"""`gptkit audit`: what a model learned that it should not have. Parts (each selectable):

  extraction  training windows reproduced by greedy decoding from their first k tokens (extraction.py)
  canaries    exposure of the secrets `prepare --canaries` planted (canaries.py)
  membership  loss and zlib-ratio membership inference, train vs validation windows (membership.py)
  pii         personal data in the model's samples, by prepare's detector (samples.py)
  stereotype  preference for the stereotyped sentence of CrowS-Pairs-style pairs (stereotype.py)

`audit(AuditConfig(...))` writes AUDIT.md, audit.json and plots into cfg.out and returns the results.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import GptkitError, OptionError

PARTS = ("extraction", "canaries", "membership", "pii", "stereotype")


@dataclass
class AuditConfig:
    model: str = ""
    data: str = ""
    out: str = "audit"
    parts: list[str] | None = None  # None: every part that applies (canaries if planted, stereotype with pairs)
    windows: int = 1000
    prompt_tokens: list[int] = field(default_factory=lambda: [8, 16, 32])
    suffix_tokens: int = 32
    mi_tokens: int = 64
    samples: int = 200
    sample_tokens: int = 64
    canary_samples: int = 1000
    exact_limit: int = 10_000
    pairs: str | None = None
    batch_size: int = 32
    seed: int = 0
    dtype: str = "auto"
    progress: bool = True
    command: str = ""


def _positive(name: str, v) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise OptionError(name, f"must be an integer >= 1, got {v!r}")


def resolve_parts(cfg: AuditConfig, has_canaries: bool) -> list[str]:
    if cfg.parts is None:
        return [p for p in PARTS if (p != "canaries" or has_canaries) and (p != "stereotype" or cfg.pairs)]
    bad = [p for p in cfg.parts if p not in PARTS]
    if bad:
        raise OptionError("parts", f"unknown part {bad[0]!r} (choose from {', '.join(PARTS)})")
    if "stereotype" in cfg.parts and not cfg.pairs:
        raise OptionError("pairs", "is needed for the stereotype part: a CrowS-Pairs-format file (sent_more, "
                          "sent_less, bias_type)")
    return [p for p in PARTS if p in cfg.parts]


OUTPUTS = ("AUDIT.md", "audit.json", "exposure.png", "extraction.png", "membership.png")


def check(cfg: AuditConfig) -> None:
    for name in ("windows", "suffix_tokens", "mi_tokens", "samples", "sample_tokens", "canary_samples",
                 "exact_limit", "batch_size"):
        _positive(name, getattr(cfg, name))
    if not cfg.prompt_tokens:
        raise OptionError("prompt_tokens", "needs at least one prompt length")
    for k in cfg.prompt_tokens:
        _positive("prompt_tokens", k)
    if cfg.mi_tokens < 2:
        raise OptionError("mi_tokens", f"must be >= 2 (a context token and a scored one), got {cfg.mi_tokens}")
    from ..outputs import output_dir  # the writing rule every command follows, before any work
    output_dir(cfg.out, "out", inputs=[cfg.model, cfg.data, cfg.pairs], ours=lambda e: e.name in OUTPUTS,
               what="audit")


def load(cfg: AuditConfig):
    """(model, the data's tokenizer, train shards, val shards), checked to belong together."""
    from ..data import TokenShards
    from ..hf import load_model
    from ..tokenizer import Tokenizer
    train, val = TokenShards(cfg.data, "train"), TokenShards(cfg.data, "val")
    tok = Tokenizer.load(cfg.data)
    model = load_model(cfg.model)
    mtok = model.tokenizer
    if train.vocab_size != model.config.vocab_size or (mtok is not None and mtok.fingerprint != tok.fingerprint):
        raise GptkitError(f"{cfg.data} was prepared with another tokenizer than {cfg.model}'s "
                          f"({train.vocab_size} vs {model.config.vocab_size} tokens"
                          f"{', different vocabularies' if train.vocab_size == model.config.vocab_size else ''}): "
                          "an audit would compare unrelated ids; audit the model on the data it was trained on")
    return model, tok, train, val


def audit(cfg: AuditConfig) -> dict:
    from ..data import canaries as planted
    from ..device import autocast_dtype
    from ..files import finite, write_json, write_text
    from . import report
    t0 = time.time()
    check(cfg)
    model, tok, train, val = load(cfg)
    parts = resolve_parts(cfg, bool(train.meta.get("canaries")))
    record = planted.read(train.meta, cfg.data) if "canaries" in parts or train.meta.get("canaries") else None
    pairs = None
    if "stereotype" in parts:
        from .stereotype import load_pairs
        pairs = load_pairs(cfg.pairs)
    limit = model.config.n_positions
    kmax = max(cfg.prompt_tokens)
    if "extraction" in parts and kmax + cfg.suffix_tokens > limit:
        raise OptionError("prompt_tokens", f"{kmax} + --suffix-tokens {cfg.suffix_tokens} is past the model's "
                          f"context ({limit})")
    if "membership" in parts and cfg.mi_tokens > limit + 1:
        raise OptionError("mi_tokens", f"{cfg.mi_tokens} is past the model's context ({limit})")
    amp = autocast_dtype(cfg.dtype, model.device)
    rng = np.random.default_rng(cfg.seed)
    res: dict = {"format": "gptkit-audit-v1", "model": str(cfg.model), "data": str(cfg.data), "command": cfg.command,
                 "parts": parts, "seed": cfg.seed, "notes": []}
    scores: dict = {}
    index = None
    if "extraction" in parts or "pii" in parts:
        index = _index(train, cfg.suffix_tokens, res["notes"])
    if "canaries" in parts:
        from . import canaries
        res["canaries"] = canaries.run(model, tok, record, train, cfg.exact_limit, cfg.canary_samples,
                                       cfg.batch_size, amp, cfg.seed, cfg.progress)
    if "extraction" in parts:
        from . import extraction
        L = kmax + cfg.suffix_tokens
        w = {s: _windows(sh, L, cfg.windows, rng, res["notes"], "extraction") for s, sh in (("train", train), ("val", val))}
        counts = index.count(w["train"][:, kmax:]) if index is not None and len(w["train"]) else None
        res["extraction"] = extraction.run(model, {s: x for s, x in w.items() if len(x)}, cfg.prompt_tokens,
                                           cfg.suffix_tokens, cfg.batch_size, amp, counts, cfg.progress)
    if "membership" in parts:
        from . import membership
        w = {s: _windows(sh, cfg.mi_tokens, cfg.windows, rng, res["notes"], "membership") for s, sh in
             (("train", train), ("val", val))}
        if not len(w["train"]) or not len(w["val"]):
            raise GptkitError(f"{cfg.data}: membership inference needs windows of {cfg.mi_tokens} tokens in both "
                              "splits; lower --mi-tokens")
        m = membership.run(model, tok, w, cfg.batch_size, amp, cfg.progress)
        scores["membership"] = m.pop("_scores")
        res["membership"] = m
    if "pii" in parts:
        from . import samples
        half = cfg.samples // 2
        starts = _windows(train, 8, cfg.samples - half, rng, res["notes"], "pii")
        prompts = {"unconditional": np.full((half, 1), tok.eot_id, dtype=np.int64), "prompted": starts}
        res["pii"] = samples.run(model, tok, {k: v for k, v in prompts.items() if len(v)},
                                 min(cfg.sample_tokens, limit - 8), cfg.batch_size, amp, cfg.seed, train, index,
                                 cfg.progress, [planted.text(c) for c in record["items"]] if record else [])
    if "stereotype" in parts:
        from . import stereotype
        res["stereotype"] = stereotype.run(model, tok, pairs, cfg.batch_size, amp, cfg.progress)
    res["seconds"] = time.time() - t0
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    res["plots"] = report.plots(res, scores, out)
    write_json(out / "audit.json", finite(res))
    write_text(out / "AUDIT.md", report.render(res))
    return res


def _index(train, n: int, notes: list[str]):
    from .windows import NgramIndex
    try:
        return NgramIndex(train, n)
    except GptkitError as e:
        notes.append(f"duplicate counts left out: {e}")
        return None


def _windows(shards, length: int, n: int, rng, notes: list[str], part: str) -> np.ndarray:
    from .windows import sample_windows
    w = sample_windows(shards, length, n, rng)
    if len(w) < n:
        notes.append(f"{part}: the {shards.split} split has {len(w):,} windows of {length} tokens, fewer than "
                     f"the {n:,} asked")
    return w
