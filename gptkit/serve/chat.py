"""Chat templates, as Hugging Face keeps them: a Jinja template in the model directory's
tokenizer_config.json ("chat_template") or in chat_template.jinja, rendered in Jinja's immutable
sandbox with `messages`, `add_generation_prompt`, `bos_token`, `eos_token` (transformers' names)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import GptkitError

EOT = "<|endoftext|>"


class TemplateError(ValueError):
    """A chat template that fails on these messages (raise_exception() or a Jinja error)."""


class ChatTemplate:
    def __init__(self, source: str, where: str, tokenizer: Any = None) -> None:
        """tokenizer: where its bos_token/eos_token are rendered (a family's, e.g. Llama's <s>); else
        <|endoftext|>, GPT-2's one token for both."""
        from jinja2 import TemplateError as JinjaError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
        try:
            self.template = env.from_string(source)
        except JinjaError as e:
            raise GptkitError(f"{where}: the chat template does not compile: {e}") from None
        self.source, self.where = source, where
        self.bos_token = getattr(tokenizer, "bos_token", None) or EOT
        self.eos_token = getattr(tokenizer, "eos_token", None) or getattr(tokenizer, "eot_token", None) or EOT

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        from jinja2 import TemplateError as JinjaError
        try:
            return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                        bos_token=self.bos_token, eos_token=self.eos_token)
        except TemplateError:
            raise
        except (JinjaError, TypeError, ValueError, KeyError, AttributeError, IndexError,
                RecursionError, OverflowError) as e:
            raise TemplateError(f"the chat template failed on these messages: {e}") from None


def check_generation_prompt(t: Any) -> None:
    """A GptkitError unless the model can tell where its reply begins: the template has a generation
    prompt, or (Llama 2's and Mistral's [INST] ... [/INST] have none) it ends a user turn otherwise
    than a reply, so the prompt's end is the cue. Also refused: a template that fails on a
    conversation of one user turn (with a system turn before it, where it wants one)."""
    user, reply = "PROBE-USER-TURN", "PROBE-REPLY"
    failure = None
    for probe in ([{"role": "user", "content": user}],
                  [{"role": "system", "content": "PROBE-SYSTEM"}, {"role": "user", "content": user}]):
        try:
            prompt, plain = t.render(probe, True), t.render(probe, False)
            whole = t.render(probe + [{"role": "assistant", "content": reply}], False)
            break
        except TemplateError as e:
            failure = failure or e
    else:
        raise GptkitError(f"the chat template fails on a conversation of one user turn: {failure}")
    if prompt != plain:
        return
    user_end = prompt[prompt.rfind(user) + len(user):] if user in prompt else None
    reply_end = whole[whole.rfind(reply) + len(reply):] if reply in whole else None
    if user_end is None or reply_end is None or not whole.startswith(prompt) or user_end == reply_end:
        raise GptkitError("the chat template has no generation prompt (it renders the same with "
                          "add_generation_prompt true and false, and ends a user turn as it ends a reply): the model "
                          "could not tell where its reply begins; add an {% if add_generation_prompt %} block that "
                          "opens the assistant's turn")


def find_chat_template(model_dir: str | Path | None, override: str | Path | None = None,
                       tokenizer: Any = None) -> ChatTemplate | None:
    """The template from `override` (a .jinja file), else from the model directory, else None;
    rendered with the tokenizer's BOS and EOS tokens."""
    if override:
        path = Path(override)
        if not path.is_file():
            raise GptkitError(f"--chat-template {path}: no such file")
        return ChatTemplate(_read(path), str(path), tokenizer)
    if model_dir is None or not Path(model_dir).is_dir():
        return None
    d = Path(model_dir)
    if (d / "chat_template.jinja").is_file():
        return ChatTemplate(_read(d / "chat_template.jinja"), str(d / "chat_template.jinja"), tokenizer)
    cfg = d / "tokenizer_config.json"
    if cfg.is_file():
        try:
            data = json.loads(_read(cfg))
        except json.JSONDecodeError as e:
            raise GptkitError(f"{cfg}: not valid JSON ({e})") from None
        t = data.get("chat_template") if isinstance(data, dict) else None
        if isinstance(t, list):  # named templates: use "default"
            t = next((x.get("template") for x in t if isinstance(x, dict) and x.get("name") == "default"), None)
        if isinstance(t, str) and t.strip():
            return ChatTemplate(t, str(cfg), tokenizer)
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GptkitError(f"{path}: cannot read the chat template ({e})") from None


def encode_chat(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered chat: the end-of-text marker and control tokens (<|im_start|>, ...)
    the template writes are those tokens (as transformers encodes special tokens in a template);
    the rest is text."""
    if hasattr(tokenizer, "encode_special"):  # gptkit's: <|endoftext|> and its control tokens
        return tokenizer.encode_special(text)
    eot = getattr(tokenizer, "eot_id", None)
    if eot is None:
        return tokenizer.encode(text)
    ids: list[int] = []
    for i, part in enumerate(text.split(EOT)):
        if i:
            ids.append(eot)
        if part:
            ids.extend(tokenizer.encode(part))
    return ids
