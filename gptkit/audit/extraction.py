"""Training-data extraction (discoverable memorization, Carlini et al. 2021 and 2023): prompt the
model with the k tokens before a window's suffix and decode greedily the suffix's m tokens; a
training window whose suffix comes back exactly was memorized. Validation windows, which the
model never saw, are the control: their rate is what prediction alone reaches.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from ..device import autocast
from ..generate import generate

# duplicate-count buckets: how often the suffix occurs in the training split
BUCKETS = ((0, 0, "0"), (1, 1, "1"), (2, 3, "2-3"), (4, 15, "4-15"), (16, 63, "16-63"), (64, None, "64+"))


@torch.no_grad()
def greedy(model, prompts: np.ndarray, m: int, batch_size: int, amp, bar: tqdm | None = None) -> np.ndarray:
    """The m greedy tokens after each prompt (prompts of one length), (n, m); end of text does not stop it."""
    out = []
    for a in range(0, len(prompts), batch_size):
        x = torch.from_numpy(prompts[a:a + batch_size]).to(model.device)
        with autocast(model.device, amp):
            seq = generate(model, x, max_new_tokens=m, do_sample=False, eos_token_id=[])
        out.append(seq[:, x.size(1):].cpu().numpy())
        if bar is not None:
            bar.update(len(x))
    return np.concatenate(out) if out else np.zeros((0, m), dtype=np.int64)


def common_prefix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, how many leading tokens of a and b agree."""
    diff = a != b
    return np.where(diff.any(1), diff.argmax(1), a.shape[1])


def run(model, windows: dict[str, np.ndarray], ks: list[int], m: int, batch_size: int, amp,
        counts: np.ndarray | None, progress: bool) -> dict:
    """windows: split -> (n, max(ks) + m) token windows. For every split and k: the share of suffixes
    reproduced exactly and the mean share of the suffix reproduced before the first wrong token;
    for train, the exact share by how often the suffix occurs in the training split (`counts`)."""
    kmax = max(ks)
    total = sum(len(w) for w in windows.values()) * len(ks)
    result: dict = {"prompt_tokens": ks, "suffix_tokens": m, "splits": {}}
    exact_train: dict[int, np.ndarray] = {}
    with tqdm(total=total, desc="extraction", unit="window", disable=not progress, leave=False) as bar:
        for split, w in windows.items():
            rows = {}
            for k in ks:
                got = greedy(model, np.ascontiguousarray(w[:, kmax - k:kmax]), m, batch_size, amp, bar)
                lcp = common_prefix(got, w[:, kmax:])
                exact = lcp == m
                rows[str(k)] = {"windows": len(w), "exact": float(exact.mean()) if len(w) else None,
                                "prefix_share": float((lcp / m).mean()) if len(w) else None}
                if split == "train":
                    exact_train[k] = exact
            result["splits"][split] = rows
    if counts is not None and "train" in windows:
        result["by_duplicates"] = by_duplicates(counts, exact_train)
    return result


def by_duplicates(counts: np.ndarray, exact: dict[int, np.ndarray]) -> list[dict]:
    """Exact-extraction share per duplicate-count bucket, for every k."""
    out = []
    for lo, hi, label in BUCKETS:
        sel = (counts >= lo) & (counts <= (hi if hi is not None else np.inf))
        if not sel.any():
            continue
        out.append({"occurrences": label, "windows": int(sel.sum()),
                    "exact": {str(k): float(e[sel].mean()) for k, e in exact.items()}})
    return out
