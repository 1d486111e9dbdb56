"""The request bodies the server accepts: OpenAI's schemas (strict types, unknown fields refused,
every number bounded), plus gptkit's own top_k, min_p and repetition_penalty."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_N = 16  # samples per prompt
MAX_PROMPTS = 64  # prompts in one completions request
MAX_STOPS = 4  # as OpenAI
MAX_STOP_CHARS = 256
MAX_SEED = 2**64 - 1
MIN_SEED = -(2**63)

Prob = Annotated[float, Field(ge=0.0, le=1.0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(Strict):
    include_usage: bool = False


class Sampling(Strict):
    """The options both endpoints share."""
    model: Annotated[str, Field(max_length=512)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N)] | None = None
    stop: (Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
           | Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]],
                       Field(max_length=MAX_STOPS)]
           | None) = None
    seed: Annotated[int, Field(ge=MIN_SEED, le=MAX_SEED)] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    logit_bias: Annotated[dict[Annotated[str, Field(max_length=16)],
                               Annotated[float, Field(ge=-100.0, le=100.0)]],
                          Field(max_length=300)] | None = None
    user: Annotated[str, Field(max_length=512)] | None = None
    # gptkit's (and vLLM's) extras, named as in gptkit.generate
    top_k: Annotated[int, Field(ge=-1, le=1_000_000)] | None = None  # 0 or -1: off
    min_p: Prob | None = None
    repetition_penalty: Annotated[float, Field(gt=0.0, le=10.0)] | None = None


class JsonSchemaFormat(Strict):
    """OpenAI's response_format.json_schema: {"name", "description", "schema", "strict"}."""
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)
    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: Annotated[str, Field(max_length=4096)] | None = None
    schema_: dict[str, Any] | bool | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(Strict):
    """text (no constraint), json_object (any JSON object) or json_schema, as OpenAI takes them."""
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


TokenIds = Annotated[list[Annotated[int, Field(ge=0, le=2**31)]], Field(min_length=1)]


class CompletionRequest(Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=MAX_PROMPTS)] | TokenIds | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_PROMPTS)]
    max_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = 16  # >= 1 as OpenAI (and chat, below)
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    echo: bool | None = None
    best_of: Annotated[int, Field(ge=1, le=MAX_N)] | None = None
    suffix: str | None = None
    response_format: ResponseFormat | None = None  # as the chat endpoint's (vLLM takes it here too)


class TextPart(Strict):
    type: Literal["text"]
    text: str


class Message(Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | Annotated[list[TextPart], Field(max_length=256)] | None = None
    name: Annotated[str, Field(max_length=256)] | None = None


class ChatRequest(Sampling):
    messages: Annotated[list[Message], Field(min_length=1, max_length=4096)]
    max_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    response_format: ResponseFormat | None = None


class TokenizeRequest(Strict):
    """POST /tokenize (vLLM's shape): a prompt, or chat messages rendered by the chat template."""
    model: Annotated[str, Field(max_length=512)] | None = None
    prompt: str | None = None
    messages: Annotated[list[Message], Field(min_length=1, max_length=4096)] | None = None
    add_generation_prompt: bool = True


class DetokenizeRequest(Strict):
    model: Annotated[str, Field(max_length=512)] | None = None
    tokens: Annotated[list[Annotated[int, Field(ge=0, le=2**31)]], Field(max_length=1_000_000)]
