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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..engine import Engine, PrefixCache, Seq, TokenText, from_generation_config
from ..engine.text import _encode_prompt, _ids_within, _token_bytes, first_stop, resolve_tokenizer
from ..errors import GptkitError
from .beam import beam_search
from .config import GenerationConfig, make_config
from .decode import _generator, prepare_inputs, prompt_rows, resolve_eos

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
                 prefix_cache: PrefixCache | bool = True, **kwargs: Any) -> Generation:
    cfg = make_config(**kwargs)
    eos = resolve_eos(model, cfg.eos_token_id, tokenizer)
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else (eos[0] if eos else 0)
    ids, mask = prepare_inputs(model, input_ids, attention_mask, cfg, pad)
    tok = resolve_tokenizer(model, tokenizer, "stop=") if cfg.stops else None
    if cfg.grammar is not None:
        tok = resolve_tokenizer(model, tokenizer, "json_schema= / regex=")
    elif cfg.speculative is not None and tok is None:
        tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
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
                return torch.tensor([first_stop(t, cfg.stops) >= 0 for t in texts],
                                    device=new.device).view(new.shape[:2])
            seqs, lengths = beam_search(model, ids, mask, cfg, eos, pad, _generator(model, cfg.seed),
                                        stop_hit if tok is not None else None)
            return Generation(seqs, T, lengths.tolist(), eos, ids, mask)
        if cfg.speculative is not None:
            from .speculate import speculative_rows
            new, lengths = speculative_rows(model, ids, mask, cfg, eos, pad, _generator(model, cfg.seed), tok)
            seqs = torch.cat([ids.repeat_interleave(cfg.num_return_sequences, 0), new], 1)
            return Generation(seqs, T, lengths, eos, ids, mask)
        engine, groups = _engine(model, ids, mask, cfg, eos, tok, prefix_cache)
        engine.run(groups)
        seqs = [s for g in groups for s in g]
        width = max(len(s.out) for s in seqs)
        new = torch.full((len(seqs), width), pad, dtype=torch.long)
        for i, s in enumerate(seqs):
            new[i, :len(s.out)] = torch.tensor(s.out, dtype=torch.long)
        rows = ids.repeat_interleave(cfg.num_return_sequences, 0)
        return Generation(torch.cat([rows, new.to(rows.device)], 1), T, [len(s.out) for s in seqs], eos, ids, mask)
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
    json_schema=None (a dict or its JSON text) or regex=None: the new text must match (gptkit.constrain);
    speculative=None ("ngram" or a draft model), num_speculative_tokens=8 (gptkit.speculative).

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
    was_training = model.training
    model.eval()
    try:
        if cfg.speculative is not None:
            yield from _speculative_stream(model, ids, cfg, eos, tok)
            return
        engine, groups = _engine(model, ids, mask, cfg, eos, tok, True, emit=True)
        (seq,), = groups
        engine.add([seq])
        while True:
            while seq.owner:
                ev = seq.owner.pop(0)
                if ev.kind == "delta" and ev.text:
                    yield ev.text
            if seq.done:
                return
            engine.step()
    finally:
        model.train(was_training)


def _engine(model: Any, ids: torch.Tensor, mask: torch.Tensor | None, cfg: GenerationConfig, eos: list[int],
            tok: Any, prefix_cache: PrefixCache | bool, emit: bool = False) -> tuple[Engine, list[list[Seq]]]:
    """An engine for one generate call and its sequences, grouped by prompt (n samples each):
    every row unpadded, sample j of each prompt seeded with seed + j (as the server does)."""
    rows = prompt_rows(ids, mask)
    n = cfg.num_return_sequences
    if prefix_cache is True:  # per call: rows of one batch share their prefixes (nothing to share for one)
        prefix_cache = PrefixCache(model) if len(rows) > 1 else None
    engine = Engine(model, tok, max_rows=len(rows) * n, max_length=max(map(len, rows)) + cfg.max_new_tokens,
                    prefix_cache=prefix_cache or None, eos=eos)
    processors = ()
    if cfg.grammar is not None:  # json_schema / regex: one matcher per sequence
        from ..constrain import compile_grammar, grammar_processor
        if not eos:
            raise GptkitError("eos_token_id is needed with json_schema or regex: a row ends when its output is complete")
        processors = (grammar_processor(compile_grammar(cfg.grammar, tok, eos)),)
    params = from_generation_config(cfg, eos, logits_processors=processors)
    text = TokenText(tok) if tok is not None and (cfg.stops or emit) else None
    groups = []
    for i, r in enumerate(rows):
        group = []
        for j in range(n):
            events: list[Any] = []
            group.append(Seq(r, params, text, index=i * n + j, sample=j,
                             emit=events.append if emit else None, owner=events if emit else None))
        groups.append(group)
    return engine, groups


def _speculative_stream(model: Any, ids: torch.Tensor, cfg: GenerationConfig, eos: list[int], tok: Any
                        ) -> Iterator[str]:
    """stream() with speculative decoding: the text of one row, cut before a stop string."""
    import codecs

    from ..speculative import draft_model
    from .speculate import one_row
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    hold = max((len(s) for s in cfg.stops), default=1) - 1
    text, sent = "", 0
    for t in one_row(model, ids[0].tolist(), cfg, draft_model(model, cfg.speculative), _generator(model, cfg.seed)):
        if t in eos:
            break
        text += decoder.decode(_token_bytes(tok, [t]))
        cut = first_stop(text, cfg.stops)
        if cut >= 0:
            text = text[:cut]
            break
        if len(text) - hold > sent:
            yield text[sent:len(text) - hold]
            sent = len(text) - hold
    else:
        text += decoder.decode(b"", final=True)
    if len(text) > sent:
        yield text[sent:]


def generate_text(model: Any, tokenizer: Any, prompt: str | Sequence[str], prefix_cache: PrefixCache | bool = True,
                  **kwargs: Any) -> list[dict[str, Any]]:
    """Generate from one prompt or a batch of prompts (left-padded into one batch). One dict per
    sequence, prompt-major: prompt, text (the continuation, cut before a stop string), token_ids
    (the new tokens that lie wholly before the cut; no end-of-text), finish_reason
    ("eos" | "stop" | "length")."""
    tok = tokenizer if tokenizer is not None else resolve_tokenizer(model, None, "generate_text")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise GptkitError("no prompt given")
    rows = [_encode_prompt(tok, p) for p in prompts]
    g = run_generate(model, rows, None, tok, prefix_cache, **kwargs)
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
