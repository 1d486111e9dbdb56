"""The engine: sequences in the rows of one KV cache, prefilled one prompt at a time (its kept
prefix copied from the prefix cache), decoded together one token per row per step, each row
choosing its token by its own parameters, finishing on its own (end-of-text, a stop string, a
logits processor's end, max_tokens) and leaving its row to the next sequence.

The model computes logits (`hidden_states`, then `output_logits`, so a soft-capped model is
capped); the engine decides what to do with them. It is synchronous and single-threaded:
model.generate runs it to the end (`run`), the server's scheduler (serve/engine.py) drives it
step by step from its own thread.

Rows 0 .. len(rows) - 1 are the running sequences; a retiring row is replaced by the last one (its
cache row copied), so every decode step runs over the first rows of the cache.
"""
from __future__ import annotations

import codecs
from collections.abc import Iterable
from typing import Any

import torch

from .prefix import PrefixCache
from .sampler import choose
from .sequence import Event, Seq, TokenInfo
from .text import TokenText


def default_eos(model: Any, tokenizer: Any) -> set[int]:
    """The model's end-of-text ids (else the tokenizer's), and a chat model's end of turn."""
    eos = model.config.eos_token_id
    if eos is None:
        eos = getattr(tokenizer, "eot_id", None)
    ids = set() if eos is None else {eos} if isinstance(eos, int) else set(eos)
    turn_end = getattr(tokenizer, "special_ids", {}).get("<|im_end|>")
    if turn_end is not None:
        ids.add(turn_end)
    return ids


class Engine:
    """Up to max_rows sequences of up to max_length tokens each (prompt + output)."""

    def __init__(self, model: Any, tokenizer: Any = None, max_rows: int = 16, max_length: int | None = None,
                 prefix_cache: PrefixCache | None = None, eos: Iterable[int] | None = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.vocab = model.config.vocab_size
        self.max_rows = max_rows
        self.eos = set(eos) if eos is not None else default_eos(model, tokenizer)
        self.cache = model.new_cache(max_rows, max_length or model.config.n_positions)
        if prefix_cache is not None and prefix_cache.model_ref != id(model):
            raise ValueError("this prefix cache holds another model's keys and values")
        self.prefix = prefix_cache
        self.token_text = TokenText(tokenizer) if tokenizer is not None else None
        self.rows: list[Seq] = []
        self.steps = 0
        self.tokens_generated = 0

    @property
    def free(self) -> int:
        return self.max_rows - len(self.rows)

    # ------------------------------------------------------------------ admission
    def add(self, group: list[Seq]) -> None:
        """Admit sequences that share one prompt (the samples of one request): the prompt is
        prefilled once into the first free row and copied to the others' rows."""
        model, cache = self.model, self.cache
        prompt = group[0].prompt
        row = len(self.rows)
        want_prompt_lp = group[0].params.prompt_logprobs
        cached = self.prefix.load(prompt, cache, row) if self.prefix is not None and not want_prompt_lp else 0
        if cached == 0:
            cache.set_length(row, 0)
        cache.window(row, 1)
        ids = torch.tensor([prompt[cached:]], dtype=torch.long, device=model.device)
        h = model.hidden_states(ids, cache=cache)
        if self.prefix is not None:
            self.prefix.store(prompt, cache, row)
        for j in range(1, len(group)):
            cache.copy_row(row, row + j)
        logits = model.output_logits(h[:, -1]).float()[0]
        if want_prompt_lp and group[0].index % max(getattr(group[0].owner, "n", 1), 1) == 0:
            self._prompt_logprobs(group[0], model.output_logits(h[0, :-1]).float())
        for j, s in enumerate(group):
            s.row, s.cached = row + j, cached
            s.start(self.vocab, model.device)
            self.rows.append(s)
        for s, t in zip(group, choose(group, logits[None].expand(len(group), -1))):
            self._accept(s, logits, t)

    def _prompt_logprobs(self, s: Seq, logits: torch.Tensor) -> None:
        """Logprobs of prompt tokens 1.. given the ones before (echo + logprobs)."""
        k = s.params.logprobs or 0
        lp = torch.log_softmax(logits, -1)
        infos, offset = [], 0
        dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        tt = self.token_text
        for i, t in enumerate(s.prompt):
            row = lp[i - 1] if i else None
            infos.append(TokenInfo(t, tt.text(t), float(row[t]) if i else float("nan"),
                                   self._top(row, k) if i else [], offset))
            offset += len(dec.decode(tt.bytes(t)))
        if s.emit is not None:
            s.emit(Event("prompt", index=s.index, tokens=infos))

    # ------------------------------------------------------------------ decoding
    def step(self) -> None:
        """One token for every running row."""
        model, cache, rows = self.model, self.cache, self.rows
        B = len(rows)
        cache.window(0, B)
        mask = cache.key_mask(1)
        pos = cache.positions(1) if mask is not None else None
        tokens = torch.tensor([[s.last] for s in rows], dtype=torch.long, device=model.device)
        h = model.hidden_states(tokens, attention_mask=mask, position_ids=pos, cache=cache)
        logits = model.output_logits(h[:, -1]).float()
        self.steps += 1
        live = [i for i, s in enumerate(rows) if not s.done]
        if len(live) < B:
            logits = logits[live]
        seqs = [rows[i] for i in live]
        for j, (s, t) in enumerate(zip(seqs, choose(seqs, logits))):
            self._accept(s, logits[j], t)

    def retire(self) -> list[Seq]:
        """Free the rows of finished and cancelled sequences (the running rows stay contiguous)."""
        rows, gone = self.rows, []
        for i in range(len(rows) - 1, -1, -1):
            s = rows[i]
            if s.cancelled and not s.done:
                s.done = True
            if not s.done:
                continue
            gone.append(s)
            last = rows.pop()
            if last is not s:
                self.cache.copy_row(len(rows), i)
                last.row = i
                rows[i] = last
        return gone

    def run(self, groups: list[list[Seq]]) -> None:
        """Every group to its end (model.generate): admitted as rows free up, decoded together."""
        pending = list(groups)
        while pending or self.rows:
            while pending and len(pending[0]) <= self.free:
                self.add(pending.pop(0))
            self.retire()
            if self.rows:
                self.step()
                self.retire()

    # ------------------------------------------------------------------ a chosen token
    def _accept(self, s: Seq, logits: torch.Tensor, t: int) -> None:
        """Record s's next token t (chosen from these logits) and tell the caller what it means."""
        if s.cancelled or s.done:
            return
        p = s.params
        s.out.append(t)
        s.last = t
        self.tokens_generated += 1
        if s.seen is not None:
            s.seen[t] = True
        if s.counts is not None:
            s.counts[t] += 1
        ended = False
        for proc in s.processors:
            if hasattr(proc, "accept"):
                proc.accept(t)
            ended = ended or bool(getattr(proc, "is_finished", lambda: False)())
        info = None
        if p.logprobs is not None:
            lp = torch.log_softmax(logits, -1)
            info = TokenInfo(t, self.token_text.text(t), float(lp[t]), self._top(lp, p.logprobs),
                             len(s.text.text) if s.text is not None else 0)
        eos = p.eos_token_ids if p.eos_token_ids is not None else self.eos
        if t in eos:
            self._finish(s, "stop", flush=True)
            return
        if s.text is not None:
            if s.text.push(t):
                if info is not None:
                    s.tokens.append(info)
                s.tokens = [ti for ti in s.tokens if ti.offset < len(s.text.text)]
                self._finish(s, "stop")
                return
            if info is not None:
                s.tokens.append(info)
        if ended:
            self._finish(s, "stop", flush=True)
        elif len(s.out) >= p.max_tokens:
            self._finish(s, "length", flush=True)
        elif s.emit is not None and s.text is not None and (s.text.ready > s.sent or s.tokens):
            self._send(s, s.text.ready)

    def _send(self, s: Seq, end: int) -> None:
        text = s.text.text[s.sent:end] if s.text is not None and end > s.sent else ""
        s.sent = max(s.sent, end)
        tokens, s.tokens = s.tokens, []
        if s.emit is not None:
            s.emit(Event("delta", index=s.index, text=text, tokens=tokens))

    def _finish(self, s: Seq, reason: str, flush: bool = False) -> None:
        if s.text is not None:
            if flush and s.text.flush():
                reason = "stop"
            if len(s.text.text) > s.sent or s.tokens:
                self._send(s, len(s.text.text))
        s.done, s.finish_reason = True, reason
        if s.emit is not None:
            s.emit(Event("finish", index=s.index, reason=reason, prompt_tokens=len(s.prompt),
                         completion_tokens=len(s.out), cached_tokens=s.cached))

    def _top(self, lp: torch.Tensor, k: int) -> list[tuple[int, str, float]]:
        if k <= 0:
            return []
        vals, idx = torch.topk(lp, min(k, lp.numel()))
        return [(int(i), self.token_text.text(int(i)), float(v)) for v, i in zip(vals.tolist(), idx.tolist())]
