"""`gptkit chat`: the history within the context, the commands, and the real command in a
pseudo-terminal (the reply streams, Ctrl-C stops it and returns to the prompt, /reset clears)."""
from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from gptkit.chat.template import chat_template, make_chat_ready
from gptkit.chat.terminal import Chat, run
from gptkit.errors import GptkitError
from gptkit.model import GPT, GPTConfig
from gptkit.tokenizer import bytes_tokenizer


def chat_model(n_positions: int, llama: bool = False) -> GPT:
    torch.manual_seed(0)
    extra = dict(position_embedding="rope", norm="rmsnorm", gated_mlp=True, activation_function="silu",
                 tie_word_embeddings=False, bias=False) if llama else {}
    model = GPT(GPTConfig(vocab_size=257, n_positions=n_positions, n_embd=32, n_layer=1, n_head=2, **extra))
    make_chat_ready(model, bytes_tokenizer())
    if llama:  # never end a reply: its end-of-turn and end-of-text rows give logit 0, below the best text token
        with torch.no_grad():
            model.lm_head.weight[256:] = 0
            model.lm_head.weight[:256] *= 8
    return model.eval()


def test_oldest_turns_are_dropped_to_fit_the_context():
    model = chat_model(96)
    tok = model.tokenizer
    chat = Chat(model, tok, chat_template(tok), dict(max_new_tokens=8, do_sample=False), system="sys")
    out: list[str] = []
    chat.reply("hello there", out.append)
    assert [m["role"] for m in chat.messages] == ["system", "user", "assistant"]
    for i in range(4):
        chat.reply(f"message number {i}", out.append)
    text = "".join(out)
    assert "(dropped the oldest 2 turn(s) to fit the context of 96 tokens)" in text
    assert chat.messages[0] == {"role": "system", "content": "sys"} and chat.turns[-2]["content"] == "message number 3"
    ids, dropped = chat.prompt_ids()
    assert len(ids) <= 96 - 8 and dropped == 0
    with pytest.raises(GptkitError, match="does not fit the model's context"):
        chat.reply("x" * 200, out.append)


def test_commands_and_the_loop(tmp_path):
    model = chat_model(128)
    tok = model.tokenizer
    chat = Chat(model, tok, chat_template(tok), dict(max_new_tokens=4, do_sample=False))
    lines = iter(["hi", "/system Be brief.", f"/save {tmp_path / 'c.json'}", "/reset", "/bogus", "/quit"])

    class Out:
        text = ""

        def write(self, s):
            Out.text += s

        def flush(self):
            pass

    assert run(chat, read=lambda prompt: next(lines), out=Out()) == 0
    saved = json.loads((tmp_path / "c.json").read_text())["messages"]
    assert [m["role"] for m in saved] == ["system", "user", "assistant"] and saved[0]["content"] == "Be brief."
    assert chat.turns == [] and chat.system == "Be brief."
    assert "(conversation cleared)" in Out.text and "(unknown command /bogus;" in Out.text


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    from gptkit.hf import save_model
    model = chat_model(1024, llama=True)
    d = tmp_path_factory.mktemp("chat") / "model"
    save_model(model, d, model.tokenizer)
    return d


def test_chat_in_a_pseudo_terminal(chat_dir, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    # one torch thread: the other core stays free for this process to read the reply as it streams
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "OMP_NUM_THREADS": "1"}
    child = pexpect.spawn(sys.executable, ["-m", "gptkit", "chat", "--model", str(chat_dir), "--dtype", "float32",
                                           "--device", "cpu", "--no-do-sample", "--max-new-tokens", "900"],
                          env=env, encoding="utf-8", timeout=60, cwd=str(tmp_path))
    try:
        child.expect_exact(">>> ")
        for _ in range(3):  # a reply of 900 tokens takes about a second: on a busy machine it can end first
            child.sendline("tell me a long story")
            child.expect_exact("tell me a long story\r\n")  # the terminal's echo
            child.expect(r"[\s\S]{20}")  # the reply is arriving, token by token
            assert "error" not in child.after
            child.sendintr()  # Ctrl-C: stops the reply, not the conversation
            stopped = child.expect_exact(["[stopped]", ">>> "]) == 0
            if stopped:
                break
            child.sendline("/reset")  # it ended before the Ctrl-C arrived: start again from no history
            child.expect_exact("(conversation cleared)")
            child.expect_exact(">>> ")
        assert stopped, "Ctrl-C never arrived while a reply was streaming"
        child.expect_exact(">>> ")
        child.sendline("/save one.json")
        child.expect_exact("(saved 2 message(s)")
        saved = json.loads((tmp_path / "one.json").read_text())["messages"]
        assert saved[0] == {"role": "user", "content": "tell me a long story"}
        assert 0 < len(saved[1]["content"]) < 900
        child.sendline("/reset")
        child.expect_exact("(conversation cleared)")
        child.sendline("/save two.json")
        child.expect_exact("(saved 0 message(s)")
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_a_model_without_a_template_is_one_line(tmp_path):
    import subprocess

    from gptkit.hf import save_model
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(vocab_size=257, n_positions=32, n_embd=16, n_layer=1, n_head=2)), tmp_path / "m",
               bytes_tokenizer())
    cmd = [sys.executable, "-m", "gptkit", "chat", "--model", str(tmp_path / "m")]
    p = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no chat template" in p.stderr
    (tmp_path / "m" / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}\n{% endfor %}")
    p = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no generation prompt" in p.stderr
    (tmp_path / "m" / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
                                                        "{% if add_generation_prompt %}Bot:{% endif %}")
    p = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and "chatting with" in p.stdout, p.stderr


def _family_chat_dir(kind: str, directory):
    """A tiny random transformers Llama with a `kind` tokenizer.json and the family's own template
    (tests/family_tokenizers.py), its replies kept off end-of-turn, control and byte tokens."""
    transformers = pytest.importorskip("transformers")
    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
    from family_tokenizers import build, vocab_size
    build(kind, directory)
    tok = transformers.AutoTokenizer.from_pretrained(directory)
    config = transformers.LlamaConfig(vocab_size=vocab_size(directory), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                      max_position_embeddings=256, bos_token_id=tok.bos_token_id,
                                      eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(6)  # peaked next tokens: no near-ties
        low = list(tok.added_tokens_decoder) + [i for t, i in tok.get_vocab().items() if t.startswith("<0x")]
        model.lm_head.weight[low] = 0  # logit 0, below the best text token's
    model.save_pretrained(directory)
    return directory, tok, model


@pytest.mark.parametrize("kind", ["qwen2", "llama2"])
def test_chat_on_a_transformers_chat_model(kind, tmp_path):
    """`gptkit chat` on a transformers directory with its own template (Qwen's ChatML; Llama 2's
    [INST], which has no generation prompt): each reply, the second given the first, is transformers'
    greedy reply to apply_chat_template's ids."""
    pexpect = pytest.importorskip("pexpect")
    d, tok, model = _family_chat_dir(kind, tmp_path / kind)
    # one torch thread: the other core stays free for this process to read the reply as it streams
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "OMP_NUM_THREADS": "1"}
    child = pexpect.spawn(sys.executable, ["-m", "gptkit", "chat", "--model", str(d), "--no-do-sample",
                                           "--max-new-tokens", "6", "--dtype", "float32", "--device", "cpu"],
                          env=env, encoding="utf-8", timeout=60, cwd=str(tmp_path))
    try:
        for line in ("Hello world, this is a test", "And the café?"):
            child.expect_exact(">>> ")
            child.sendline(line)
        child.expect_exact(">>> ")
        child.sendline("/save c.json")
        child.expect_exact("(saved 4 message(s)")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    saved = json.loads((tmp_path / "c.json").read_text())["messages"]
    for n in (1, 3):
        ids = tok.apply_chat_template(saved[:n], add_generation_prompt=True, tokenize=True, return_dict=True,
                                      return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.eos_token_id)
        want = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        assert saved[n]["role"] == "assistant" and saved[n]["content"].strip() == want.strip() != ""
