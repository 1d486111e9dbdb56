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
import numbers
import warnings
from dataclasses import dataclass, fields
from typing import Any, Iterator, Sequence

import torch
from torch.nn import functional as F

from .errors import GptkitError

NEG = -1.0e9  # transformers' "impossible" score in beam search (kept for identical arithmetic)


@dataclass
class GenerationConfig:
    """The decoding options; names and defaults as transformers' GenerationConfig."""
    max_new_tokens: int = 20
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float | None = 1.0
    min_p: float | None = None
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    stop: Sequence[str] | str | None = None
    seed: int | None = None
    context: str = "error"  # what a too-long prompt gets: "error" | "truncate" (from the left)

    def validate(self) -> None:
        def bad(msg: str) -> None:
            raise GptkitError(msg)
        if not isinstance(self.max_new_tokens, numbers.Integral) or self.max_new_tokens < 0:
            bad(f"max_new_tokens must be an integer >= 0, got {self.max_new_tokens!r}")
        if not isinstance(self.do_sample, bool):
            bad(f"do_sample must be True or False, got {self.do_sample!r}")
        if self.do_sample and not self.temperature > 0:
            bad(f"temperature must be > 0 when sampling, got {self.temperature}")
        if self.top_k is not None and (not isinstance(self.top_k, numbers.Integral) or self.top_k < 0):
            bad(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            bad(f"top_p must be in (0, 1], got {self.top_p}")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            bad(f"min_p must be in [0, 1], got {self.min_p}")
        if not self.repetition_penalty > 0:
            bad(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if not isinstance(self.no_repeat_ngram_size, numbers.Integral) or self.no_repeat_ngram_size < 0:
            bad(f"no_repeat_ngram_size must be an integer >= 0, got {self.no_repeat_ngram_size!r}")
        if not isinstance(self.num_beams, numbers.Integral) or self.num_beams < 1:
            bad(f"num_beams must be an integer >= 1, got {self.num_beams!r}")
        if self.early_stopping not in (True, False, "never"):
            bad(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        if not isinstance(self.num_return_sequences, numbers.Integral) or self.num_return_sequences < 1:
            bad(f"num_return_sequences must be an integer >= 1, got {self.num_return_sequences!r}")
        if self.num_return_sequences > 1 and self.num_beams == 1 and not self.do_sample:
            bad(f"num_return_sequences={self.num_return_sequences} needs do_sample=True or num_beams > 1: "
                "greedy decoding would return the same sequence every time")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            bad(f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams ({self.num_beams})")
        if self.context not in ("error", "truncate"):
            bad(f"context must be 'error' or 'truncate', got {self.context!r}")
        if any(not isinstance(s, str) or not s for s in self.stops):
            bad("stop strings must be non-empty strings")

    @property
    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


def make_config(**kwargs: Any) -> GenerationConfig:
    names = {f.name for f in fields(GenerationConfig)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise TypeError(f"unexpected generation option(s): {', '.join(unknown)}")
    cfg = GenerationConfig(**kwargs)
    cfg.validate()
    return cfg


# ---------------------------------------------------------------------------- logits processing
# Each function takes and returns fp32 scores (rows, vocab); -inf marks a filtered token.

def repetition_penalty_(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty as transformers applies it: divide positive, multiply negative scores of the
    tokens already in the row (prompt included, left padding excluded). `seen` is (rows, vocab) bool."""
    return torch.where(seen, torch.where(scores < 0, scores * penalty, scores / penalty), scores)


def seen_tokens(seqs: torch.Tensor, valid: torch.Tensor | None, vocab: int) -> torch.Tensor:
    """(rows, vocab) bool: which tokens occur in each row of seqs where valid (None = everywhere)."""
    ids = seqs if valid is None else seqs.masked_fill(~valid, vocab)
    seen = torch.zeros(seqs.size(0), vocab + 1, dtype=torch.bool, device=seqs.device)
    return seen.scatter_(1, ids, True)[:, :vocab]


def banned_ngram_tokens(row: Sequence[int], n: int) -> list[int]:
    """The tokens that would complete an n-gram already present in `row` (no_repeat_ngram_size).

    Left padding is not part of the row (transformers counts it, which only shows with n = 1: it
    bans the pad id, usually end-of-text, in padded rows; gptkit keeps batched = one by one)."""
    if len(row) < n:
        return []
    if n == 1:
        return list(row)
    prefix = list(row[len(row) - n + 1:])
    first = prefix[0]
    return [row[i + n - 1] for i in range(len(row) - n + 1)
            if row[i] == first and list(row[i:i + n - 1]) == prefix]


def warp(scores: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
         top_p: float | None = None, min_p: float | None = None, min_keep: int = 1) -> torch.Tensor:
    """Temperature, then top-k, top-p and min-p filtering: transformers' warpers, in its order."""
    if temperature != 1.0:
        scores = scores / temperature
    if top_k:
        k = min(max(top_k, min_keep), scores.size(-1))
        kth = torch.topk(scores, k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_scores, idx = torch.sort(scores, descending=False, dim=-1)
        cum = sorted_scores.softmax(-1).cumsum(-1)
        remove = cum <= 1 - top_p
        remove[..., -min_keep:] = False
        scores = scores.masked_fill(remove.scatter(-1, idx, remove), float("-inf"))
    if min_p is not None:
        probs = scores.softmax(-1)
        remove = probs < min_p * probs.amax(-1, keepdim=True)
        keep = torch.topk(probs, min(min_keep, probs.size(-1)), dim=-1).indices
        scores = scores.masked_fill(remove.scatter(-1, keep, False), float("-inf"))
    return scores


class Processors:
    """The logits processors of one generate call, applied in transformers' order."""

    def __init__(self, cfg: GenerationConfig, vocab: int, prompt: torch.Tensor,
                 mask: torch.Tensor | None, min_keep: int) -> None:
        self.cfg, self.vocab, self.min_keep = cfg, vocab, min_keep
        self.prompt_valid = mask.bool() if mask is not None else None
        self.penalty = cfg.repetition_penalty != 1.0
        self.ngram = cfg.no_repeat_ngram_size
        self.warping = cfg.do_sample and (cfg.temperature != 1.0 or bool(cfg.top_k) or cfg.min_p is not None
                                          or (cfg.top_p is not None and cfg.top_p < 1.0))

    def __call__(self, seqs: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """seqs: (rows, len) ids so far (prompt first, left-padded like the prompt)."""
        if self.penalty:
            valid = None
            if self.prompt_valid is not None:
                tail = self.prompt_valid.new_ones(seqs.size(0), seqs.size(1) - self.prompt_valid.size(1))
                valid = torch.cat([self.prompt_valid, tail], 1)
            scores = repetition_penalty_(scores, seen_tokens(seqs, valid, self.vocab), self.cfg.repetition_penalty)
        if self.ngram:
            rows = seqs.tolist()
            if self.prompt_valid is not None:
                pads = (~self.prompt_valid).sum(1).tolist()
                rows = [r[p:] for r, p in zip(rows, pads)]
            banned = [(i, t) for i, r in enumerate(rows) for t in banned_ngram_tokens(r, self.ngram)]
            if banned:
                r, t = zip(*banned)
                scores = scores.index_put((torch.tensor(r, device=scores.device), torch.tensor(t, device=scores.device)),
                                          torch.tensor(float("-inf"), device=scores.device))
        if self.warping:
            c = self.cfg
            scores = warp(scores, c.temperature, c.top_k, c.top_p, c.min_p, self.min_keep)
        return scores


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
    return [int(eos_token_id)] if isinstance(eos_token_id, int) else [int(e) for e in eos_token_id]


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


def resolve_tokenizer(model: Any, tokenizer: Any, why: str) -> Any:
    tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tok is None:
        detail = getattr(model, "tokenizer_error", None)
        raise GptkitError(f"{why} needs a tokenizer: pass tokenizer=..., or load a model directory that "
                          "has vocab.json + merges.txt" + (f" ({detail})" if detail else ""))
    return tok


def _token_bytes(tokenizer: Any, ids: list[int]) -> bytes:
    if hasattr(tokenizer, "decode_bytes"):
        return tokenizer.decode_bytes(ids)
    return tokenizer.decode(ids).encode("utf-8")


class StopStrings:
    """Per-row incremental detokenisation that spots stop strings in the new text."""

    def __init__(self, tokenizer: Any, stops: Sequence[str], rows: int) -> None:
        self.tokenizer, self.stops = tokenizer, tuple(stops)
        self.longest = max(len(s) for s in self.stops)
        self.decoders = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in range(rows)]
        self.texts = [""] * rows

    def update(self, tokens: list[int], active: list[bool]) -> list[bool]:
        hits = []
        for i, (t, on) in enumerate(zip(tokens, active)):
            if not on:
                hits.append(False)
                continue
            piece = self.decoders[i].decode(_token_bytes(self.tokenizer, [t]))
            self.texts[i] += piece
            window = self.texts[i][-(len(piece) + self.longest - 1):] if piece else ""
            hits.append(any(s in window for s in self.stops))
        return hits


def first_stop(text: str, stops: Sequence[str]) -> int:
    """Index where the earliest stop string starts in text, or -1."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else -1


# ---------------------------------------------------------------------------- decoding

def _positions(mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if mask is None else (mask.cumsum(-1) - 1).clamp(min=0)


def _generator(model: Any, seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    g = torch.Generator(device=model.device)
    g.manual_seed(seed)
    return g


class _Decoder:
    """Prompt prefill and one-token steps over a preallocated KV cache; rows may be padded."""

    def __init__(self, model: Any, ids: torch.Tensor, mask: torch.Tensor | None, max_new: int, expand: int = 1):
        self.model = model
        B, T = ids.shape
        self.mask = None
        if mask is not None:  # the full (rows, T + max_new) key mask, sliced step by step
            full = torch.cat([mask, mask.new_ones(B, max_new)], 1)
            self.mask = full.repeat_interleave(expand, 0) if expand > 1 else full
        pos = _positions(mask)
        if expand > 1:  # prefill each prompt once, then copy its cache rows to its beams/samples
            prefill = model.new_cache(B, T + max_new)
            h = model.hidden_states(ids, attention_mask=mask, position_ids=pos, cache=prefill)
            prefill.reorder(torch.arange(B, device=ids.device).repeat_interleave(expand))
            self.cache = prefill
            h = h[:, -1].repeat_interleave(expand, 0)
        else:
            self.cache = model.new_cache(B, T + max_new)
            h = model.hidden_states(ids, attention_mask=mask, position_ids=pos, cache=self.cache)[:, -1]
        self.next_pos = None if pos is None else pos[:, -1:].repeat_interleave(expand, 0) + 1
        self.logits = model.lm_head(h).float()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row; the next-token logits (rows, vocab), fp32."""
        L = self.cache.length + 1
        mask = None if self.mask is None else self.mask[:, :L]
        h = self.model.hidden_states(tokens[:, None], attention_mask=mask, position_ids=self.next_pos,
                                     cache=self.cache)
        if self.next_pos is not None:
            self.next_pos = self.next_pos + 1
        self.logits = self.model.lm_head(h[:, -1]).float()
        return self.logits


def sample_steps(model: Any, ids: torch.Tensor, mask: torch.Tensor | None, cfg: GenerationConfig,
                 eos: list[int], pad: int, generator: torch.Generator | None,
                 stopper: StopStrings | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Greedy / sampling, each row stopping on its own. ids: (B, T), expanded to B *
    num_return_sequences rows here. Yields (token per row, row done after it) once per step;
    rows already done get `pad`."""
    n = cfg.num_return_sequences
    B, T = ids.shape
    rows = B * n
    dec = _Decoder(model, ids, mask, cfg.max_new_tokens, expand=n)
    if n > 1:
        ids = ids.repeat_interleave(n, 0)
        mask = mask.repeat_interleave(n, 0) if mask is not None else None
    procs = Processors(cfg, model.config.vocab_size, ids, mask, min_keep=1)
    need_seqs = procs.penalty or bool(procs.ngram)
    seqs = torch.full((rows, T + cfg.max_new_tokens), pad, dtype=torch.long, device=ids.device)
    seqs[:, :T] = ids
    eos_t = torch.tensor(eos, device=ids.device) if eos else None
    done = torch.zeros(rows, dtype=torch.bool, device=ids.device)
    logits = dec.logits
    for step in range(cfg.max_new_tokens):
        scores = procs(seqs[:, :T + step], logits) if need_seqs or procs.warping else logits
        if cfg.do_sample:
            tok = torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(1)
        else:
            tok = scores.argmax(-1)
        tok = tok.masked_fill(done, pad)
        seqs[:, T + step] = tok
        now = done if eos_t is None else done | torch.isin(tok, eos_t)
        if stopper is not None:
            hit = stopper.update(tok.tolist(), (~done).tolist())
            now = now | torch.tensor(hit, device=now.device)
        yield tok, now
        done = now
        if step == cfg.max_new_tokens - 1 or bool(done.all()):
            return
        logits = dec.step(tok)


def beam_search(model: Any, ids: torch.Tensor, mask: torch.Tensor | None, cfg: GenerationConfig,
                eos: list[int], pad: int, generator: torch.Generator | None,
                stop_hit: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers 5's vectorised beam search (and beam sampling), step for step.

    Returns (sequences (B * num_return_sequences, T + generated), new-token count per sequence).
    """
    K, N = cfg.num_beams, cfg.max_new_tokens
    B, T = ids.shape
    max_length = T + N
    dec = _Decoder(model, ids, mask, N, expand=K)
    flat_mask = mask.repeat_interleave(K, 0) if mask is not None else None
    dev = ids.device
    n_eos = len(eos)
    keep = max(2, 1 + n_eos) * K
    top_num_beam_mask = torch.cat([torch.ones(K, dtype=torch.bool), torch.zeros(keep - K, dtype=torch.bool)]).to(dev)
    procs = Processors(cfg, model.config.vocab_size, ids.repeat_interleave(K, 0), flat_mask,
                       min_keep=n_eos + 1 if n_eos else 2)
    eos_t = torch.tensor(eos, device=dev) if eos else None

    running = torch.full((B, K, max_length), pad, dtype=torch.long, device=dev)
    running[:, :, :T] = ids[:, None, :]
    sequences = running.clone()
    running_scores = torch.zeros((B, K), dtype=torch.float, device=dev)
    running_scores[:, 1:] = NEG
    beam_scores = torch.full((B, K), NEG, dtype=torch.float, device=dev)
    finished = torch.zeros((B, K), dtype=torch.bool, device=dev)
    improvable = torch.ones((B, 1), dtype=torch.bool, device=dev)
    running_idx = torch.full((B, K, max(N, 1)), -1, dtype=torch.long, device=dev)
    beam_idx = running_idx.clone()
    batch_offset = torch.arange(B, device=dev).view(-1, 1) * K
    early = cfg.early_stopping

    logits = dec.logits
    cur = T
    while N > 0:
        log_probs = F.log_softmax(logits, dim=-1)
        log_probs = procs(running[:, :, :cur].reshape(B * K, cur), log_probs)
        V = log_probs.size(-1)
        acc = (log_probs.view(B, K, V) + running_scores[:, :, None]).reshape(B, K * V)
        if cfg.do_sample:
            top_i = torch.multinomial(F.softmax(acc, dim=-1), num_samples=keep, generator=generator)
            top_lp = torch.gather(acc, 1, top_i)
            top_lp, order = top_lp.sort(dim=-1, descending=True)
            top_i = top_i.gather(-1, order)
        else:
            top_lp, top_i = torch.topk(acc, k=keep)
        src = top_i // V
        tok = top_i % V
        top_seqs = torch.take_along_dim(running, src[..., None], dim=1)
        top_idx = torch.take_along_dim(running_idx, src[..., None], dim=1)
        top_seqs[:, :, cur] = tok
        top_idx[:, :, cur - T] = src + batch_offset

        hits = torch.full((B, keep), cur + 1 >= max_length, dtype=torch.bool, device=dev)
        if eos_t is not None:
            hits = hits | torch.isin(tok, eos_t)
        if stop_hit is not None:
            hits = hits | stop_hit(top_seqs[:, :, T:cur + 1])

        # the best num_beams unfinished continuations carry on
        run_lp = top_lp + hits.to(torch.float32) * NEG
        nxt = torch.topk(run_lp, k=K)[1]
        running = torch.take_along_dim(top_seqs, nxt[..., None], dim=1)
        running_scores = torch.take_along_dim(run_lp, nxt, dim=1)
        running_idx = torch.take_along_dim(top_idx, nxt[..., None], dim=1)

        # finished hypotheses among the top num_beams enter the kept set if they score better
        just = hits & top_num_beam_mask[None, :]
        fin_lp = top_lp / ((cur + 1 - T) ** cfg.length_penalty)
        full = torch.all(finished, dim=-1, keepdim=True) & (early is True)
        fin_lp += full.to(torch.float32) * NEG
        fin_lp += (~improvable).to(torch.float32) * NEG
        fin_lp += (~just) * NEG
        m_seqs = torch.cat((sequences, top_seqs), dim=1)
        m_scores = torch.cat((beam_scores, fin_lp), dim=1)
        m_idx = torch.cat((beam_idx, top_idx), dim=1)
        m_fin = torch.cat((finished, just), dim=1)
        best = torch.topk(m_scores, k=K)[1]
        sequences = torch.take_along_dim(m_seqs, best[..., None], dim=1)
        beam_scores = torch.take_along_dim(m_scores, best, dim=1)
        beam_idx = torch.take_along_dim(m_idx, best[..., None], dim=1)
        finished = torch.take_along_dim(m_fin, best, dim=1)

        reorder = running_idx[:, :, cur - T].reshape(-1)
        cur += 1
        # can a running beam still beat the worst kept hypothesis?
        if early == "never" and cfg.length_penalty > 0.0:
            best_len = max_length - T
        else:
            best_len = cur - T
        best_running = running_scores[:, :1] / (best_len ** cfg.length_penalty)
        worst_fin = torch.where(finished, torch.min(beam_scores, dim=1, keepdim=True)[0], NEG)
        improvable = improvable & torch.any(best_running > worst_fin, dim=-1, keepdim=True)
        go_on = bool(improvable.any()) and not (bool(finished.all()) and early is True) and not bool(hits.all())
        if not go_on:
            break
        dec.cache.reorder(reorder)
        logits = dec.step(running[:, :, cur - 1].reshape(-1))

    n = cfg.num_return_sequences
    sequences = sequences[:, :n].reshape(B * n, max_length)
    beam_idx = beam_idx[:, :n].reshape(B * n, -1)
    lengths = (beam_idx >= 0).sum(1) if N > 0 else torch.zeros(B * n, dtype=torch.long, device=dev)
    return sequences[:, :T + int(lengths.max())], lengths


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
        stopper = StopStrings(tok, cfg.stops, ids.size(0) * cfg.num_return_sequences) if tok is not None else None
        steps, lengths, done = [], None, None
        for t, now in sample_steps(model, ids, mask, cfg, eos, pad, generator, stopper):
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
    stop=None (strings; needs a tokenizer), seed=None, context="error" | "truncate".

    input_ids: a (batch, T) tensor (with attention_mask if left-padded), one list of ids, or a list
    of lists of different lengths (left-padded here)."""
    return run_generate(model, input_ids, attention_mask, tokenizer, **kwargs).sequences


def _encode_prompt(tokenizer: Any, prompt: Any) -> list[int]:
    if isinstance(prompt, str):
        ids = tokenizer.encode(prompt)
        if not ids:  # an empty prompt: start from end-of-text, as GPT-2 samples unconditionally
            eot = getattr(tokenizer, "eot_id", None)
            if eot is None:
                raise GptkitError("the prompt is empty and the tokenizer has no end-of-text token to start from")
            ids = [eot]
        return ids
    if isinstance(prompt, torch.Tensor):
        return prompt.reshape(-1).tolist()
    return list(prompt)


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
        for t, _ in sample_steps(model, ids, mask, cfg, eos, pad, _generator(model, cfg.seed)):
            t = int(t[0])
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
        text = tok.decode(new)
        cut = first_stop(text, stops)
        if cut >= 0:
            text, reason = text[:cut], "stop"
            new = _ids_within(tok, new, cut)
        out.append({"prompt": prompts[i // per], "text": text, "token_ids": new, "finish_reason": reason})
    return out


def _ids_within(tokenizer: Any, ids: list[int], n_chars: int) -> list[int]:
    """The longest prefix of ids whose text fits in the first n_chars characters."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    length = 0
    for k, t in enumerate(ids):
        length += len(decoder.decode(_token_bytes(tokenizer, [t])))
        if length > n_chars:
            return ids[:k]
    return ids
