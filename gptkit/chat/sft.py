"""Supervised fine-tuning on conversations: `gptkit finetune --task chat`.

Each conversation is rendered with the model's chat template (ChatML's, with its control tokens
added and the embeddings grown, where the model has none) and tokenized whole; the loss counts
the assistant turns' tokens and their end-of-turn token only (chat.template.encode_conversation),
so system and user tokens give neither loss nor gradient. A conversation longer than the context
is cut after the last assistant turn that fits (counted); one whose first reply does not fit is
skipped (counted), or refused with --strict. The rows then go through the task trainer
(tasks.finetune: length-bucketed batches, LoRA or full, best checkpoint by the validation score,
early stopping); the validation score is ROUGE-L of the greedy reply to each validation
conversation's last user turn against its reference reply.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gptkit.errors import GptkitError
from gptkit.tasks.finetune import Encoded, TaskHooks

from .data import Conversation


@dataclass
class Encoding:
    rows: list[Encoded]
    truncated: int  # conversations cut at a turn boundary
    skipped: list[str]  # origins of conversations whose first reply does not fit


def encode_conversations(convs: Sequence[Conversation], tokenizer: Any, template: Any, max_tokens: int,
                         strict: bool = False) -> Encoding:
    """Rows for the trainer, each at most max_tokens + 1 ids (inputs and targets are shifted by one)."""
    from .template import encode_conversation
    limit = max_tokens + 1
    rows, truncated, skipped = [], 0, []
    for c in convs:
        ids, trained, ends = encode_conversation(tokenizer, c.messages, template)
        if len(ids) > limit:
            fits = [e for e, m in zip(ends, c.messages) if m["role"] == "assistant" and e <= limit]
            if not fits:
                first = next(e for e, m in zip(ends, c.messages) if m["role"] == "assistant")
                if strict:
                    raise GptkitError(f"{c.origin}: the conversation's first reply ends at token {first}, past "
                                      f"--block-size {max_tokens}: no turn fits (raise --block-size, or drop --strict "
                                      "to skip it)")
                skipped.append(c.origin)
                continue
            ids, trained = ids[:fits[-1]], trained[:fits[-1]]
            truncated += 1
        rows.append(Encoded(ids, trained.index(True), c.origin, trained))
    return Encoding(rows, truncated, skipped)


@dataclass
class ChatHooks(TaskHooks):
    """TaskHooks for conversations: validation score = ROUGE-L of the reply to the last user turn."""
    val_conversations: Sequence[Conversation] = ()
    chat: Any = None  # the compiled chat template
    mix: tuple[str, float] | None = None  # (prepared data directory, share of training rows): see mix.py

    def data(self, split: str) -> Any:
        batches = super().data(split)
        if split != "train" or self.mix is None:
            return batches
        from .mix import MixedBatches, open_text
        return MixedBatches(batches, open_text(self.mix[0], self.tokenizer), self.mix[1])

    @property
    def metric(self) -> str:
        return "rougeL"

    @torch.no_grad()
    def task_score(self, model: torch.nn.Module) -> float:
        from gptkit.generate import generate_text
        from gptkit.tasks.score import score

        from .template import end_of_turn
        prompts, refs = [], []
        for c in list(self.val_conversations)[:self.score_examples]:
            last = max(i for i, m in enumerate(c.messages) if m["role"] == "assistant")
            text = self.chat.render(c.messages[:last], True)
            prompts.append(self.tokenizer.encode_special(text))
            refs.append(c.messages[last]["content"].strip())
        outs = []
        n_ctx = model.config.n_positions
        max_new = min(self.max_new_tokens, n_ctx - 1)
        for s in range(0, len(prompts), self.score_batch_size):
            batch = [p[-(n_ctx - max_new):] for p in prompts[s:s + self.score_batch_size]]
            res = generate_text(model, self.tokenizer, batch, max_new_tokens=max_new,
                                eos_token_id=end_of_turn(self.tokenizer))
            outs += [r["text"].strip() for r in res]
        return score(outs, refs, [self.metric])[self.metric] if outs else 0.0


def finetune_chat(cfg: Any, *, split: dict[str, Any] | None = None, strict: bool = False, lora: bool = False,
                  lora_r: int = 8, lora_alpha: float = 16.0, lora_dropout: float = 0.0, merge: bool = False,
                  patience: int | None = None, score_examples: int = 200, score_max_new_tokens: int = 64,
                  mix: str | None = None) -> Any:
    """Fine-tune cfg.init_from on the conversations in cfg.data (see the module doc); mix: "DIR:RATIO"."""
    from gptkit import load_tokenizer
    from gptkit.tasks.finetune import _base_model, check_options, hook_options, run_finetune

    from .data import read_conversations, split_conversations
    from .template import chat_template, with_chat_tokens
    check_options(cfg, lora=lora, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, merge=merge,
                  patience=patience, score_examples=score_examples)
    from .mix import parse_mix
    mixed = parse_mix(mix) if mix else None
    split = {"val_fraction": 0.05, "test_fraction": 0.05, "seed": 0, **(split or {})}
    data = read_conversations(cfg.data, strict=strict)
    splits = split_conversations(data.conversations, split["val_fraction"], split["test_fraction"], split["seed"])
    if not splits["val"]:
        raise GptkitError(f"{cfg.data}: the validation split is empty (raise --val-fraction or give more "
                          "conversations)")
    base_dir = _base_model(cfg.init_from, lora_r if lora else None)
    tokenizer = with_chat_tokens(load_tokenizer(base_dir))  # the trainer grows the model to match
    if mixed:
        from .mix import open_text
        open_text(mixed[0], tokenizer)  # a foreign tokenizer: refused before any conversation is encoded
    template = chat_template(tokenizer)
    train = encode_conversations(splits["train"], tokenizer, template, cfg.block_size, strict)
    val = encode_conversations(splits["val"], tokenizer, template, cfg.block_size, strict)
    notes = [data.summary()] if data.summary() else []
    if train.truncated + val.truncated:
        notes.append(f"{train.truncated + val.truncated} conversation(s) cut after their last assistant turn that "
                     f"fits --block-size {cfg.block_size}")
    if train.skipped or val.skipped:
        where = (train.skipped + val.skipped)[0]
        notes.append(f"{len(train.skipped) + len(val.skipped)} conversation(s) skipped: their first reply does not "
                     f"fit --block-size {cfg.block_size} (first: {where})")
    if not train.rows or not val.rows:
        raise GptkitError(f"{cfg.data}: no {'training' if not train.rows else 'validation'} conversation fits "
                          f"--block-size {cfg.block_size}: raise it, or give shorter conversations")
    import os
    if int(os.environ.get("RANK", "0")) == 0:
        for note in notes:
            print(f"gptkit: warning: {note}", file=sys.stderr)
    kept = {r.origin for r in val.rows}
    hooks = ChatHooks(task="chat", template=None, tokenizer=tokenizer, train_rows=train.rows, val_rows=val.rows,
                      val_examples=[], val_conversations=[c for c in splits["val"] if c.origin in kept], chat=template,
                      **hook_options(cfg, lora, lora_r, lora_alpha, lora_dropout), score_examples=score_examples,
                      max_new_tokens=score_max_new_tokens, patience=patience, mix=mixed,
                      source=f"{cfg.data} ({len(train.rows):,} train / {len(val.rows):,} val conversations)")
    return run_finetune(cfg, hooks, merge)
