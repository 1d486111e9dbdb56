"""generate's inputs: padding, end-of-text ids, the context rule; and the rows they hold.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import GptkitError, OptionError
from .config import GenerationConfig

# ---------------------------------------------------------------------------- inputs

def resolve_eos(model: Any, eos_token_id: int | Sequence[int] | None, tokenizer: Any = None) -> list[int]:
    """eos_token_id as given; else the model config's; else the tokenizer's end-of-text id."""
    if eos_token_id is None:
        eos_token_id = model.config.eos_token_id
        tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        if eos_token_id is None and tok is not None:
            eos_token_id = getattr(tok, "eot_id", None)
    if eos_token_id is None:
        return []
    if isinstance(eos_token_id, torch.Tensor):
        eos_token_id = eos_token_id.tolist()
    ids = [int(eos_token_id)] if isinstance(eos_token_id, int) else [int(e) for e in eos_token_id]
    vocab = model.config.vocab_size
    for e in ids:
        if not 0 <= e < vocab:
            raise OptionError("eos_token_id", f"{e} is not a token id of this model (0..{vocab - 1})")
    return ids


def left_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged prompts -> left-padded (batch, longest) ids and their attention mask."""
    if not rows or any(len(r) == 0 for r in rows):
        raise GptkitError("every prompt needs at least one token")
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, T - len(r):] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, T - len(r):] = 1
    return ids, mask


def prepare_inputs(model: Any, input_ids: Any, attention_mask: Any, cfg: GenerationConfig, pad: int
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Check and normalise the prompt: (batch, T) long ids on the model's device, and the attention
    mask, None when nothing is padded. Applies the context rule."""
    if isinstance(input_ids, (list, tuple)):
        if input_ids and all(isinstance(r, (list, tuple, torch.Tensor)) for r in input_ids):
            rows = [r.tolist() if isinstance(r, torch.Tensor) else list(r) for r in input_ids]
            if attention_mask is None and len({len(r) for r in rows}) > 1:
                input_ids, attention_mask = left_pad(rows, pad)
            else:
                input_ids = torch.tensor(rows, dtype=torch.long)
        else:
            input_ids = torch.tensor([list(input_ids)], dtype=torch.long)
    if not isinstance(input_ids, torch.Tensor):
        raise GptkitError(f"input_ids must be a tensor or a list of token ids, got {type(input_ids).__name__}")
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.dim() != 2 or input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise GptkitError(f"input_ids must be a (batch, time) integer tensor, got shape {tuple(input_ids.shape)} "
                          f"and dtype {input_ids.dtype}")
    B, T = input_ids.shape
    if B == 0 or T == 0:
        raise GptkitError("the prompt is empty: give at least one token")
    V = model.config.vocab_size
    lo, hi = int(input_ids.min()), int(input_ids.max())
    if lo < 0 or hi >= V:
        raise GptkitError(f"token id {lo if lo < 0 else hi} is outside the model's vocabulary (0..{V - 1})")
    device = model.device
    input_ids = input_ids.to(device, torch.long)
    if attention_mask is not None:
        attention_mask = torch.as_tensor(attention_mask).to(device)
        if attention_mask.dim() == 1:
            attention_mask = attention_mask[None]
        if attention_mask.shape != input_ids.shape:
            raise GptkitError(f"attention_mask has shape {tuple(attention_mask.shape)}, input_ids {tuple(input_ids.shape)}")
        attention_mask = attention_mask.long()
        if bool(((attention_mask != 0) & (attention_mask != 1)).any()):
            raise GptkitError("attention_mask must hold only 0 (padding) and 1 (token)")
        if bool((attention_mask[:, -1] == 0).any()) or bool((attention_mask.diff(dim=1) < 0).any()):
            raise GptkitError("attention_mask has padding on the right (or in the middle); decoder-only "
                              "generation needs left padding (pass a list of prompts to have it done)")
        if bool(attention_mask.all()):
            attention_mask = None
    n_ctx, N = model.config.n_positions, cfg.max_new_tokens
    if N >= n_ctx:
        raise GptkitError(f"max_new_tokens ({N}) must be smaller than the model's context ({n_ctx} tokens), "
                          "leaving room for the prompt")
    if T + N > n_ctx:
        keep = n_ctx - N
        msg = (f"prompt ({T} tokens) + max_new_tokens ({N}) exceeds the model's context of {n_ctx} tokens")
        if cfg.context == "error":
            raise GptkitError(f"{msg}; shorten the prompt, lower max_new_tokens, or use "
                              f"context='truncate' (CLI: --context truncate) to keep only the last {keep} prompt tokens")
        warnings.warn(f"{msg}: keeping only the last {keep} prompt tokens", stacklevel=3)
        input_ids = input_ids[:, T - keep:]
        if attention_mask is not None:
            attention_mask = attention_mask[:, T - keep:]
            if bool(attention_mask.all()):
                attention_mask = None
    return input_ids, attention_mask


# ---------------------------------------------------------------------------- decoding

def _positions(mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if mask is None else (mask.cumsum(-1) - 1).clamp(min=0)


def _generator(model: Any, seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    g = torch.Generator(device=model.device)
    g.manual_seed(seed)
    return g


def prompt_rows(ids: torch.Tensor, mask: torch.Tensor | None) -> list[list[int]]:
    """Each prompt's own tokens, its left padding dropped: the engine runs every row unpadded."""
    rows = ids.tolist()
    if mask is None:
        return rows
    pads = (mask == 0).sum(1).tolist()
    return [r[p:] for r, p in zip(rows, pads)]
