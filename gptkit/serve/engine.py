"""Continuous batching over a slot-based KV cache: the decoding engine behind `gptkit serve`.

Over 500 lines, long because admission, prefill, the decode step, per-row sampling and teardown
all read and write one slot table: kept in one module so that its invariants stay in one place.

One thread owns the model. Requests are queued (bounded); between two decode steps the engine
admits queued sequences into free slots (prefilling each prompt once, straight into its slot's
cache rows, copied to its other samples when n > 1), runs one decode step for every active row
together, samples each row with its own parameters and its own torch.Generator, and retires the
rows that finished (end-of-text, a stop string, max_tokens) or whose client went away. So a
request joins and leaves the running batch at step boundaries: nobody waits for a batch to fill
or for another request to end.

Rows live in slots 0..rows-1 of one preallocated cache (layers, slots, heads, n_positions,
head_dim); a retiring row is replaced by the last one (its cache rows copied), so the active rows
stay contiguous and every step attends over plain views of the cache. Each row has its own length:
a step writes each row's new key/value at that row's position and masks keys beyond it.

Sampling: greedy rows take the argmax; a sampling row draws one uniform number per token from
its own torch.Generator (seeded from the request's seed; sample j of a request uses seed + j) and
takes the first token whose cumulative probability reaches it, all rows in one batched
softmax/cumsum/searchsorted (per-row torch.multinomial calls cost more than a small model's decode
step at a 50k vocabulary). A row's tokens depend only on its own logits and its own generator,
never on the other rows, so a seeded request gives the same text alone or in a batch (up to float
rounding of batched matmuls).
"""
from __future__ import annotations

import codecs
import collections
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import GptkitError
from ..generate.processors import repetition_penalty_, warp

log = logging.getLogger("gptkit.serve")


@dataclass
class SamplingParams:
    """Per-request decoding options (OpenAI's names, plus gptkit's top_k / min_p / repetition_penalty)."""
    max_tokens: int = 16
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    min_p: float = 0.0  # 0 = off
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: int | None = None  # how many top alternatives to return per token (None = no logprobs)
    prompt_logprobs: bool = False  # logprobs of the prompt tokens too (completions with echo)
    grammar: Any = None  # a gptkit.constrain.CompiledGrammar the output must match (response_format)


@dataclass
class TokenInfo:
    token: int
    text: str  # the token's own text ("bytes:\\xNN" for a partial UTF-8 sequence)
    logprob: float
    top: list[tuple[int, str, float]]  # (id, text, logprob), best first
    offset: int  # where its text starts in the completion text


@dataclass
class Event:
    """What the engine tells a request: kind is "prompt" (prompt-token logprobs), "delta" (new
    text), "finish" (reason: stop | length), or "error" (message; the request is over)."""
    kind: str
    index: int = 0
    text: str = ""
    tokens: list[TokenInfo] = field(default_factory=list)
    reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    message: str = ""


class Request:
    """A submitted request: its sequences (one per prompt and sample) and how to reach its caller."""

    def __init__(self, prompts: list[list[int]], params: SamplingParams, n: int,
                 emit: Callable[[Event], None]) -> None:
        self.prompts, self.params, self.n, self.emit = prompts, params, n, emit
        self.cancelled = False
        self.created = time.monotonic()
        self.pending = [Sequence(self, i * n + j, p, j) for i, p in enumerate(prompts) for j in range(n)]
        self.live = len(self.pending)

    def cancel(self) -> None:
        """Stop generating (the client left or timed out); the engine frees the slots at its next step."""
        self.cancelled = True


class Sequence:
    """One row: a prompt and the tokens sampled after it."""

    def __init__(self, request: Request, index: int, prompt: list[int], sample: int) -> None:
        self.request, self.index, self.prompt = request, index, prompt
        p = request.params
        self.params = p
        self.greedy = p.temperature == 0
        self.generator: torch.Generator | None = None
        self.seed = None
        if not self.greedy:
            base = p.seed if p.seed is not None else secrets.randbits(63)
            self.seed = (base + sample) % 2**64
        self.out: list[int] = []
        self.length = 0  # tokens in the cache
        self.last = -1  # the sampled token not yet fed
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.sent = 0
        self.hold = max((len(s) for s in p.stop), default=1) - 1
        self.tokens: list[TokenInfo] = []
        self.seen: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        self.bias: tuple[torch.Tensor, torch.Tensor] | None = None
        self.constraint: Any = None
        if p.grammar is not None:
            from ..constrain import GrammarConstraint
            self.constraint = GrammarConstraint(p.grammar, 1)
        self.done = False


class SlotCache:
    """Keys and values of every slot, (layers, slots, kv heads, positions, head_dim), and the
    per-step view the model's attention sees (the KVCache interface: length, update, advance)."""

    def __init__(self, model: Any, slots: int, max_length: int) -> None:
        c = model.config
        shape = c.kv_cache_shape(slots, max_length)  # only the key/value heads
        self.k = torch.zeros(shape, device=model.device, dtype=model.dtype)
        self.v = torch.zeros(shape, device=model.device, dtype=model.dtype)
        self.max_length = max_length
        self.length = 0  # what the model takes as "past": the longest row's length this step
        self.mode = "decode"
        self.rows = 0
        self.row = 0
        self.pos: torch.Tensor | None = None
        self.arange = torch.arange(slots, device=model.device)

    # -- the model-facing interface
    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "prefill":  # one prompt (or a speculative step's tokens), straight into its slot
            T, start = k.size(2), self.length
            self.k[layer, self.row, :, start:start + T] = k[0]
            self.v[layer, self.row, :, start:start + T] = v[0]
            if start == 0:
                return k, v
            return self.k[layer, self.row:self.row + 1, :, :start + T], self.v[layer, self.row:self.row + 1, :, :start + T]
        B, end = self.rows, self.length + 1
        rows = self.arange[:B]
        self.k[layer][rows, :, self.pos] = k[:, :, 0]
        self.v[layer][rows, :, self.pos] = v[:, :, 0]
        return self.k[layer, :B, :, :end], self.v[layer, :B, :, :end]

    def advance(self, n: int) -> None:
        pass  # lengths are kept per row by the engine

    # -- slot management
    def copy_row(self, src: int, dst: int, length: int) -> None:
        self.k[:, dst, :, :length] = self.k[:, src, :, :length]
        self.v[:, dst, :, :length] = self.v[:, src, :, :length]


class QueueFull(Exception):
    pass


class Engine:
    """The batching scheduler. submit() from any thread; a background thread does the work."""

    def __init__(self, model: Any, tokenizer: Any, max_batch: int = 16, max_queue: int = 64,
                 speculator: Any = None) -> None:
        if max_batch < 1 or max_queue < 1:
            raise GptkitError("max_batch and max_queue must be >= 1")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_batch, self.max_queue = max_batch, max_queue
        self.n_ctx = model.config.n_positions
        self.vocab = model.config.vocab_size
        eos = model.config.eos_token_id
        if eos is None:
            eos = getattr(tokenizer, "eot_id", None)
        self.eos = set() if eos is None else {eos} if isinstance(eos, int) else set(eos)
        turn_end = getattr(tokenizer, "special_ids", {}).get("<|im_end|>")  # a chat model's end of turn
        if turn_end is not None:
            self.eos.add(turn_end)
        self.cache = SlotCache(model, max_batch, self.n_ctx)
        self.speculator = speculator  # a serve.speculate.Speculator: drafts for a row running alone
        self.rows: list[Sequence] = []
        self.queue: collections.deque[Request] = collections.deque()
        self.cv = threading.Condition()
        self.stopping = False
        self.thread: threading.Thread | None = None
        self.steps = 0
        self.tokens_generated = 0
        self.failed: str | None = None
        self._token_text_cache: dict[int, str] = {}

    # ------------------------------------------------------------------ public
    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="gptkit-engine", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        with self.cv:
            self.stopping = True
            self.cv.notify_all()
        if self.thread is not None:
            self.thread.join(timeout=30)

    @property
    def queued(self) -> int:
        return len(self.queue)

    @property
    def running(self) -> int:
        return len(self.rows)

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def submit(self, prompts: list[list[int]], params: SamplingParams, n: int,
               emit: Callable[[Event], None]) -> Request:
        """Queue a request (prompts already checked against the context); QueueFull when the
        queue holds max_queue requests already."""
        req = Request(prompts, params, n, emit)
        with self.cv:
            if len(self.queue) >= self.max_queue:
                raise QueueFull(f"the server's queue is full ({self.max_queue} requests waiting)")
            self.queue.append(req)
            self.cv.notify_all()
        return req

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        torch.set_grad_enabled(False)  # thread-local: this thread only ever infers
        with torch.inference_mode():
            while True:
                with self.cv:
                    while not self.stopping and not self.rows and not self.queue:
                        self.cv.wait(timeout=1.0)
                    if self.stopping:
                        break
                try:
                    self._admit()
                    self._retire()
                    if self.rows:
                        self._step()
                        self._retire()
                except Exception as e:  # a bug or out-of-memory: fail who is in flight, keep serving
                    log.exception("engine step failed")
                    self._fail_all(f"internal error while generating: {type(e).__name__}: {e}")
        self._fail_all("the server is shutting down", include_queue=True)

    def _fail_all(self, message: str, include_queue: bool = False) -> None:
        reqs = {id(s.request): s.request for s in self.rows}
        self.rows = []
        self.cache.rows = 0
        if include_queue:
            with self.cv:
                reqs.update({id(r): r for r in self.queue})
                self.queue.clear()
        for r in reqs.values():
            r.live = 0
            r.emit(Event("error", message=message))

    def _admit(self) -> None:
        while len(self.rows) < self.max_batch:
            with self.cv:
                while self.queue and self.queue[0].cancelled:
                    self.queue.popleft()
                if not self.queue:
                    return
                req = self.queue[0]
                free = self.max_batch - len(self.rows)
                group = [req.pending[0]]
                for s in req.pending[1:free]:  # the following samples of the same prompt share a prefill
                    if s.prompt is not group[0].prompt:
                        break
                    group.append(s)
                del req.pending[:len(group)]
                if not req.pending:
                    self.queue.popleft()
            self._prefill(group)

    def _prefill(self, group: list[Sequence]) -> None:
        model, cache = self.model, self.cache
        prompt = group[0].prompt
        T = len(prompt)
        first = len(self.rows)
        ids = torch.tensor([prompt], dtype=torch.long, device=model.device)
        cache.mode, cache.row, cache.length = "prefill", first, 0
        try:
            h = model.hidden_states(ids, cache=cache)
        finally:
            cache.mode = "decode"
        for j in range(1, len(group)):
            cache.copy_row(first, first + j, T)
        logits = model.lm_head(h[:, -1]).float()[0]
        req = group[0].request
        if req.params.prompt_logprobs and group[0].index % req.n == 0:
            self._prompt_logprobs(group[0], model.lm_head(h[0, :-1]).float())
        for s in group:
            s.length = T
            if s.params.repetition_penalty != 1.0:
                s.seen = torch.zeros(self.vocab, dtype=torch.bool, device=model.device)
                s.seen[torch.tensor(prompt, device=model.device)] = True
            if s.params.presence_penalty or s.params.frequency_penalty:
                s.counts = torch.zeros(self.vocab, dtype=torch.float32, device=model.device)
            if s.seed is not None:
                s.generator = torch.Generator(device=model.device)
                s.generator.manual_seed(s.seed)
            self.rows.append(s)
        for s, t in zip(group, self._choose(group, logits[None].expand(len(group), -1))):
            self._accept(s, logits, t)

    def _prompt_logprobs(self, s: Sequence, logits: torch.Tensor) -> None:
        """Logprobs of prompt tokens 1.. given the ones before (echo + logprobs)."""
        k = s.params.logprobs or 0
        lp = torch.log_softmax(logits, -1)
        infos, offset = [], 0
        dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for i, t in enumerate(s.prompt):
            text = self._token_text(t)
            if i == 0:
                infos.append(TokenInfo(t, text, float("nan"), [], offset))
            else:
                row = lp[i - 1]
                top = self._top(row, k)
                infos.append(TokenInfo(t, text, float(row[t]), top, offset))
            offset += len(dec.decode(self._bytes(t)))
        s.request.emit(Event("prompt", index=s.index, tokens=infos))

    def _step(self) -> None:
        model, cache, rows = self.model, self.cache, self.rows
        B = len(rows)
        if self.speculator is not None and B == 1 and self.speculator.eligible(rows[0]):
            self.speculator.step(self, rows[0])
            return
        dev = model.device
        lengths = [s.length for s in rows]
        pos = torch.tensor(lengths, dtype=torch.long, device=dev)
        longest = max(lengths)
        cache.rows, cache.pos, cache.length = B, pos, longest
        mask = None
        if min(lengths) != longest:
            mask = torch.arange(longest + 1, device=dev)[None, :] <= pos[:, None]
        tokens = torch.tensor([[s.last] for s in rows], dtype=torch.long, device=dev)
        h = model.hidden_states(tokens, attention_mask=mask, position_ids=pos[:, None], cache=cache)
        logits = model.lm_head(h[:, -1]).float()
        self.steps += 1
        live = [i for i, s in enumerate(rows) if not s.done]
        for s in rows:
            s.length += 1
        chosen = self._choose([rows[i] for i in live], logits[live])
        for i, t in zip(live, chosen):
            self._accept(rows[i], logits[i], t)

    def _retire(self) -> None:
        """Free the slots of finished and cancelled rows, keeping the active rows contiguous."""
        rows = self.rows
        for i in range(len(rows) - 1, -1, -1):
            s = rows[i]
            if s.request.cancelled and not s.done:
                s.done = True
                s.request.live -= 1
            if not s.done:
                continue
            last = rows.pop()
            if last is not s:
                self.cache.copy_row(len(rows), i, last.length)
                rows[i] = last

    # ------------------------------------------------------------------ sampling
    def _scores(self, s: Sequence, logits: torch.Tensor) -> torch.Tensor:
        """Row s's logits (V,) after its logit_bias and penalties: what its sampler sees."""
        p = s.params
        scores = logits[None]
        if p.logit_bias:
            if s.bias is None:
                s.bias = (torch.tensor(list(p.logit_bias), device=logits.device),
                          torch.tensor(list(p.logit_bias.values()), device=logits.device)[None])
            scores = scores.index_add(1, *s.bias)
        if s.seen is not None:
            scores = repetition_penalty_(scores, s.seen[None], p.repetition_penalty)
        if s.counts is not None:
            scores = scores - p.frequency_penalty * s.counts - p.presence_penalty * (s.counts > 0).float()
        if s.constraint is not None:
            scores = s.constraint.mask(scores)
        return scores[0]

    def _choose(self, seqs: list[Sequence], logits: torch.Tensor) -> list[int]:
        """The next token of each row: greedy rows take the argmax; sampling rows draw one uniform
        number from their own generator and invert the CDF of their (warped) distribution, all rows
        in one batched softmax/cumsum/searchsorted. Row i's token depends only on row i's logits
        and generator, never on which other rows share the step."""
        scores = logits
        temps = [1.0] * len(seqs)
        for i, s in enumerate(seqs):
            p = s.params
            custom = p.logit_bias or s.seen is not None or s.counts is not None or s.constraint is not None
            warped = not s.greedy and (p.top_k or p.top_p < 1.0 or p.min_p)
            if custom or warped:
                if scores is logits:
                    scores = logits.clone()
                row = self._scores(s, logits[i]) if custom else logits[i]
                if warped:
                    row = warp(row[None], p.temperature, p.top_k or None, p.top_p, p.min_p or None)[0]
                elif not s.greedy:
                    temps[i] = p.temperature
                scores[i] = row
            elif not s.greedy:
                temps[i] = p.temperature
        out = [0] * len(seqs)
        sampling = [i for i, s in enumerate(seqs) if not s.greedy]
        greedy = [i for i, s in enumerate(seqs) if s.greedy]
        if greedy:
            for i, t in zip(greedy, scores[greedy].argmax(-1).tolist()):
                out[i] = t
        if sampling:
            rows = scores[sampling]
            t = torch.tensor([temps[i] for i in sampling], device=rows.device)[:, None]
            cdf = (rows / t).softmax(-1).cumsum(-1)
            # u in (0, 1]: the first token whose cumulative probability reaches u (never a filtered one)
            u = torch.cat([1.0 - torch.rand(1, generator=seqs[i].generator, device=rows.device) for i in sampling])
            idx = torch.searchsorted(cdf, (u[:, None] * cdf[:, -1:]).contiguous()).clamp_(max=cdf.size(1) - 1)
            for i, tok in zip(sampling, idx[:, 0].tolist()):
                out[i] = tok
        return out

    def _accept(self, s: Sequence, logits: torch.Tensor, t: int) -> None:
        """Record s's next token t (chosen from these logits) and tell the client what it means."""
        if s.request.cancelled:
            return
        p = s.params
        if s.constraint is not None and not self._constrain(s, t):
            return
        s.out.append(t)
        s.last = t
        self.tokens_generated += 1
        if s.seen is not None:
            s.seen[t] = True
        if s.counts is not None:
            s.counts[t] += 1
        info = None
        if p.logprobs is not None:
            lp = torch.log_softmax(logits, -1)
            info = TokenInfo(t, self._token_text(t), float(lp[t]), self._top(lp, p.logprobs), len(s.text))
        if t in self.eos:
            self._finish(s, "stop", flush=True)
            return
        before = len(s.text)
        piece = s.decoder.decode(self._bytes(t))
        s.text += piece
        if info is not None:
            s.tokens.append(info)
        if p.stop:
            window = max(0, before - s.hold)
            cut = _first_stop(s.text, p.stop, window)
            if cut >= 0:
                s.text = s.text[:cut]
                s.tokens = [ti for ti in s.tokens if ti.offset < cut]
                self._finish(s, "stop")
                return
        if len(s.out) >= p.max_tokens:
            self._finish(s, "length", flush=True)
            return
        end = len(s.text) - s.hold if p.stop else len(s.text)
        if end > s.sent or s.tokens:
            self._send(s, end)

    def _constrain(self, s: Sequence, t: int) -> bool:
        """s's grammar consumes t (always allowed: t was sampled under its mask). Should it refuse,
        that row alone ends, with what it has."""
        from ..constrain import ConstraintError
        try:
            s.constraint.advance([t])
            return True
        except ConstraintError:
            log.warning("a constrained row sampled a token its grammar refuses; ending it")
            self._finish(s, "stop", flush=True)
            return False

    def _send(self, s: Sequence, end: int) -> None:
        text = s.text[s.sent:end] if end > s.sent else ""
        s.sent = max(s.sent, end)
        s.request.emit(Event("delta", index=s.index, text=text, tokens=s.tokens))
        s.tokens = []

    def _finish(self, s: Sequence, reason: str, flush: bool = False) -> None:
        if flush:
            tail = s.decoder.decode(b"", final=True)
            if tail:
                s.text += tail
                if s.params.stop:
                    cut = _first_stop(s.text, s.params.stop, max(0, len(s.text) - len(tail) - s.hold))
                    if cut >= 0:
                        s.text, reason = s.text[:cut], "stop"
        if len(s.text) > s.sent or s.tokens:
            self._send(s, len(s.text))
        s.done = True
        s.request.live -= 1
        s.request.emit(Event("finish", index=s.index, reason=reason, prompt_tokens=len(s.prompt),
                             completion_tokens=len(s.out)))

    # ------------------------------------------------------------------ token text
    def _bytes(self, t: int) -> bytes:
        tok = self.tokenizer
        if hasattr(tok, "decode_bytes"):
            return tok.decode_bytes([t])
        return tok.decode([t]).encode("utf-8")

    def _token_text(self, t: int) -> str:
        text = self._token_text_cache.get(t)
        if text is None:
            b = self._bytes(t)
            try:
                text = b.decode("utf-8")
            except UnicodeDecodeError:
                text = "bytes:" + "".join(f"\\x{x:02x}" for x in b)
            if len(self._token_text_cache) < 1_000_000:
                self._token_text_cache[t] = text
        return text

    def _top(self, lp: torch.Tensor, k: int) -> list[tuple[int, str, float]]:
        if k <= 0:
            return []
        vals, idx = torch.topk(lp, min(k, lp.numel()))
        return [(int(i), self._token_text(int(i)), float(v)) for v, i in zip(vals.tolist(), idx.tolist())]


def _first_stop(text: str, stops: tuple[str, ...], start: int = 0) -> int:
    found = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(found) if found else -1
