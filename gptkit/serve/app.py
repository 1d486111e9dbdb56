"""The HTTP side of `gptkit serve`: OpenAI's API on FastAPI, over the batching engine.

Over 500 lines, long because each endpoint keeps its request checks and its streaming and
non-streaming replies side by side (the request and reply bodies are in protocol.py, schemas.py).

    POST /v1/completions        prompt (string, strings, ids, lists of ids), max_tokens, temperature,
                                top_p, n, stop, seed, stream, logprobs, echo, presence/frequency
                                penalties, logit_bias; and top_k, min_p, repetition_penalty
    POST /v1/chat/completions   models with a chat template only
    GET  /v1/models, /health, /metrics (Prometheus), / (the playground)

Every bad request is a 4xx with OpenAI's error object {"error": {"message", "type", "param",
"code"}}: the body is read with a size cap, decoded as strict UTF-8, parsed as JSON without NaN
or Infinity, and validated by strict schemas (schemas.py) before anything reaches the model.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine.text import prompt_ids
from .chat import ChatTemplate, encode_chat
from .engine import Engine, Event, QueueFull, SamplingParams, TokenInfo
from .formats import grammar_processor as _grammar_processor
from .formats import response_grammar
from .metrics import Metrics, MetricsMiddleware
from .protocol import APIError, chat_logprobs, completion_logprobs, error_response, parse, read_json, sse
from .schemas import MAX_PROMPTS, ChatRequest, CompletionRequest
from .tokens import add_token_routes, chat_text

log = logging.getLogger("gptkit.serve")

MAX_SEQUENCES = 64  # prompts x n in one request
@dataclass
class ServerOptions:
    model_name: str = "gptkit"
    api_key: str | None = None
    max_batch: int = 16
    max_queue: int = 64
    timeout: float = 600.0  # seconds a request may take, queue included
    max_body_bytes: int = 1 << 20
    prefix_cache_bytes: int = 256 << 20  # prompt-prefix keys and values kept across requests (0: off)
    drain: float = 3.0  # seconds open streams may run on after SIGTERM before they are ended


class Mailbox:
    """Events from the engine thread to the event loop, coalesced: while one wake-up of the loop
    is pending, later events join it (one wake-up per decode step, not one per token)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.items: list[tuple[Handle, Event]] = []
        self.scheduled = False

    def post(self, handle: Handle, ev: Event) -> None:  # on the engine thread
        with self.lock:
            self.items.append((handle, ev))
            if self.scheduled:
                return
            self.scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is gone (shutting down)
            pass

    def _deliver(self) -> None:
        with self.lock:
            items, self.items, self.scheduled = self.items, [], False
        for handle, ev in items:
            handle.queue.put_nowait(ev)


class Handle:
    """A request in the engine, seen from the event loop: its events arrive on a queue."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.request: Any = None

    def emit(self, ev: Event) -> None:  # called on the engine thread
        self.mailbox.post(self, ev)


def count_finish(usage: dict[str, Any], ev: Event, n: int) -> None:
    """A sequence's tokens into the request's usage; a prompt's cached tokens once (not per sample)."""
    usage["completion_tokens"] += ev.completion_tokens
    if ev.index % n == 0:
        usage["prompt_tokens_details"]["cached_tokens"] += ev.cached_tokens


class Job:
    """A validated request ready for the engine."""

    def __init__(self, prompts: list[list[int]], prompt_texts: list[str], params: SamplingParams, n: int,
                 stream: bool, include_usage: bool, echo: bool = False) -> None:
        self.prompts, self.prompt_texts, self.params, self.n = prompts, prompt_texts, params, n
        self.stream, self.include_usage, self.echo = stream, include_usage, echo


@dataclass
class Replies:
    """A non-streamed request's sequences, gathered to their end from the engine's events."""
    texts: list[str]
    tokens: list[list[TokenInfo]]
    prompt_tokens: list[list[TokenInfo]]  # completions with echo and logprobs only
    reasons: list[str | None]


def create_app(model: Any, tokenizer: Any, options: ServerOptions | None = None,
               chat_template: ChatTemplate | None = None) -> FastAPI:
    opts = options or ServerOptions()
    if tokenizer is None:
        from ..errors import GptkitError
        raise GptkitError("serving needs the model's tokenizer (vocab.json + merges.txt beside the weights)")
    engine = Engine(model, tokenizer, max_batch=opts.max_batch, max_queue=opts.max_queue,
                    prefix_cache_bytes=opts.prefix_cache_bytes)
    n_ctx = model.config.n_positions
    vocab = model.config.vocab_size
    created = int(time.time())

    class State:
        metrics: Metrics | None = None
        mailbox: Mailbox | None = None

    state = State()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            await run_in_threadpool(engine.stop)

    app = FastAPI(title="gptkit serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine
    app.state.model_name = opts.model_name
    state.metrics = Metrics(engine)
    metrics = state.metrics
    app.add_middleware(MetricsMiddleware, state=state)

    # ------------------------------------------------------------------ errors
    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError) -> JSONResponse:
        return e.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        msg = {404: f"no such endpoint: {request.method} {request.url.path}",
               405: f"method {request.method} is not allowed on {request.url.path}"}.get(e.status_code, str(e.detail))
        return error_response(e.status_code, msg, code=code, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        return error_response(400, f"invalid request: {e.errors()[:1]}")

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, f"internal server error ({type(e).__name__})", type="server_error")

    # ------------------------------------------------------------------ request reading
    def check_auth(request: Request) -> None:
        if opts.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), opts.api_key.encode()):
            raise APIError(401, "missing or incorrect API key: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    def check_model(name: str | None) -> None:
        if name is not None and name != opts.model_name:
            raise APIError(404, f"the model {name!r} does not exist: this server serves {opts.model_name!r}",
                           param="model", code="model_not_found")

    def engine_eos() -> list[int]:
        from ..engine import default_eos
        return sorted(default_eos(model, tokenizer))

    def sampling(r: Any, max_tokens: int, logprobs: int | None, prompt_logprobs: bool = False,
                 grammar: Any = None) -> SamplingParams:
        bias = {}
        for k, v in (r.logit_bias or {}).items():
            if not k.strip().isdigit() or not 0 <= int(k) < vocab:
                raise APIError(400, f"logit_bias key {k!r} is not a token id of this model (0..{vocab - 1})",
                               param="logit_bias")
            bias[int(k)] = float(v)
        stop = () if r.stop is None else (r.stop,) if isinstance(r.stop, str) else tuple(r.stop)
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if r.temperature is None else r.temperature,
            top_p=1.0 if r.top_p is None else r.top_p,
            top_k=max(r.top_k or 0, 0),
            min_p=r.min_p or 0.0,
            repetition_penalty=1.0 if r.repetition_penalty is None else r.repetition_penalty,
            presence_penalty=r.presence_penalty or 0.0,
            frequency_penalty=r.frequency_penalty or 0.0,
            logit_bias=bias,
            stop=stop,
            seed=None if r.seed is None else r.seed % 2**64,
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
            logits_processors=() if grammar is None else (_grammar_processor(grammar),),
        )

    def context_check(prompts: list[list[int]], max_tokens: int | None, field: str) -> int:
        longest = max(len(p) for p in prompts)
        if max_tokens is None:
            if longest >= n_ctx:
                raise APIError(400, f"This model's maximum context length is {n_ctx} tokens. However, your "
                               f"prompt is {longest} tokens, leaving no room for the completion. "
                               "Please shorten the prompt.", param="messages" if field != "max_tokens" else "prompt",
                               code="context_length_exceeded")
            return n_ctx - longest
        if longest + max_tokens > n_ctx:
            raise APIError(400, f"This model's maximum context length is {n_ctx} tokens. However, you requested "
                           f"{longest + max_tokens} tokens ({longest} in the prompt, {max_tokens} for the "
                           f"completion). Please reduce the prompt or {field}.", param=field,
                           code="context_length_exceeded")
        return max_tokens

    def encode_text(text: str) -> list[int]:
        ids = prompt_ids(tokenizer, text)  # Llama's BOS first, as transformers' tokenizer(text)
        return ids or [tokenizer.eot_id]  # an empty prompt starts from end-of-text, as GPT-2 does

    # ------------------------------------------------------------------ running a job
    def submit(job: Job, handle: Handle) -> None:
        try:
            handle.request = engine.submit(job.prompts, job.params, job.n, handle.emit)
        except QueueFull as e:
            raise APIError(429, f"{e}; retry shortly", type="rate_limit_error", code="queue_full",
                           headers={"Retry-After": str(retry_after())}) from None
        metrics.prompt_tokens.inc(sum(len(p) for p in job.prompts))

    def retry_after() -> int:
        return max(1, min(60, math.ceil(engine.queued / max(engine.max_batch, 1))))

    async def watch(handle: Handle, deadline: float, request: Request | None) -> None:
        """Tell the request's reader when its deadline passes or (non-streaming) its client left."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                handle.queue.put_nowait(Event("timeout"))
                return
            await asyncio.sleep(min(left, 0.5))
            if request is not None and await request.is_disconnected():
                handle.queue.put_nowait(Event("gone"))
                return

    async def events(handle: Handle, total: int, deadline: float, request: Request | None) -> AsyncIterator[Event]:
        """The engine's events for this request until every sequence finished; cancels the request
        if the client goes away or the deadline passes (APIError 408)."""
        finished = 0
        watcher = asyncio.ensure_future(watch(handle, deadline, request))
        held: Event | None = None
        try:
            while finished < total:
                ev, held = (held, None) if held is not None else (await handle.queue.get(), None)
                # a reader that fell behind (a busy server) gets its waiting text in one piece
                while ev.kind == "delta" and not handle.queue.empty():
                    nxt = handle.queue.get_nowait()
                    if nxt.kind != "delta" or nxt.index != ev.index:
                        held = nxt
                        break
                    ev = Event("delta", index=ev.index, text=ev.text + nxt.text, tokens=ev.tokens + nxt.tokens)
                if ev.kind == "gone":
                    return
                if ev.kind == "timeout":
                    raise APIError(408, f"the request took longer than the server's timeout of {opts.timeout:g} s",
                                   type="timeout_error", code="timeout")
                if ev.kind == "error":
                    raise APIError(500, ev.message, type="server_error")
                if ev.kind == "shutdown":
                    raise APIError(503, "the server is shutting down: this answer was cut short (retry it)",
                                   type="server_error", code="server_shutdown")
                if ev.kind == "finish":
                    finished += 1
                yield ev
        finally:
            watcher.cancel()
            if handle.request is not None:
                handle.request.cancel()  # a no-op once every sequence has finished

    def start(job: Job) -> tuple[Handle, float, float]:
        t0 = time.monotonic()
        if state.mailbox is None:
            state.mailbox = Mailbox(asyncio.get_running_loop())
        handle = Handle(state.mailbox)
        submit(job, handle)
        return handle, t0, t0 + opts.timeout

    def observe(t0: float, first: float | None, end: float, tokens: int) -> None:
        metrics.generation_tokens.inc(tokens)
        if first is not None:
            metrics.ttft.observe(first - t0)
            if tokens > 1:
                metrics.tpot.observe((end - first) / (tokens - 1))

    def stream(chunks: AsyncIterator[tuple[list[dict[str, Any]], bool]], handle: Handle, base: dict[str, Any],
               usage: dict[str, Any], t0: float, include_usage: bool) -> Response:
        """Server-sent events in OpenAI's format: a chunk per (choices, carries a token) pair, an
        error object if the request ends early (timeout, server shutdown), the usage chunk when
        asked, then [DONE].

        On shutdown (SIGTERM) sse-starlette sets `stopping`: the stream may finish for opts.drain
        seconds, then it is ended with an error event and [DONE] (which the OpenAI client raises),
        before the force-cancel at the end of the grace period would cut it with neither."""
        import anyio
        from sse_starlette import EventSourceResponse
        stopping = anyio.Event()

        async def cut_on_shutdown() -> None:
            await stopping.wait()
            await asyncio.sleep(opts.drain)
            handle.queue.put_nowait(Event("shutdown"))

        null_usage = {"usage": None} if include_usage else {}  # as OpenAI: null on all but the last chunk

        async def gen() -> AsyncIterator[dict[str, str]]:
            first = None
            cutter = asyncio.ensure_future(cut_on_shutdown())
            try:
                async for choices, is_token in chunks:
                    if is_token:
                        first = first or time.monotonic()
                    yield sse({**base, "choices": choices, **null_usage})
            except APIError as e:
                yield sse({"error": {"message": e.message, "type": e.type, "param": None, "code": e.code}})
            finally:
                cutter.cancel()
            observe(t0, first, time.monotonic(), usage["completion_tokens"])
            if include_usage:
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                yield sse({**base, "choices": [], "usage": usage})
            yield {"data": "[DONE]"}
        return EventSourceResponse(gen(), sep="\n", ping=15, shutdown_event=stopping,
                                   shutdown_grace_period=opts.drain + 1.0)

    async def collect(job: Job, handle: Handle, total: int, deadline: float, request: Request,
                      usage: dict[str, Any], t0: float) -> Replies | None:
        """Every sequence of a non-streamed request, to its end (None if the client went away)."""
        r = Replies([""] * total, [[] for _ in range(total)], [[] for _ in range(total)], [None] * total)
        first = None
        async for ev in events(handle, total, deadline, request):
            if ev.kind == "prompt":
                for j in range(job.n):  # the prompt's logprobs are the same for all its samples
                    r.prompt_tokens[ev.index + j] = ev.tokens
            elif ev.kind == "delta":
                first = first or time.monotonic()
                r.texts[ev.index] += ev.text
                r.tokens[ev.index].extend(ev.tokens)
            elif ev.kind == "finish":
                r.reasons[ev.index] = ev.reason
                count_finish(usage, ev, job.n)
        if any(reason is None for reason in r.reasons):
            return None
        observe(t0, first, time.monotonic(), usage["completion_tokens"])
        return r

    # ------------------------------------------------------------------ response shapes
    async def run_completion(job: Job, request: Request) -> Response:
        handle, t0, deadline = start(job)
        total = len(job.prompts) * job.n
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        base = {"id": rid, "object": "text_completion", "created": now, "model": opts.model_name}
        usage = {"prompt_tokens": sum(len(p) for p in job.prompts), "completion_tokens": 0,
                 "prompt_tokens_details": {"cached_tokens": 0}}
        want_lp = job.params.logprobs is not None

        if job.stream:
            async def chunks() -> AsyncIterator[tuple[list[dict[str, Any]], bool]]:
                sent_prompt = set()
                async for ev in events(handle, total, deadline, None):
                    prompt_text = job.prompt_texts[ev.index // job.n]
                    if ev.kind == "prompt":
                        sent_prompt.add(ev.index)
                        yield [{"index": ev.index, "text": prompt_text, "logprobs":
                                completion_logprobs(ev.tokens) if want_lp else None, "finish_reason": None}], False
                        continue
                    if job.echo and ev.index not in sent_prompt:
                        sent_prompt.add(ev.index)
                        yield [{"index": ev.index, "text": prompt_text, "logprobs": None, "finish_reason": None}], False
                    shift = len(prompt_text) if job.echo else 0
                    if ev.kind == "delta":
                        yield [{"index": ev.index, "text": ev.text, "logprobs":
                                completion_logprobs(ev.tokens, shift) if want_lp else None,
                                "finish_reason": None}], True
                    elif ev.kind == "finish":
                        count_finish(usage, ev, job.n)
                        yield [{"index": ev.index, "text": "", "logprobs": None, "finish_reason": ev.reason}], False
            return stream(chunks(), handle, base, usage, t0, job.include_usage)

        r = await collect(job, handle, total, deadline, request, usage, t0)
        if r is None:  # the client went away
            return Response(status_code=499)
        choices = []
        for i in range(total):
            prompt_text = job.prompt_texts[i // job.n] if job.echo else ""
            lp = None
            if want_lp:
                lp = (completion_logprobs(r.prompt_tokens[i] + r.tokens[i], 0) if job.echo
                      else completion_logprobs(r.tokens[i]))
                if job.echo:
                    lp["text_offset"] = ([t.offset for t in r.prompt_tokens[i]]
                                         + [t.offset + len(prompt_text) for t in r.tokens[i]])
            choices.append({"index": i, "text": prompt_text + r.texts[i], "logprobs": lp, "finish_reason": r.reasons[i]})
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return JSONResponse({**base, "choices": choices, "usage": usage})

    async def run_chat(job: Job, request: Request) -> Response:
        handle, t0, deadline = start(job)
        total = job.n
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        base = {"id": rid, "object": "chat.completion.chunk" if job.stream else "chat.completion",
                "created": now, "model": opts.model_name, "system_fingerprint": None}
        usage = {"prompt_tokens": len(job.prompts[0]), "completion_tokens": 0,
                 "prompt_tokens_details": {"cached_tokens": 0}}
        want_lp = job.params.logprobs is not None

        if job.stream:
            async def chunks() -> AsyncIterator[tuple[list[dict[str, Any]], bool]]:
                for i in range(total):
                    yield [{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                            "finish_reason": None}], False
                async for ev in events(handle, total, deadline, None):
                    if ev.kind == "delta":
                        yield [{"index": ev.index, "delta": {"content": ev.text},
                                "logprobs": chat_logprobs(ev.tokens) if want_lp else None, "finish_reason": None}], True
                    elif ev.kind == "finish":
                        count_finish(usage, ev, job.n)
                        yield [{"index": ev.index, "delta": {}, "logprobs": None, "finish_reason": ev.reason}], False
            return stream(chunks(), handle, base, usage, t0, job.include_usage)

        r = await collect(job, handle, total, deadline, request, usage, t0)
        if r is None:
            return Response(status_code=499)
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        choices = [{"index": i, "message": {"role": "assistant", "content": r.texts[i]},
                    "logprobs": chat_logprobs(r.tokens[i]) if want_lp else None, "finish_reason": r.reasons[i]}
                   for i in range(total)]
        return JSONResponse({**base, "choices": choices, "usage": usage})

    # ------------------------------------------------------------------ routes
    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        check_auth(request)
        data = await read_json(request, opts.max_body_bytes)
        batch = data.get("prompt")
        if isinstance(batch, list) and len(batch) > MAX_PROMPTS and any(isinstance(x, (str, list)) for x in batch):
            raise APIError(400, f"prompt holds {len(batch)} prompts; one request may hold at most {MAX_PROMPTS} "
                           f"(and at most {MAX_SEQUENCES} sequences, prompts x n): split it", param="prompt")
        r: CompletionRequest = parse(CompletionRequest, data)
        check_model(r.model)
        n = r.n or 1
        if r.suffix is not None:
            raise APIError(400, "suffix is not supported by gptkit serve", param="suffix")
        if r.best_of is not None and r.best_of != n:
            raise APIError(400, "best_of is not supported (it may only equal n)", param="best_of")
        if r.stream and r.best_of not in (None, 1) and n > 1 and r.best_of != n:
            raise APIError(400, "best_of cannot be streamed", param="best_of")
        p = r.prompt
        if isinstance(p, str):
            texts = [p]
        elif isinstance(p[0], str):
            texts = list(p)
        else:
            texts = None
        if texts is not None:
            prompts = await run_in_threadpool(lambda: [encode_text(t) for t in texts])
        else:
            prompts = [list(p)] if isinstance(p[0], int) else [list(x) for x in p]
            bad = next((t for x in prompts for t in x if t >= vocab), None)
            if bad is not None:
                raise APIError(400, f"token id {bad} in the prompt is outside the model's vocabulary (0..{vocab - 1})",
                               param="prompt")
        if len(prompts) * n > MAX_SEQUENCES:
            raise APIError(400, f"{len(prompts)} prompts x n={n} = {len(prompts) * n} sequences; one request may "
                           f"ask for at most {MAX_SEQUENCES}", param="n")
        if r.logprobs is not None and r.logprobs > 5:
            raise APIError(400, f"logprobs may be at most 5, got {r.logprobs}", param="logprobs")
        max_tokens = context_check(prompts, r.max_tokens, "max_tokens")
        if texts is None and r.echo:
            texts = await run_in_threadpool(lambda: [tokenizer.decode(x) for x in prompts])
        grammar = await run_in_threadpool(response_grammar, r.response_format, tokenizer, engine_eos())
        params = sampling(r, max_tokens, r.logprobs, prompt_logprobs=bool(r.echo) and r.logprobs is not None,
                          grammar=grammar)
        job = Job(prompts, texts or [""] * len(prompts), params, n, bool(r.stream),
                  bool(r.stream_options and r.stream_options.include_usage), echo=bool(r.echo))
        if r.stream_options is not None and not r.stream:
            raise APIError(400, "stream_options is only allowed with stream: true", param="stream_options")
        return await run_completion(job, request)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        check_auth(request)
        r: ChatRequest = parse(ChatRequest, await read_json(request, opts.max_body_bytes))
        check_model(r.model)
        if chat_template is None:
            raise APIError(400, f"the model {opts.model_name!r} has no chat template, so it cannot chat: use "
                           "/v1/completions; to add one, fine-tune it on conversations with `gptkit finetune --task chat` "
                           "(which adds ChatML's tokens and template), or start the server with --chat-template FILE "
                           "(a Jinja template)",
                           param="messages", code="no_chat_template")
        text = await run_in_threadpool(chat_text, chat_template, r.messages)
        prompt = await run_in_threadpool(encode_chat, tokenizer, text)
        if not prompt:
            prompt = [tokenizer.eot_id]
        wanted = r.max_completion_tokens if r.max_completion_tokens is not None else r.max_tokens
        field = "max_completion_tokens" if r.max_completion_tokens is not None else "max_tokens"
        max_tokens = context_check([prompt], wanted, field)
        if r.top_logprobs is not None and not r.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        if r.stream_options is not None and not r.stream:
            raise APIError(400, "stream_options is only allowed with stream: true", param="stream_options")
        grammar = await run_in_threadpool(response_grammar, r.response_format, tokenizer, engine_eos())
        params = sampling(r, max_tokens, (r.top_logprobs or 0) if r.logprobs else None, grammar=grammar)
        job = Job([prompt], [text], params, r.n or 1, bool(r.stream),
                  bool(r.stream_options and r.stream_options.include_usage))
        return await run_chat(job, request)

    @app.api_route("/v1/models", methods=["GET", "HEAD"])
    async def models(request: Request) -> JSONResponse:
        check_auth(request)
        return JSONResponse({"object": "list", "data": [{
            "id": opts.model_name, "object": "model", "created": created, "owned_by": "gptkit",
            "max_model_len": n_ctx, "chat": chat_template is not None}]})

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health() -> JSONResponse:
        if not engine.alive():
            return error_response(503, "the generation engine is not running", type="server_error")
        return JSONResponse({"status": "ok", "model": opts.model_name, "running": engine.running,
                             "queued": engine.queued})

    @app.api_route("/metrics", methods=["GET", "HEAD"])
    async def metrics_endpoint() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def check(request: Request, model_name: str | None) -> None:
        check_auth(request)
        check_model(model_name)

    add_token_routes(app, tokenizer, chat_template, n_ctx, vocab, check, opts.max_body_bytes)

    page = resources.files("gptkit.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.api_route("/", methods=["GET", "HEAD"])
    async def playground() -> HTMLResponse:
        return HTMLResponse(page.replace("{{MODEL}}", json.dumps(opts.model_name)[1:-1].replace("<", "\\u003c"))
                            .replace("{{AUTH}}", "true" if opts.api_key else "false")
                            .replace("{{CHAT}}", "true" if chat_template is not None else "false"))

    return app
