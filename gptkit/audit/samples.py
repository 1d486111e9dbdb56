"""Personal data in samples: generate N samples, half from nothing (end of text) and half prompted
with the start of training windows, and scan them with the detector `prepare` cleans data with
(gptkit/data/pii.py). Counted by kind; a finding that also occurs in the training text was learned
from it, not made up. A sample holding a span of `reproduce_tokens` tokens that occurs verbatim in
the training split reproduces training text.

Findings are shown masked (their first two characters, then *), and a planted canary's secret in
an excerpt as <CANARY>: the report must not itself become a list of the secrets it found.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from ..data import TokenShards
from ..data.pii import KINDS, find
from ..device import autocast
from ..generate import generate
from ..generate.decode import resolve_eos
from .windows import NgramIndex

EXAMPLES = 10


def mask(s: str) -> str:
    return s[:2] + "*" * max(0, len(s) - 2)


@torch.no_grad()
def draw(model, prompts: np.ndarray, new_tokens: int, batch_size: int, amp, seed: int, bar) -> list[np.ndarray]:
    """One sampled continuation (temperature 1, top-k 40) per prompt row, cut at end of text."""
    out = []
    for a in range(0, len(prompts), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(prompts[a:a + batch_size])).to(model.device)
        with autocast(model.device, amp):
            seq = generate(model, x, max_new_tokens=new_tokens, do_sample=True, top_k=40, seed=seed + a)
        eos = set(resolve_eos(model, None))
        for row in seq[:, x.size(1):].cpu().numpy():
            stop = [i for i, t in enumerate(row) if int(t) in eos]
            out.append(row[: stop[0]] if stop else row)
        bar.update(len(x))
    return out


def _train_text(tok, train: TokenShards, limit: int = 50_000_000) -> bytes | None:
    """The training split as bytes (for findings' provenance); None past `limit` tokens."""
    if train.num_tokens > limit:
        return None
    return b"".join(tok.decode_bytes(np.asarray(s)) for s in train.shards)


def run(model, tok, prompts: dict[str, np.ndarray], new_tokens: int, batch_size: int, amp, seed: int,
        train: TokenShards, index: NgramIndex | None, progress: bool, canaries: list[str] = ()) -> dict:
    """prompts: kind ("unconditional", "prompted") -> (n, k) prompt rows; canaries: the planted
    canaries' texts (their prefix and secret), counted when a sample holds one and masked."""
    total = sum(len(p) for p in prompts.values())
    counts = {k: 0 for k in KINDS}
    findings, reproduced, texts, n, leaked = [], [], None, 0, 0
    with tqdm(total=total, desc="samples", unit="sample", disable=not progress, leave=False) as bar:
        for kind, rows in prompts.items():
            for i, ids in enumerate(draw(model, rows, new_tokens, batch_size, amp, seed, bar)):
                n += 1
                text = tok.decode(ids)
                leaked += any(c in text for c in canaries)
                text = _masked_canaries(text, canaries)
                if index is not None and len(ids) >= index.n and index.contains_any(np.asarray(ids)):
                    reproduced.append({"kind": kind, "sample": i, "text": text[:120]})
                for start, end, _, what in find(text):
                    counts[what] += 1
                    if texts is None:
                        texts = _train_text(tok, train) or b""
                    s = text[start:end]
                    findings.append({"kind": what, "masked": mask(s), "source": kind, "sample": i,
                                     "in_training_text": (s.encode() in texts) if texts else None})
    return {"samples": n, "new_tokens": new_tokens, "by_kind": counts, "findings": len(findings), "canary_samples": leaked,
            "findings_in_training_text": sum(bool(f["in_training_text"]) for f in findings),
            "examples": findings[:EXAMPLES],
            "reproducing": {"span_tokens": index.n if index is not None else None, "samples": len(reproduced),
                            "examples": [{**r, "text": _redacted(r["text"])} for r in reproduced[:EXAMPLES]]}}


def _masked_canaries(text: str, canaries) -> str:
    for c in canaries:
        prefix, _, _ = c.rpartition(" ")
        text = text.replace(c, prefix + " <CANARY>")
    return text


def _redacted(text: str) -> str:
    out, pos = [], 0
    for start, end, placeholder, _ in find(text):
        out += (text[pos:start], placeholder)
        pos = end
    return "".join(out) + text[pos:]
