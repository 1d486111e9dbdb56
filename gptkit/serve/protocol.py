"""OpenAI's wire format: error objects, reading and validating request bodies, and the shapes
of logprobs and server-sent events."""
from __future__ import annotations

import json
import math
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from ..engine import TokenInfo

TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "model"}
UNION_HINTS = {
    "prompt": "prompt must be a string, a list of strings, a list of token ids, or a list of lists of token ids",
    "stop": "stop must be a non-empty string or a list of at most 4 of them (each up to 256 characters)",
}


class APIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.type, self.param, self.code, self.headers)


def error_response(status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type, "param": param, "code": code}},
                        status_code=status, headers=headers)


def clean(x: Any) -> Any:
    """Replace lone surrogates (legal in JSON escapes, not in UTF-8) by U+FFFD, everywhere."""
    if isinstance(x, str):
        try:
            x.encode("utf-8")
            return x
        except UnicodeEncodeError:
            return x.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(x, list):
        return [clean(v) for v in x]
    if isinstance(x, dict):
        return {clean(k): clean(v) for k, v in x.items()}
    return x


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object: size-capped, strict UTF-8, no NaN/Infinity, lone surrogates replaced."""
    cl = request.headers.get("content-length")
    if cl is not None:
        if not cl.strip().isdigit():
            raise APIError(400, "invalid Content-Length header")
        if int(cl) > limit:
            raise APIError(413, f"the request body is {int(cl)} bytes, more than the limit of {limit}",
                           code="request_too_large")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise APIError(413, f"the request body is larger than the limit of {limit} bytes",
                               code="request_too_large")
            chunks.append(chunk)
    except ClientDisconnect:
        raise APIError(400, "the client disconnected while sending the request") from None
    body = b"".join(chunks)
    if not body.strip():
        raise APIError(400, "the request body is empty: send a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(400, f"the request body is not valid UTF-8 (byte {e.start})") from None
    try:
        data = json.loads(text, parse_constant=reject_constant)
    except (ValueError, RecursionError) as e:
        raise APIError(400, f"the request body is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(data, dict):
        raise APIError(400, f"the request body must be a JSON object, not {type(data).__name__}")
    try:
        return clean(data)
    except RecursionError:
        raise APIError(400, "the request body is nested too deeply") from None

def parse(cls: type[BaseModel], data: dict[str, Any]) -> Any:
    """data validated by the schema cls; the first problem as a 400 naming the field."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False, include_input=False)[0]
        loc = [str(x) for x in err["loc"] if isinstance(x, int) or not (
            "[" in str(x) or "-" in str(x) or str(x) in TYPE_TAGS)]
        param = ".".join(loc) if loc else None
        if err["type"] == "extra_forbidden":
            msg = f"unknown field {param!r} (not supported by gptkit serve)"
        elif err["type"] == "missing":
            msg = f"missing required field {param!r}"
        elif param in UNION_HINTS:
            msg = UNION_HINTS[param]
        else:
            msg = f"invalid value for {param!r}: {err['msg']}" if param else err["msg"]
        raise APIError(400, msg, param=param.split(".")[0] if param else None) from None


def completion_logprobs(infos: list[TokenInfo], shift: int = 0) -> dict[str, Any]:
    return {"tokens": [t.text for t in infos],
            "token_logprobs": [None if math.isnan(t.logprob) else t.logprob for t in infos],
            "top_logprobs": [None if math.isnan(t.logprob) else {x[1]: x[2] for x in t.top} for t in infos],
            "text_offset": [t.offset + shift for t in infos]}

def chat_logprobs(infos: list[TokenInfo]) -> dict[str, Any]:
    def one(text: str, lp: float) -> dict[str, Any]:
        return {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8", "replace"))}
    return {"content": [{**one(t.text, t.logprob), "top_logprobs": [one(x[1], x[2]) for x in t.top]}
                        for t in infos]}

def sse(obj: Any) -> dict[str, str]:
    return {"data": json.dumps(obj, ensure_ascii=False, separators=(",", ":"))}
