"""Membership inference: can someone tell the windows the model was trained on from those it was
not, by the model's loss on them (Yeom et al., 2018) or by the loss relative to the text's zlib
compressed size (Carlini et al., 2021, which discounts text that is easy for any compressor)?

Members are training windows, non-members validation windows; each score is turned into an ROC AUC
(0.5: no better than a coin) and the true-positive rate at a 1 % false-positive rate, the number
that matters for an attacker who must be right when they claim a document was in the data.
"""
from __future__ import annotations

import math
import zlib

import numpy as np

from ..evals.loglik import loglikelihood
from .stats import auc_stderr, roc_auc, tpr_at_fpr

FPR = 0.01


def window_losses(model, windows: np.ndarray, batch_size: int, amp, progress: bool) -> np.ndarray:
    """Mean loss (nats per predicted token) of each window, its first token as the context."""
    if not len(windows):
        return np.zeros(0)
    reqs = [(w[:1].tolist(), w[1:].tolist()) for w in windows]
    scores = loglikelihood(model, reqs, batch_size=batch_size, amp=amp, progress=progress)
    return np.array([-s.logprob / s.num_tokens for s in scores])


def zlib_bits(tok, windows: np.ndarray) -> np.ndarray:
    """Bits of each window's text compressed by zlib (level 9)."""
    return np.array([8 * len(zlib.compress(tok.decode_bytes(w[1:].tolist()), 9)) for w in windows], dtype=np.float64)


def _attack(member: np.ndarray, non: np.ndarray) -> dict:
    auc = roc_auc(member, non)
    return {"auc": auc, "auc_stderr": auc_stderr(auc, len(member), len(non)),
            f"tpr_at_{FPR:g}_fpr": tpr_at_fpr(member, non, FPR)}


def run(model, tok, windows: dict[str, np.ndarray], batch_size: int, amp, progress: bool) -> dict:
    """windows: {"train": members, "val": non-members}, each (n, L)."""
    loss = {s: window_losses(model, w, batch_size, amp, progress) for s, w in windows.items()}
    nll_bits = {s: loss[s] * (windows[s].shape[1] - 1) / math.log(2) for s in windows}
    ratio = {s: nll_bits[s] / np.maximum(zlib_bits(tok, windows[s]), 1.0) for s in windows}
    tr, va = "train", "val"
    return {
        "windows": {s: len(w) for s, w in windows.items()},
        "window_tokens": int(windows[tr].shape[1]),
        "mean_loss": {s: float(loss[s].mean()) if len(loss[s]) else None for s in windows},
        # a lower loss (ratio) says member: the score is its negative
        "loss": _attack(-loss[tr], -loss[va]),
        "zlib": _attack(-ratio[tr], -ratio[va]),
        "_scores": {"loss": (-loss[tr], -loss[va]), "zlib": (-ratio[tr], -ratio[va])},
    }
