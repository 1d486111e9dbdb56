"""`POST /tokenize` and `POST /detokenize` (vLLM's shapes): what the served tokenizer makes of a
prompt or of chat messages, and the text of token ids; bad input is a 400 like every endpoint's."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..engine.text import prompt_ids
from .chat import TemplateError, encode_chat
from .protocol import APIError, clean, parse, read_json
from .schemas import DetokenizeRequest, TokenizeRequest


def chat_text(chat_template: Any, messages: list[Any], add_generation_prompt: bool = True) -> str:
    """Messages (schema objects) rendered by the chat template, as /v1/chat/completions does."""
    rendered = []
    for m in messages:
        content = m.content if isinstance(m.content, str) or m.content is None else \
            "".join(part.text for part in m.content)
        msg = {"role": m.role, "content": content or ""}
        if m.name is not None:
            msg["name"] = m.name
        rendered.append(msg)
    try:
        return clean(chat_template.render(rendered, add_generation_prompt=add_generation_prompt))
    except TemplateError as e:
        raise APIError(400, f"the chat template refused these messages: {e}", param="messages") from None


def add_token_routes(app: FastAPI, tokenizer: Any, chat_template: Any, n_ctx: int, vocab: int,
                     check: Callable[[Request, str | None], None], max_body: int) -> None:
    @app.post("/tokenize")
    async def tokenize(request: Request) -> JSONResponse:
        r: TokenizeRequest = parse(TokenizeRequest, await read_json(request, max_body))
        check(request, r.model)
        if (r.prompt is None) == (r.messages is None):
            raise APIError(400, "give exactly one of prompt and messages", param="prompt")
        if r.messages is not None:
            if chat_template is None:
                raise APIError(400, "this model has no chat template: tokenize a prompt instead",
                               param="messages", code="no_chat_template")
            text = await run_in_threadpool(chat_text, chat_template, r.messages, r.add_generation_prompt)
            ids = await run_in_threadpool(encode_chat, tokenizer, text)
        else:
            ids = await run_in_threadpool(prompt_ids, tokenizer, clean(r.prompt))  # as /v1/completions encodes it
        return JSONResponse({"count": len(ids), "max_model_len": n_ctx, "tokens": ids})

    @app.post("/detokenize")
    async def detokenize(request: Request) -> JSONResponse:
        r: DetokenizeRequest = parse(DetokenizeRequest, await read_json(request, max_body))
        check(request, r.model)
        bad = next((t for t in r.tokens if t >= vocab), None)
        if bad is not None:
            raise APIError(400, f"token id {bad} is outside the model's vocabulary (0..{vocab - 1})", param="tokens")
        return JSONResponse({"prompt": await run_in_threadpool(tokenizer.decode, r.tokens)})
