"""`finetune --task chat --mix DIR:RATIO`: pretraining text mixed into the conversation batches.

A share RATIO of the training rows (each row decided by its own seeded draw, a pure function of
the seed, the step and the row, so --resume sees the same batches) is replaced by a window of
pretraining text from the prepared data directory DIR (its train split, tokenized with the
model's own tokenizer), every token of it learned. A small model fine-tuned on a few conversations
then keeps more of what it learned from its base text. Validation stays on conversations only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gptkit.errors import GptkitError


def parse_mix(spec: str) -> tuple[str, float]:
    """"DIR:RATIO" -> (DIR, RATIO), RATIO in (0, 1)."""
    directory, sep, ratio = spec.rpartition(":")
    try:
        value = float(ratio) if sep else float("nan")
    except ValueError:
        value = float("nan")
    if not directory or not 0 < value < 1:
        raise GptkitError(f"--mix {spec!r}: expected DIR:RATIO, a prepared data directory and the share of training "
                          "rows taken from it, above 0 and below 1 (e.g. --mix data/pretrain:0.2)")
    if not (Path(directory) / "meta.json").is_file():
        raise GptkitError(f"--mix {directory}: not a prepared data directory (no meta.json; make one with "
                          "`gptkit prepare`)")
    return directory, value


def open_text(directory: str, tokenizer: Any) -> Any:
    """The train split of a prepared data directory, checked to use the model's tokenizer."""
    from gptkit.data.shards import TokenShards
    from gptkit.tokenizer import Tokenizer
    theirs = Tokenizer.load(directory)
    if theirs.ranks != tokenizer.ranks:
        raise GptkitError(f"--mix {directory}: prepared with another tokenizer ({theirs.kind}, {theirs.vocab_size} "
                          f"tokens) than the model's ({tokenizer.kind}); prepare it with --tokenizer set to the model "
                          "directory")
    return TokenShards(directory, "train")


class MixedBatches:
    """Conversation batches (tasks.finetune.TaskBatches) with a share of rows of pretraining text."""

    def __init__(self, chat: Any, text: Any, ratio: float) -> None:
        self.chat, self.text, self.ratio = chat, text, ratio
        self.data_dir = f"{chat.data_dir} + {ratio:.0%} text from {text.data_dir}"
        self.num_tokens, self.num_bytes, self.split = chat.num_tokens, chat.num_bytes, chat.split

    def __len__(self) -> int:
        return len(self.chat)

    def rank_batch(self, batch_size: int, block_size: int, seed: int, it: int, rt: Any,
                   micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        from gptkit.data.batches import micro_rows, row_generator
        x, y = self.chat.rank_batch(batch_size, block_size, seed, it, rt, micro)
        rows = micro_rows(batch_size, getattr(rt, "world_size", 1), getattr(rt, "rank", 0), micro)
        for r, g in enumerate(rows):
            gen = row_generator(seed, it, g + (1 << 20))  # apart from any other use of this row's stream
            if torch.rand((), generator=gen).item() < self.ratio:
                tx, ty = self.text.get_batch(1, x.shape[1], gen)
                x[r], y[r] = tx[0], ty[0]
        return x, y

    def get_batch(self, batch_size: int, block_size: int, generator: torch.Generator) -> Any:
        return self.chat.get_batch(batch_size, block_size, generator)

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None) -> Any:
        return self.chat.iter_eval_batches(batch_size, block_size, max_batches)
