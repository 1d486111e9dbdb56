"""Chat tokens and template: ids identical to transformers' apply_chat_template for each tokenizer
kind, assistant-only training flags, and embedding growth that leaves the old tokens' logits alone."""
from __future__ import annotations

import json

import pytest
import torch

from gptkit.chat.template import (
    CHATML_TEMPLATE,
    IM_END,
    IM_START,
    chat_template,
    encode_conversation,
    end_of_turn,
    grow_vocab,
    make_chat_ready,
    with_chat_tokens,
)
from gptkit.errors import GptkitError
from gptkit.model import GPT, GPTConfig
from gptkit.tokenizer import Tokenizer, bytes_tokenizer, gpt2_tokenizer, train_bpe

MESSAGES = [
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": "Hi there!\n\n\nwhat  is 2+2?  "},
    {"role": "assistant", "content": "\n4, naïvely. 日本"},
    {"role": "user", "content": "and 3+3?"},
    {"role": "assistant", "content": "6"},
]


def _tokenizer(kind: str) -> Tokenizer:
    if kind == "bytes":
        return bytes_tokenizer()
    if kind == "gpt2":
        return gpt2_tokenizer()
    return train_bpe(["hello there, what is it? assistant user system " * 4, "naïve 日本 4 6 3+3"] * 3, 320)


@pytest.mark.parametrize("kind", ["bytes", "gpt2", "bpe"])
def test_ids_match_transformers_apply_chat_template(kind, tmp_path):
    from transformers import AutoTokenizer
    tok = with_chat_tokens(_tokenizer(kind))
    assert tok.specials == (IM_START, IM_END) and tok.vocab_size == tok.eot_id + 3
    tok.save(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["chat_template"] == CHATML_TEMPLATE
    hf = AutoTokenizer.from_pretrained(tmp_path)
    template = chat_template(tok)
    for messages, gen in ((MESSAGES, False), (MESSAGES[:4], True), (MESSAGES[1:2], True)):
        ref = hf.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True)
        ref = ref["input_ids"] if not isinstance(ref, list) else ref
        ours = tok.encode_special(template.render(messages, gen))
        assert ours == list(ref)
        if not gen:
            assert encode_conversation(tok, messages)[0] == list(ref)
    # the tokenizer read back from the directory is the same chat tokenizer
    back = Tokenizer.load(tmp_path)
    assert back.specials == tok.specials and back.chat_template == tok.chat_template
    assert back.fingerprint == tok.fingerprint != _tokenizer(kind).fingerprint


def test_only_assistant_turns_and_their_end_of_turn_are_trained():
    tok = with_chat_tokens(bytes_tokenizer())
    ids, trained, ends = encode_conversation(tok, MESSAGES)
    learned = tok.decode([i for i, t in zip(ids, trained) if t])
    assert learned == "\n4, naïvely. 日本" + IM_END + "6" + IM_END
    assert ends[-1] == len(ids) and ends == sorted(ends)
    # each message ends where the template's rendering of the conversation up to it ends
    assert tok.decode(ids[:ends[1]]).endswith("what  is 2+2?  " + IM_END + "\n")
    assert end_of_turn(tok) == [tok.special_ids[IM_END], tok.eot_id]


def test_a_tokenizer_with_a_template_keeps_it():
    tok = with_chat_tokens(bytes_tokenizer())
    assert with_chat_tokens(tok) is tok


def test_control_tokens_already_ordinary_tokens_are_refused():
    base = bytes_tokenizer()
    ranks = dict(base.ranks)
    ranks[IM_START.encode()] = len(ranks)  # a vocabulary that spells <|im_start|> as plain text
    odd = Tokenizer("bpe", ranks, [])
    with pytest.raises(GptkitError, match=r"already an ordinary token .*two meanings"):
        with_chat_tokens(odd)


def test_a_template_without_a_generation_prompt_is_refused():
    no_prompt = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    with pytest.raises(GptkitError, match="no generation prompt"):
        with_chat_tokens(bytes_tokenizer(), no_prompt)
    with pytest.raises(GptkitError, match="no chat template.*finetune --task chat"):
        chat_template(bytes_tokenizer())


LLAMA2 = ("{% for m in messages %}{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' + m['content'] + ' [/INST]' }}"
          "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endif %}{% endfor %}")


def test_a_template_whose_user_turn_ends_as_no_reply_does_needs_no_generation_prompt():
    """Llama 2's and Mistral's [INST] ... [/INST] have no add_generation_prompt block: [/INST] is the cue."""
    tok = bytes_tokenizer()
    ids, trained, _ = encode_conversation(tok, MESSAGES[1:3], chat_template(tok, LLAMA2))
    assert tok.decode([i for i, t in zip(ids, trained) if t]) == " " + MESSAGES[2]["content"] + " <|endoftext|>"
    assert tok.decode(ids[:trained.index(True)]).endswith(" [/INST]")


def test_a_template_that_wants_a_system_turn_first_is_accepted_and_one_that_always_fails_is_one_line():
    wants = ("{% if messages[0]['role'] != 'system' %}{{ raise_exception('a system turn first') }}{% endif %}"
             "{% for m in messages %}{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}A: {% endif %}")
    assert chat_template(bytes_tokenizer(), wants).render(MESSAGES[:2], True).endswith("A: ")
    with pytest.raises(GptkitError, match="fails on a conversation of one user turn: no conversation suits me"):
        chat_template(bytes_tokenizer(), "{{ raise_exception('no conversation suits me') }}")


@pytest.mark.parametrize("tied", [True, False])
def test_growth_keeps_old_logits_and_ties(tied):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=257, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                          tie_word_embeddings=tied))
    x = torch.randint(0, 257, (2, 12))
    with torch.no_grad():
        before = model(x)
    tok = make_chat_ready(model, bytes_tokenizer())
    assert model.config.vocab_size == tok.vocab_size == 259 and model.tokenizer is tok
    with torch.no_grad():
        after = model(x)
    assert after.shape[-1] == 259
    torch.testing.assert_close(after[..., :257], before, rtol=0, atol=0)
    wte = model.transformer.wte.weight
    assert (model.lm_head.weight is wte) == tied
    torch.testing.assert_close(wte[257], wte[:257].mean(0))
    torch.testing.assert_close(model.lm_head.weight[258], model.lm_head.weight[:257].mean(0))
    grow_vocab(model, 259)  # already that size: nothing changes
    assert model.config.vocab_size == 259


def test_a_saved_chat_model_chats_in_a_transformers_pipeline(tmp_path):
    from transformers import pipeline

    from gptkit.hf import load_model, save_model
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=257, n_positions=64, n_embd=16, n_layer=1, n_head=2))
    tok = make_chat_ready(model, bytes_tokenizer())
    save_model(model, tmp_path, tok)
    gen = json.loads((tmp_path / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [tok.special_ids[IM_END], tok.eot_id]
    back = load_model(tmp_path)
    assert back.tokenizer.specials == tok.specials and back.config.vocab_size == 259
    pipe = pipeline("text-generation", model=str(tmp_path), device="cpu")
    out = pipe([{"role": "user", "content": "hi"}], max_new_tokens=4, do_sample=False)
    turns = out[0]["generated_text"]
    assert turns[-1]["role"] == "assistant" and isinstance(turns[-1]["content"], str)


def test_gguf_vocabulary_lists_the_control_tokens():
    pytest.importorskip("gguf")
    from gptkit.export.vocab import gguf_vocab
    tok = with_chat_tokens(bytes_tokenizer())
    vocab = gguf_vocab(tok, 260)
    assert vocab.tokens[256:260] == ["<|endoftext|>", IM_START, IM_END, "[PAD259]"]
    assert vocab.types[256] == vocab.types[258] != vocab.types[255]
