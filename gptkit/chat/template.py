"""Make a model chat-ready, and render conversations the way transformers does.

    tokenizer = with_chat_tokens(model.tokenizer)        # + <|im_start|>, <|im_end|>, ChatML template
    grow_vocab(model, tokenizer.vocab_size)              # new rows = mean of the old ones
    ids, trained = encode_conversation(tokenizer, messages)

The template is ChatML (the form Qwen and many others use):

    <|im_start|>system\\nYou are terse.<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n

A reply ends with <|im_end|>, the end-of-turn token: generation stops there, and fine-tuning
teaches it (the loss counts each assistant turn's tokens and its <|im_end|>, nothing else). The
template is saved in tokenizer_config.json ("chat_template"), where transformers'
`apply_chat_template` reads it, and the ids gptkit encodes are the ids transformers encodes (the
rendered text is tokenized whole, control tokens as themselves: see `encode_conversation`).
"""
from __future__ import annotations

import bisect
import dataclasses
from typing import Any

import torch

from gptkit.errors import GptkitError

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHATML_TOKENS = (IM_START, IM_END)
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
ROLES = ("system", "user", "assistant")


def with_chat_tokens(tokenizer: Any, template: str | None = None) -> Any:
    """The tokenizer with a chat template: as it is if it has one (and no other is given), else
    with ChatML's control tokens added (after its existing ones) and `template` (default ChatML)."""
    from gptkit.tokenizer import Tokenizer
    if template is None and getattr(tokenizer, "chat_template", None):
        return tokenizer  # a family's tokenizer with its own template (Qwen's, SmolLM2's): as it is
    if not isinstance(tokenizer, Tokenizer):
        raise GptkitError(f"tokenizer {tokenizer!r} is not a gptkit tokenizer (gpt2, bpe, bytes): gptkit cannot add "
                          "chat tokens to it")
    specials = tokenizer.specials + tuple(t for t in CHATML_TOKENS if t not in tokenizer.specials)
    out = Tokenizer(tokenizer.kind, tokenizer.ranks, tokenizer.merges, specials, template or CHATML_TEMPLATE)
    chat_template(out)  # compiles, and has a generation prompt
    return out


def chat_template(tokenizer: Any, override: str | None = None) -> Any:
    """The tokenizer's template compiled (serve.chat.ChatTemplate), checked to have a generation
    prompt; a GptkitError saying how to add one where it has none."""
    from gptkit.serve.chat import ChatTemplate, check_generation_prompt
    source = override or getattr(tokenizer, "chat_template", None)
    if not source:
        raise GptkitError("the model has no chat template: fine-tune it for chat with `gptkit finetune --task chat` "
                          "(which adds ChatML's tokens and template), or pass --chat-template FILE (a Jinja template)")
    t = ChatTemplate(source, "the chat template", tokenizer)
    check_generation_prompt(t)  # serve.chat
    return t


TURN_ENDS = (IM_END, "<|eot_id|>")  # ChatML's (Qwen, SmolLM2, gptkit's chat models), Llama-3's


def end_of_turn(tokenizer: Any) -> list[int]:
    """The ids a reply ends at: the end-of-turn token where the tokenizer has one, and end-of-text."""
    special = getattr(tokenizer, "special_ids", {})
    ids = [special[t] for t in TURN_ENDS if t in special and special[t] != tokenizer.eot_id]
    return ids + [tokenizer.eot_id]


# ---------------------------------------------------------------------------- embeddings

@torch.no_grad()
def grow_vocab(model: torch.nn.Module, vocab_size: int, old_rows: int | None = None) -> torch.nn.Module:
    """Give the model `vocab_size` embedding and output rows, in place: the rows past `old_rows`
    (default: the model's vocab_size) start as the mean of the rows before, so the old tokens' logits
    are unchanged and each new token starts as an average token. A tied output layer stays tied."""
    if getattr(model, "quantized", None):
        raise GptkitError("cannot add tokens to a quantized model: add them to the float model, then quantize")
    config = model.config
    old = config.vocab_size if old_rows is None else old_rows
    if vocab_size <= old:
        return model
    wte = model.transformer.wte
    model.transformer.wte = torch.nn.Embedding(max(vocab_size, config.vocab_size), config.n_embd,
                                               device=wte.weight.device, dtype=wte.weight.dtype)
    _fill(model.transformer.wte.weight, wte.weight, old)
    head = model.lm_head
    if config.tie_word_embeddings:
        head.weight = model.transformer.wte.weight
        head.out_features = model.transformer.wte.num_embeddings
    else:
        from gptkit.kernels import Linear
        model.lm_head = Linear(config.n_embd, model.transformer.wte.num_embeddings, bias=False,
                               device=head.weight.device, dtype=head.weight.dtype)
        _fill(model.lm_head.weight, head.weight, old)
    model.config = dataclasses.replace(config, vocab_size=model.transformer.wte.num_embeddings)
    return model


def _fill(new: torch.Tensor, old: torch.Tensor, keep: int) -> None:
    new[:keep] = old[:keep]
    new[keep:] = old[:keep].float().mean(0).to(new.dtype)


def make_chat_ready(model: torch.nn.Module, tokenizer: Any, template: str | None = None) -> Any:
    """with_chat_tokens + grow_vocab: the tokenizer to use with the (grown, in place) model."""
    chat = with_chat_tokens(tokenizer, template)
    if chat is not tokenizer:
        grow_vocab(model, chat.vocab_size, tokenizer.vocab_size)
    model.tokenizer = chat
    return chat


# ---------------------------------------------------------------------------- conversations

def render(template: Any, messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
    from gptkit.serve.chat import TemplateError
    try:
        return template.render(messages, add_generation_prompt)
    except TemplateError as e:
        raise GptkitError(f"the chat template refused the conversation: {e}") from None


def assistant_spans(template: Any, messages: list[dict[str, Any]], end: str | None) -> tuple[str, list[tuple[int, int]],
                                                                                               list[int]]:
    """(the rendered conversation, the character span of each assistant turn that the loss counts:
    from after its generation prompt to the end of its end-of-turn marker `end`, and the character
    offset where each message ends). Needs a template whose renderings of a conversation's prefixes
    are prefixes of the whole (ChatML's, and most, are)."""
    full = render(template, messages, False)
    spans, ends = [], []
    for i, m in enumerate(messages):
        upto = render(template, messages[:i + 1], False)
        if not full.startswith(upto):
            raise GptkitError("the chat template renders a conversation's first turns differently from the whole: "
                              "gptkit cannot tell which tokens are the assistant's")
        ends.append(len(upto))
        if m["role"] != "assistant":
            continue
        before = render(template, messages[:i], True)
        if not upto.startswith(before):
            raise GptkitError("the chat template's generation prompt is not how it begins an assistant turn: "
                              "gptkit cannot tell which tokens are the assistant's")
        stop = upto.rfind(end, len(before)) if end else -1
        spans.append((len(before), stop + len(end) if stop >= 0 else len(upto)))
    return full, spans, ends


def encode_conversation(tokenizer: Any, messages: list[dict[str, Any]], template: Any = None,
                        ) -> tuple[list[int], list[bool], list[int]]:
    """(ids, trained: one flag per id, the number of ids up to the end of each message).

    The rendered text is tokenized whole (control tokens as themselves), as transformers'
    apply_chat_template does; an id is trained when its first byte lies in an assistant span."""
    template = template or chat_template(tokenizer)
    end = IM_END if IM_END in tokenizer.special_ids else tokenizer.eot_token
    full, spans, ends = assistant_spans(template, messages, end)
    ids = tokenizer.encode_special(full)
    starts, pos = [], 0
    for piece in tokenizer.token_bytes(ids):
        starts.append(pos)
        pos += len(piece)
    byte = _byte_offsets(full)
    bspans = [(byte(a), byte(b)) for a, b in spans]
    trained = [any(a <= s < b for a, b in bspans) for s in starts]
    id_ends = [bisect.bisect_left(starts, byte(e)) for e in ends]
    return ids, trained, id_ends


def _byte_offsets(text: str):
    cache: dict[int, int] = {}

    def byte(i: int) -> int:
        if i not in cache:
            cache[i] = len(text[:i].encode("utf-8", "surrogatepass"))
        return cache[i]
    return byte
