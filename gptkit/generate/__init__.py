"""Text generation: greedy, sampling and beam search over a preallocated KV cache, with
transformers' knobs, names and defaults.

    model.generate(input_ids, attention_mask=None, max_new_tokens=20, do_sample=False, ...)

returns token ids, the prompt followed by the new tokens, as transformers' `generate` does, and
gives the same ids on the same weights: greedy, beam search (the vectorised search of
transformers 5: `length_penalty`, `early_stopping` True/False/"never"), and the same logits
processors in the same order (repetition penalty, no-repeat n-grams, then temperature, top-k,
top-p, min-p). `stream` yields text as it is produced; `generate_text` returns text and ids.

Rules worth knowing:

* Batches: a list of prompts of different lengths is left-padded here; a padded tensor comes
  with its `attention_mask` (left padding only: padding on the right is refused). Every row
  stops on its own; rows that stop early are filled with `pad_token_id` (default: the first
  end-of-text id), as in transformers.
* Context: a prompt plus max_new_tokens longer than the model's context (n_positions) is an
  error by default (`context="error"`); `context="truncate"` keeps only the last
  n_positions - max_new_tokens prompt tokens, with a warning. max_new_tokens alone must leave
  room for at least one prompt token.
* Stop strings (`stop=`) need a tokenizer (`tokenizer=` or `model.tokenizer`). A row stops once
  its new text contains one; the ids keep the token that completed it (as transformers'
  `stop_strings`), the text APIs cut the output just before it.
* `seed` makes sampling reproducible (its own torch.Generator); without it sampling draws from
  torch's global generator, so torch.manual_seed works as it does with transformers.
"""
from __future__ import annotations

import codecs
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import GptkitError
from .beam import beam_search
from .config import GenerationConfig, make_config
from .decode import _generator, grammar_constraint, prepare_inputs, resolve_eos, sample_steps
from .text import StopStrings, _encode_prompt, _ids_within, _token_bytes, first_stop, resolve_tokenizer

__all__ = ["Generation", "GenerationConfig", "generate", "generate_text", "make_config", "run_generate", "stream"]

# ---------------------------------------------------------------------------- public API

@dataclass
class Generation:
    sequences: torch.Tensor  # (rows, T + new) prompt then new tokens, padded
    prompt_length: int
    new_lengths: list[int]  # valid new tokens per row (the end-of-text token counted)
    eos: list[int]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None


@torch.no_grad()
def run_generate(model: Any, input_ids: Any, attention_mask: Any = None, tokenizer: Any = None,
                 **kwargs: Any) -> Generation:
    cfg = make_config(**kwargs)
    eos = resolve_eos(model, cfg.eos_token_id, tokenizer)
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else (eos[0] if eos else 0)
    ids, mask = prepare_inputs(model, input_ids, attention_mask, cfg, pad)
    tok = resolve_tokenizer(model, tokenizer, "stop=") if cfg.stops else None
    if cfg.speculative is not None and tok is None:
        tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    constrained = cfg.grammar is not None
    if constrained:
        tok = resolve_tokenizer(model, tokenizer, "json_schema= / regex=")
    generator = _generator(model, cfg.seed)
    was_training = model.training
    model.eval()
    try:
        T = ids.size(1)
        if cfg.max_new_tokens == 0:
            seqs = ids.repeat_interleave(max(cfg.num_return_sequences, 1), 0)
            return Generation(seqs, T, [0] * seqs.size(0), eos, ids, mask)
        if cfg.num_beams > 1:
            def stop_hit(new: torch.Tensor) -> torch.Tensor:  # (B, candidates, new tokens) -> bool
                texts = [tok.decode(r) for r in new.reshape(-1, new.size(-1)).tolist()]
                return torch.tensor([any(s in t for s in cfg.stops) for t in texts],
                                    device=new.device).view(new.shape[:2])
            seqs, lengths = beam_search(model, ids, mask, cfg, eos, pad, generator,
                                        stop_hit if tok is not None else None)
            return Generation(seqs, T, lengths.tolist(), eos, ids, mask)
        if cfg.speculative is not None:
            from .speculate import speculative_rows
            new, lengths = speculative_rows(model, ids, mask, cfg, eos, pad, generator, tok)
            seqs = torch.cat([ids.repeat_interleave(cfg.num_return_sequences, 0), new], 1)
            return Generation(seqs, T, lengths, eos, ids, mask)
        rows = ids.size(0) * cfg.num_return_sequences
        stopper = StopStrings(tok, cfg.stops, rows) if cfg.stops else None
        constraint = grammar_constraint(cfg, tok, eos, rows) if constrained else None
        steps, lengths, done = [], None, None
        for t, now in sample_steps(model, ids, mask, cfg, eos, pad, generator, stopper, constraint):
            if lengths is None:
                lengths = torch.zeros_like(t)
                done = torch.zeros_like(now)
            lengths += (~done).long()
            done = now
            steps.append(t)
        rows = ids.repeat_interleave(cfg.num_return_sequences, 0)
        seqs = torch.cat([rows, torch.stack(steps, 1)], 1)
        return Generation(seqs, T, lengths.tolist(), eos, ids, mask)
    finally:
        model.train(was_training)


def generate(model: Any, input_ids: Any, attention_mask: Any = None, *, tokenizer: Any = None,
             **kwargs: Any) -> torch.Tensor:
    """Token ids, (batch * num_return_sequences, prompt + new): the prompt followed by the new
    tokens. Options (names and defaults as in transformers): max_new_tokens=20, do_sample=False,
    temperature=1.0, top_k=50, top_p=1.0, min_p=None, repetition_penalty=1.0,
    no_repeat_ngram_size=0, num_beams=1, length_penalty=1.0, early_stopping=False,
    num_return_sequences=1, eos_token_id=None (the model's), pad_token_id=None (the first eos),
    stop=None (strings; needs a tokenizer), seed=None, context="error" | "truncate";
    json_schema=None (a dict or its JSON text) or regex=None: the new text must match (gptkit.constrain).

    input_ids: a (batch, T) tensor (with attention_mask if left-padded), one list of ids, or a list
    of lists of different lengths (left-padded here)."""
    return run_generate(model, input_ids, attention_mask, tokenizer, **kwargs).sequences


@torch.no_grad()
def stream(model: Any, prompt: Any, *, tokenizer: Any = None, **kwargs: Any) -> Iterator[str]:
    """Yield the continuation of one prompt (text, or a list of ids) as text, piece by piece, as it
    is produced; a multi-byte character is never split. Stops at end-of-text, at max_new_tokens,
    or before a stop string (which is not yielded). Same options as `generate`, one sequence."""
    tok = resolve_tokenizer(model, tokenizer, "streaming")
    cfg = make_config(**kwargs)
    if cfg.num_beams > 1 or cfg.num_return_sequences > 1:
        raise GptkitError("streaming yields one sequence: use generate() for num_beams > 1 or "
                          "num_return_sequences > 1")
    eos = resolve_eos(model, cfg.eos_token_id, tok)
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else (eos[0] if eos else 0)
    ids, mask = prepare_inputs(model, [_encode_prompt(tok, prompt)], None, cfg, pad)
    stops = cfg.stops
    hold = max((len(s) for s in stops), default=1) - 1  # text that may yet begin a stop string
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text, sent = "", 0
    was_training = model.training
    model.eval()
    try:
        for t in _one_row_tokens(model, ids, mask, cfg, eos, pad, tok):
            if t in eos:
                break
            text += decoder.decode(_token_bytes(tok, [t]))
            cut = first_stop(text, stops)
            if cut >= 0:
                if cut > sent:
                    yield text[sent:cut]
                return
            if len(text) - hold > sent:
                yield text[sent:len(text) - hold]
                sent = len(text) - hold
        text += decoder.decode(b"", final=True)
        cut = first_stop(text, stops)
        end = cut if cut >= 0 else len(text)
        if end > sent:
            yield text[sent:end]
    finally:
        model.train(was_training)


def _one_row_tokens(model: Any, ids: torch.Tensor, mask: Any, cfg: GenerationConfig, eos: list[int], pad: int,
                    tok: Any) -> Iterator[int]:
    """stream()'s tokens: plain (constrained or not) or speculative decoding of one prompt."""
    generator = _generator(model, cfg.seed)
    if cfg.speculative is not None:
        from ..speculative import draft_model
        from .speculate import one_row
        yield from one_row(model, ids[0].tolist(), cfg, draft_model(model, cfg.speculative), generator)
        return
    constraint = grammar_constraint(cfg, tok, eos, 1)
    for t, _ in sample_steps(model, ids, mask, cfg, eos, pad, generator, constraint=constraint):
        yield int(t[0])


def generate_text(model: Any, tokenizer: Any, prompt: str | Sequence[str], **kwargs: Any) -> list[dict[str, Any]]:
    """Generate from one prompt or a batch of prompts (left-padded into one batch). One dict per
    sequence, prompt-major: prompt, text (the continuation, cut before a stop string), token_ids
    (the new tokens that lie wholly before the cut; no end-of-text), finish_reason
    ("eos" | "stop" | "length")."""
    tok = tokenizer if tokenizer is not None else resolve_tokenizer(model, None, "generate_text")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise GptkitError("no prompt given")
    rows = [_encode_prompt(tok, p) for p in prompts]
    g = run_generate(model, rows, None, tok, **kwargs)
    stops = make_config(**kwargs).stops
    per = g.sequences.size(0) // len(prompts)
    out = []
    for i, (row, n) in enumerate(zip(g.sequences[:, g.prompt_length:].tolist(), g.new_lengths)):
        new = row[:n]
        reason = "length"
        if new and new[-1] in g.eos:
            new, reason = new[:-1], "eos"
        text = _token_bytes(tok, new).decode("utf-8", "replace")  # a continuation: SentencePiece's leading space kept
        cut = first_stop(text, stops)
        if cut >= 0:
            text, reason = text[:cut], "stop"
            new = _ids_within(tok, new, cut)
        out.append({"prompt": prompts[i // per], "text": text, "token_ids": new, "finish_reason": reason})
    return out
