"""--mix DIR:RATIO: a seeded share of the training rows is pretraining text, every token learned."""
from __future__ import annotations

import json

import pytest
import torch

from gptkit.chat.data import Conversation
from gptkit.chat.mix import MixedBatches, open_text, parse_mix
from gptkit.chat.sft import encode_conversations
from gptkit.chat.template import chat_template, with_chat_tokens
from gptkit.errors import GptkitError
from gptkit.tasks.finetune import IGNORE, TaskBatches
from gptkit.tokenizer import bytes_tokenizer, gpt2_tokenizer


def conversations(n: int) -> list[Conversation]:
    return [Conversation([{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}], f"c:{i}")
            for i in range(n)]


def test_a_share_of_rows_is_text_and_the_batches_are_a_function_of_the_step(byte_data):
    tok = with_chat_tokens(bytes_tokenizer())
    rows = encode_conversations(conversations(64), tok, chat_template(tok), 63).rows
    mixed = MixedBatches(TaskBatches(rows, "train", tok.eot_id, 0, 8, tok), open_text(str(byte_data), tok), 0.25)
    text_rows = 0
    for it in range(40):
        x, y = mixed.rank_batch(8, 63, 0, it, None, 0)
        x2, y2 = mixed.rank_batch(8, 63, 0, it, None, 0)
        assert torch.equal(x, x2) and torch.equal(y, y2)
        is_text = (y != IGNORE).all(1)  # every token learned: a window of text (a conversation has its prompt)
        assert (x[is_text] <= tok.eot_id).all() and (x[~is_text, 0] == tok.special_ids["<|im_start|>"]).all()
        text_rows += int(is_text.sum())
    assert 0.15 < text_rows / 320 < 0.35
    assert len(mixed) == 64 and "25% text from" in mixed.data_dir


def test_bad_mix_specs_are_one_line(byte_data, tmp_path):
    with pytest.raises(GptkitError, match="expected DIR:RATIO"):
        parse_mix(str(byte_data))
    with pytest.raises(GptkitError, match="above 0 and below 1"):
        parse_mix(f"{byte_data}:1.5")
    with pytest.raises(GptkitError, match="not a prepared data directory"):
        parse_mix(f"{tmp_path}:0.2")
    assert parse_mix(f"{byte_data}:0.2") == (str(byte_data), 0.2)
    with pytest.raises(GptkitError, match="prepared with another tokenizer"):
        open_text(str(byte_data), gpt2_tokenizer())


def test_finetune_chat_with_mix_runs(byte_data, tmp_path):
    from gptkit.chat.sft import finetune_chat
    from gptkit.hf import save_model
    from gptkit.model import GPT, GPTConfig
    from gptkit.train import TrainConfig
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(vocab_size=257, n_positions=64, n_embd=16, n_layer=1, n_head=2, eos_token_id=256)),
               tmp_path / "base", bytes_tokenizer())
    data = tmp_path / "c.jsonl"
    data.write_text("".join(json.dumps({"messages": c.messages}) + "\n" for c in conversations(60)))
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "ft"), init_from=str(tmp_path / "base"), block_size=48,
                      batch_size=4, max_iters=4, eval_interval=4, eval_iters=2, log_interval=2, dtype="float32",
                      progress=False)
    r = finetune_chat(cfg, split=dict(val_fraction=0.2, test_fraction=0.0, seed=0), score_examples=2,
                      score_max_new_tokens=2, mix=f"{byte_data}:0.3")
    assert r.train.step == 4 and (tmp_path / "ft" / "best" / "model.safetensors").is_file()
