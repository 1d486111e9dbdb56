"""The modern families through gptkit's commands, on tiny random transformers models with tokenizers
of each family's shape (tests/family_tokenizers.py; nothing downloaded): generate (text in, the greedy
tokens of transformers' generate with its KV cache), the server's completions and chat completions,
and fine-tuning, full and LoRA-merged, saved where transformers loads it with the same logits."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from family_tokenizers import build, vocab_size

import gptkit
from gptkit.generate import generate_text

transformers = pytest.importorskip("transformers")

# family class, tokenizer shape, config
CASES = {
    "llama3-gqa": ("Llama", "llama3", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "smollm2": ("Llama", "smollm2", dict(num_key_value_heads=1, tie_word_embeddings=True)),
    "mistral-sentencepiece": ("Mistral", "mistral", dict(num_key_value_heads=2, sliding_window=None)),
    "llama2-sentencepiece": ("Llama", "llama2", dict(num_key_value_heads=4, tie_word_embeddings=False)),
    "qwen2-biases": ("Qwen2", "qwen2", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "qwen3-qk-norm": ("Qwen3", "qwen2", dict(num_key_value_heads=2, head_dim=16, tie_word_embeddings=True)),
}
PROMPT = "Hello world, naïve café"


def _family_dir(directory, family, kind, kw):
    build(kind, directory)
    tok = transformers.AutoTokenizer.from_pretrained(directory)
    config = getattr(transformers, f"{family}Config")(
        vocab_size=vocab_size(directory), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=128, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, **kw)
    torch.manual_seed(0)
    model = getattr(transformers, f"{family}ForCausalLM")(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
        model.get_output_embeddings().weight.mul_(6)  # peaked next tokens: no near-ties for rounding to flip
        if not config.tie_word_embeddings:  # no byte pieces: ByteFallback's U+FFFD for broken UTF-8 is its own
            byte_ids = [i for t, i in tok.get_vocab().items() if t.startswith("<0x")]
            model.lm_head.weight[byte_ids] = -model.lm_head.weight[byte_ids].abs().sum(1, keepdim=True) / 50
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module", params=list(CASES))
def family_dir(request, tmp_path_factory):
    return _family_dir(tmp_path_factory.mktemp(request.param), *CASES[request.param])


def _theirs_greedy(directory, prompt_ids, n):
    model = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False, use_cache=True,
                             pad_token_id=model.config.eos_token_id)
    return out[0, len(prompt_ids):].tolist()


def test_generate_gives_transformers_greedy_tokens_and_text(family_dir):
    theirs_tok = transformers.AutoTokenizer.from_pretrained(family_dir)
    prompt_ids = theirs_tok(PROMPT).input_ids  # with Llama's BOS, as transformers prompts
    want = _theirs_greedy(family_dir, prompt_ids, 12)
    model = gptkit.load_model(family_dir)
    r = generate_text(model, model.tokenizer, PROMPT, max_new_tokens=12, do_sample=False)[0]
    eos = model.tokenizer.eot_id
    assert r["token_ids"] + ([eos] if r["finish_reason"] == "eos" else []) == want
    full = theirs_tok.decode(prompt_ids + r["token_ids"], skip_special_tokens=True)
    assert PROMPT + r["text"] == full  # SentencePiece's first space included


def test_the_generate_command_on_a_family_directory(family_dir):
    p = subprocess.run([sys.executable, "-m", "gptkit", "generate", "--model", str(family_dir), PROMPT,
                        "--no-do-sample", "--max-new-tokens", "6", "--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    row = json.loads(p.stdout)
    model = gptkit.load_model(family_dir)
    assert row["token_ids"] == generate_text(model, model.tokenizer, PROMPT, max_new_tokens=6)[0]["token_ids"]


def test_the_server_completes_and_chats_on_a_family_directory(family_dir):
    from fastapi.testclient import TestClient

    from gptkit.serve import ServeConfig, build_app
    theirs_tok = transformers.AutoTokenizer.from_pretrained(family_dir)
    with TestClient(build_app(ServeConfig(model=str(family_dir)))) as client:
        r = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 8, "temperature": 0})
        assert r.status_code == 200, r.text
        ids = theirs_tok(PROMPT).input_ids
        want = _theirs_greedy(family_dir, ids, 8)
        assert r.json()["usage"]["prompt_tokens"] == len(ids)
        text = theirs_tok.decode(ids + [t for t in want if t != theirs_tok.eos_token_id], skip_special_tokens=True)
        assert PROMPT + r.json()["choices"][0]["text"] == text
        messages = [{"role": "user", "content": "Hi there"}]
        r = client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 6, "temperature": 0})
        assert r.status_code == 200, r.text
        chat_ids = theirs_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True)["input_ids"]
        assert r.json()["usage"]["prompt_tokens"] == len(chat_ids)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora-merged"])
def test_finetune_saves_a_model_transformers_loads_with_the_same_logits(tmp_path, lora):
    from gptkit.tasks.finetune import finetune
    from gptkit.tasks.templates import builtin
    from gptkit.train import TrainConfig
    base = _family_dir(tmp_path / "base", *CASES["qwen2-biases" if lora else "llama3-gqa"])
    rows = [{"source": f"café {w} {i}", "target": w} for i, w in enumerate(["red", "green", "blue", "white"] * 30)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = TrainConfig(data=str(tmp_path / "p.jsonl"), out=str(tmp_path / "ft"), init_from=str(base), block_size=48,
                      batch_size=4, max_iters=6, lr=3e-3, warmup_iters=1, eval_interval=3, eval_iters=2,
                      log_interval=3, dtype="float32", progress=False)
    r = finetune(cfg, template=builtin("summarize"), task="summarize", lora=lora, lora_r=4, merge=lora,
                 split={"val_fraction": 0.2}, score_examples=2, score_max_new_tokens=2)
    saved = r.merged if lora else tmp_path / "ft"
    ours = gptkit.load_model(saved)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(saved).eval()
    x = torch.randint(0, ours.config.vocab_size, (2, 20))
    with torch.no_grad():
        assert (ours(x) - theirs(x).logits).abs().max() <= 1e-4
        assert (ours(x) - gptkit.load_model(base)(x)).abs().max() > 1e-3  # it did learn something
    assert transformers.AutoTokenizer.from_pretrained(saved)(PROMPT).input_ids == \
        transformers.AutoTokenizer.from_pretrained(base)(PROMPT).input_ids


@pytest.mark.parametrize("case", ["llama3-gqa", "qwen2-biases"])
def test_gptkit_chat_replies_as_transformers_continues_the_template(tmp_path, case):
    from gptkit.chat.template import chat_template, end_of_turn
    from gptkit.chat.terminal import Chat
    directory = _family_dir(tmp_path / case, *CASES[case])
    model = gptkit.load_model(directory)
    chat = Chat(model, model.tokenizer, chat_template(model.tokenizer), {"max_new_tokens": 8, "do_sample": False})
    text = chat.reply("Hi there", lambda s: None)
    theirs_tok = transformers.AutoTokenizer.from_pretrained(directory)
    ids = theirs_tok.apply_chat_template([{"role": "user", "content": "Hi there"}], add_generation_prompt=True,
                                         tokenize=True, return_dict=True)["input_ids"]
    theirs = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    turn_end = end_of_turn(model.tokenizer)
    assert turn_end[0] == theirs_tok.convert_tokens_to_ids("<|eot_id|>" if case.startswith("llama3") else "<|im_end|>")
    with torch.no_grad():
        out = theirs.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, eos_token_id=turn_end,
                              pad_token_id=turn_end[0])[0, len(ids):].tolist()
    out = out[:next((i for i, t in enumerate(out) if t in turn_end), len(out))]
    assert text == theirs_tok.decode(out)
