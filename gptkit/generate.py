"""Text generation: a KV-cached decoding loop with transformers' knobs and names.

`generate` returns token ids (the prompt followed by the new tokens, padded after a sequence
stops), as transformers' `generate` does; `stream` yields text as it is produced.
"""
from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch.nn import functional as F

from .errors import GptkitError


@dataclass
class SamplingParams:
    max_new_tokens: int = 20
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float | None = 1.0
    min_p: float | None = None
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    num_return_sequences: int = 1

    def validate(self) -> None:
        if self.max_new_tokens < 0:
            raise GptkitError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if self.do_sample and not self.temperature > 0:
            raise GptkitError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if self.top_k is not None and self.top_k < 0:
            raise GptkitError(f"top_k must be >= 0, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise GptkitError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            raise GptkitError(f"min_p must be in [0, 1], got {self.min_p}")
        if not self.repetition_penalty > 0:
            raise GptkitError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.num_return_sequences < 1:
            raise GptkitError(f"num_return_sequences must be >= 1, got {self.num_return_sequences}")
        if self.num_return_sequences > 1 and not self.do_sample:
            raise GptkitError("num_return_sequences > 1 needs do_sample=True (or beams): greedy "
                              "decoding would return the same sequence every time")


# ---------------------------------------------------------------------------- logits processing

def apply_repetition_penalty(logits: torch.Tensor, seqs: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty, as transformers: divide positive, multiply negative logits of seen tokens."""
    seen = logits.gather(1, seqs)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(1, seqs, seen)


def banned_ngram_tokens(seqs: torch.Tensor, n: int) -> list[list[int]]:
    """For each row, the tokens that would complete an n-gram already present in the row."""
    banned = []
    for row in seqs.tolist():
        if len(row) < n:
            banned.append([])
            continue
        prefix = tuple(row[len(row) - n + 1:]) if n > 1 else ()
        banned.append([row[i + n - 1] for i in range(len(row) - n + 1)
                       if tuple(row[i:i + n - 1]) == prefix])
    return banned


def warp(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """Temperature, then top-k, top-p and min-p filtering (transformers' order); -inf = filtered."""
    if p.temperature != 1.0:
        logits = logits / p.temperature
    if p.top_k:
        k = min(p.top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if p.top_p is not None and p.top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, descending=False, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove = cum <= 1 - p.top_p
        remove[..., -1] = False  # always keep the most likely token
        logits = logits.masked_fill(remove.scatter(-1, idx, remove), float("-inf"))
    if p.min_p:
        probs = logits.softmax(-1)
        floor = p.min_p * probs.max(-1, keepdim=True).values
        logits = logits.masked_fill(probs < floor, float("-inf"))
    return logits


def next_tokens(logits: torch.Tensor, seqs: torch.Tensor, p: SamplingParams,
                generator: torch.Generator | None) -> torch.Tensor:
    logits = logits.float()
    if p.repetition_penalty != 1.0:
        logits = apply_repetition_penalty(logits, seqs, p.repetition_penalty)
    if p.no_repeat_ngram_size:
        for row, banned in enumerate(banned_ngram_tokens(seqs, p.no_repeat_ngram_size)):
            logits[row, banned] = float("-inf")
    if not p.do_sample:
        return logits.argmax(-1)
    probs = warp(logits, p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


# ---------------------------------------------------------------------------- the decoding loop

def _eos_set(model: Any, eos_token_id: int | Sequence[int] | None) -> list[int]:
    if eos_token_id is None:
        eos_token_id = model.config.eos_token_id
        tok = getattr(model, "tokenizer", None)
        if eos_token_id is None and tok is not None:
            eos_token_id = tok.eot_id
    if eos_token_id is None:
        return []
    return [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)


def _check_inputs(model: Any, input_ids: torch.Tensor, max_new_tokens: int) -> None:
    if input_ids.dim() != 2 or input_ids.dtype not in (torch.long, torch.int):
        raise GptkitError(f"input_ids must be a (batch, time) integer tensor, got {tuple(input_ids.shape)} "
                          f"{input_ids.dtype}")
    if input_ids.size(1) == 0:
        raise GptkitError("the prompt is empty: give at least one token")
    n_ctx = model.config.n_positions
    if input_ids.size(1) + max_new_tokens > n_ctx:
        raise GptkitError(f"prompt ({input_ids.size(1)} tokens) + max_new_tokens ({max_new_tokens}) "
                          f"exceeds the model's context of {n_ctx} tokens; shorten the prompt or "
                          "lower max_new_tokens")


def decode_steps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                 p: SamplingParams, eos: list[int], generator: torch.Generator | None
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (new token per row, finished-before-this-step mask) once per step, KV-cached."""
    B, T = input_ids.shape
    cache = model.new_cache(B, T + p.max_new_tokens)
    padded = attention_mask is not None and not bool(attention_mask.all())
    if padded:
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        mask = attention_mask.long()
    else:
        position_ids, mask = None, None
    h = model.hidden_states(input_ids, attention_mask=mask, position_ids=position_ids, cache=cache)
    logits = model.lm_head(h[:, -1])
    seqs = input_ids
    finished = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
    eos_t = torch.tensor(eos, device=input_ids.device) if eos else None
    next_pos = position_ids[:, -1:] + 1 if padded else None
    for step in range(p.max_new_tokens):
        tok = next_tokens(logits, seqs, p, generator)
        yield tok, finished
        if eos_t is not None:
            finished = finished | torch.isin(tok, eos_t)
        seqs = torch.cat([seqs, tok[:, None]], dim=1)
        if bool(finished.all()) or step == p.max_new_tokens - 1:
            return
        if padded:
            mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1)
        h = model.hidden_states(tok[:, None], attention_mask=mask, position_ids=next_pos, cache=cache)
        logits = model.lm_head(h[:, -1])
        if padded:
            next_pos = next_pos + 1


def _prepare(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
             p: SamplingParams, seed: int | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Generator | None]:
    p.validate()
    _check_inputs(model, input_ids, p.max_new_tokens)
    input_ids = input_ids.to(model.device, torch.long)
    if attention_mask is not None:
        attention_mask = attention_mask.to(model.device)
    if p.num_return_sequences > 1:
        input_ids = input_ids.repeat_interleave(p.num_return_sequences, dim=0)
        if attention_mask is not None:
            attention_mask = attention_mask.repeat_interleave(p.num_return_sequences, dim=0)
    generator = None
    if p.do_sample:
        generator = torch.Generator(device=model.device)
        generator.manual_seed(seed) if seed is not None else generator.seed()
    return input_ids, attention_mask, generator


@torch.no_grad()
def generate(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
             max_new_tokens: int = 20, do_sample: bool = False, temperature: float = 1.0,
             top_k: int | None = 50, top_p: float | None = 1.0, min_p: float | None = None,
             repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0,
             num_return_sequences: int = 1, eos_token_id: int | Sequence[int] | None = None,
             pad_token_id: int | None = None, seed: int | None = None) -> torch.Tensor:
    """Prompt ids followed by new ids, (batch * num_return_sequences, time); rows that stop early
    are padded with pad_token_id (default: the end-of-text id)."""
    p = SamplingParams(max_new_tokens, do_sample, temperature, top_k, top_p, min_p,
                       repetition_penalty, no_repeat_ngram_size, num_return_sequences)
    input_ids, attention_mask, generator = _prepare(model, input_ids, attention_mask, p, seed)
    eos = _eos_set(model, eos_token_id)
    pad = pad_token_id if pad_token_id is not None else (eos[0] if eos else 0)
    out = [input_ids]
    for tok, finished in decode_steps(model, input_ids, attention_mask, p, eos, generator):
        out.append(torch.where(finished, torch.full_like(tok, pad), tok)[:, None])
    return torch.cat(out, dim=1)


@torch.no_grad()
def stream(model: Any, tokenizer: Any, prompt: str, *, seed: int | None = None,
           stop: Sequence[str] = (), **kwargs: Any) -> Iterator[str]:
    """Yield the continuation of one prompt as text, piece by piece, never splitting a UTF-8
    character; stops at end-of-text or at a stop string (which is not yielded)."""
    p = SamplingParams(**kwargs)
    ids = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long)
    input_ids, _, generator = _prepare(model, ids, None, p, seed)
    eos = _eos_set(model, kwargs.get("eos_token_id"))
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text, sent = "", 0
    hold = max((len(s) for s in stop), default=1) - 1  # text that might still start a stop string
    for tok, _ in decode_steps(model, input_ids, None, p, eos, generator):
        t = int(tok[0])
        if t in eos:
            break
        text += decoder.decode(tokenizer.decode_bytes([t]))
        cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
        if cut >= 0:
            if cut > sent:
                yield text[sent:cut]
            return
        safe = len(text) - hold
        if safe > sent:
            yield text[sent:safe]
            sent = safe
    text += decoder.decode(b"", final=True)
    if len(text) > sent:
        yield text[sent:]


def generate_text(model: Any, tokenizer: Any, prompt: str, *, stop: Sequence[str] = (),
                  **kwargs: Any) -> list[dict[str, Any]]:
    """Generate from one prompt; one dict per sequence with its text (stop strings cut) and ids."""
    ids = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long)
    eos = _eos_set(model, kwargs.get("eos_token_id"))
    out = generate(model, ids, **kwargs)
    results = []
    for row in out[:, ids.size(1):].tolist():
        new = row[: next((i for i, t in enumerate(row) if t in eos), len(row))]
        text = tokenizer.decode(new)
        cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
        if cut >= 0:
            text = text[:cut]
            new = tokenizer.encode(text)
        results.append({"prompt": prompt, "text": text, "token_ids": new})
    return results
