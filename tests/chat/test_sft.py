"""Fine-tuning on conversations: assistant-only loss (system and user tokens carry no gradient),
truncation at turn boundaries, and `gptkit finetune --task chat` (full and LoRA) end to end."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from gptkit.chat.data import Conversation
from gptkit.chat.sft import encode_conversations, finetune_chat
from gptkit.chat.template import IM_END, chat_template, make_chat_ready, with_chat_tokens
from gptkit.errors import GptkitError
from gptkit.model import GPT, GPTConfig
from gptkit.tasks.finetune import IGNORE, make_xy
from gptkit.tokenizer import bytes_tokenizer
from gptkit.train import TrainConfig

from conftest import save_tiny_bytes_gpt

WORDS = "red green blue black white gray pink brown cyan lime".split()


def conversation(i: int, turns: int = 1) -> dict:
    msgs = [{"role": "system", "content": "Answer with one word."}]
    for t in range(turns):
        words = [WORDS[(i * k + t) % len(WORDS)] for k in (1, 3, 7)]
        msgs += [{"role": "user", "content": f"first of: {' '.join(words)} {i}"},
                 {"role": "assistant", "content": words[0]}]
    return {"messages": msgs}


def test_system_and_user_tokens_carry_no_gradient():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=257, n_positions=256, n_embd=16, n_layer=1, n_head=2))
    tok = make_chat_ready(model, bytes_tokenizer())
    conv = Conversation(conversation(3, turns=2)["messages"], "x:1")
    enc = encode_conversations([conv], tok, chat_template(tok), 255)
    (row,) = enc.rows
    assert enc.truncated == 0
    x, y = make_xy([row], tok.eot_id, 255)
    logits = model(x)
    logits.retain_grad()
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE)
    loss.backward()
    assert model(x, targets=y).item() == pytest.approx(loss.item(), rel=1e-5)
    has_grad = logits.grad[0].abs().sum(-1) > 0
    n = len(row.ids) - 1
    assert not has_grad[n:].any()  # padding
    learned = [row.ids[j + 1] for j in range(n) if has_grad[j]]
    msgs = conv.messages
    assert tok.decode(learned) == msgs[2]["content"] + IM_END + msgs[4]["content"] + IM_END
    assert all(has_grad[j] == row.mask[j + 1] for j in range(n))


def test_long_conversations_are_cut_at_turn_boundaries():
    tok = with_chat_tokens(bytes_tokenizer())
    tpl = chat_template(tok)
    three = Conversation(conversation(1, turns=3)["messages"], "c:1")
    full = encode_conversations([three], tok, tpl, 1000).rows[0]
    ends = [i + 1 for i, t in enumerate(full.ids) if t == tok.special_ids[IM_END]]  # after each <|im_end|>
    assistant_ends = ends[2::2]  # system, user, assistant, user, assistant, ...
    enc = encode_conversations([three], tok, tpl, assistant_ends[1] + 5)
    # the turn as the template renders it: its <|im_end|> and the newline after
    assert enc.truncated == 1 and enc.rows[0].ids == full.ids[:assistant_ends[1] + 1]
    assert tok.decode(enc.rows[0].ids).endswith(IM_END + "\n") and enc.skipped == []
    enc = encode_conversations([three], tok, tpl, assistant_ends[0] - 3)
    assert enc.rows == [] and enc.skipped == ["c:1"]
    with pytest.raises(GptkitError, match=r"c:1: the conversation's first reply ends at token \d+, past --block-size"):
        encode_conversations([three], tok, tpl, assistant_ends[0] - 3, strict=True)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return save_tiny_bytes_gpt(tmp_path_factory.mktemp("base") / "model")


def write_data(path, n=160, extra=()):
    rows = [json.dumps(conversation(i, turns=1 + i % 2)) for i in range(n)] + list(extra)
    path.write_text("\n".join(rows) + "\n")
    return path


def test_finetune_chat_learns_and_saves_a_chat_model(base_dir, tmp_path):
    from gptkit import load_model
    data = write_data(tmp_path / "c.jsonl", extra=['{"messages": [{"role": "bot2", "content": "x"}]}'])
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "ft"), init_from=str(base_dir), block_size=128,
                      batch_size=8, max_iters=40, lr=3e-3, warmup_iters=2, eval_interval=20, eval_iters=4,
                      log_interval=20, dtype="float32", progress=False)
    r = finetune_chat(cfg, split=dict(val_fraction=0.1, test_fraction=0.0, seed=0), score_examples=8,
                      score_max_new_tokens=4)
    rows = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    evals = [x for x in rows if x["kind"] == "eval"]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] and "val_rougeL" in evals[-1]
    model = load_model(tmp_path / "ft" / "best")
    assert model.config.vocab_size == 259 and model.tokenizer.chat_template and r.best["score"] is not None


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "gptkit", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_lora_and_bad_input(base_dir, tmp_path):
    data = write_data(tmp_path / "c.jsonl", n=80, extra=['{"messages": "hi"}'])
    common = ["--init-from", str(base_dir), "--block-size", "128", "--batch-size", "8", "--eval-interval", "5",
              "--score-examples", "4", "--score-max-new-tokens", "3", "--no-progress", "--dtype", "float32"]
    p = run_cli("finetune", "--task", "chat", "--data", str(data), "--out", str(tmp_path / "ft"), "--max-iters", "5",
                "--lora", "--merge", *common, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "1 bad conversation(s) skipped" in p.stderr and "c.jsonl:81: 'messages' is str" in p.stderr
    assert (tmp_path / "ft" / "merged" / "tokenizer_config.json").is_file()
    p = run_cli("finetune", "--task", "chat", "--data", str(data), "--out", str(tmp_path / "never"), "--strict",
                *common, cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "c.jsonl:81: 'messages' is str" in p.stderr
    p = run_cli("finetune", "--task", "chat", "--data", str(data), "--out", str(tmp_path / "never"),
                *common[:2], "--block-size", "16", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no training conversation fits --block-size 16" in p.stderr
    assert not (tmp_path / "never").exists()


def test_resume_continues_exactly(base_dir, tmp_path):
    data = write_data(tmp_path / "c.jsonl", n=40)

    def cfg(out, **kw):
        return TrainConfig(**{**dict(data=str(data), out=str(tmp_path / out), init_from=str(base_dir), block_size=128,
                                     batch_size=4, max_iters=12, eval_interval=6, eval_iters=2, log_interval=6,
                                     dtype="float32", progress=False, lr=3e-3, warmup_iters=2), **kw})
    kw = dict(split=dict(val_fraction=0.2, test_fraction=0.0, seed=0), score_examples=2, score_max_new_tokens=2)
    full = finetune_chat(cfg("full"), **kw)
    finetune_chat(cfg("part", max_iters=6, lr_decay_iters=12), **kw)
    part = finetune_chat(cfg("part", resume=True), **kw)
    assert part.train.val["loss"] == pytest.approx(full.train.val["loss"], rel=1e-6)
