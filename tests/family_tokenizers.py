"""Tiny tokenizers in the shapes the families ship, trained here with the `tokenizers` library and
saved as their Hugging Face directories are (tokenizer.json + tokenizer_config.json, the family's
tokenizer_class; nothing downloaded):

  llama3   byte-level BPE, Llama-3's split regex, BOS added by the post-processor (Llama-3.x)
  qwen2    byte-level BPE, NFC and Qwen's regex, no BOS, ChatML control tokens (Qwen2.5, Qwen3)
  smollm2  GPT-2's byte-level BPE with <|endoftext|> at id 0 and ChatML tokens (SmolLM2)
  llama2   SentencePiece-style BPE with byte fallback, tokenizer_class LlamaTokenizer (Llama-2)
  mistral  the same with a Metaspace pre-tokenizer and legacy=true (Mistral-7B-style)
"""
from __future__ import annotations

import json
from pathlib import Path

CORPUS = ["Hello world, this is a test. It's 1,234.56 dollars; we've paid 42%.",
          "naïve café e\u0301 日本語のテキスト 中文 Ελληνικά 😀🎉 and more",
          "  spaces   and\ttabs\nnewlines\r\n\n", "def f(x):\n    return x * 2  # done"] * 20
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
               r"\s+(?!\S)|\s+")
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA3_CHAT = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n'"
               " + m['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
               "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
LLAMA2_CHAT = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + "
               "' [/INST]' }}{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}")
KINDS = ("llama3", "qwen2", "smollm2", "llama2", "mistral")
FAMILY = {"llama3": "llama", "qwen2": "qwen2", "smollm2": "llama", "llama2": "llama", "mistral": "mistral"}


def _byte_level(regex: str | None, specials: list[str], vocab: int, nfc: bool = False):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    t = Tokenizer(models.BPE())
    if regex is None:  # GPT-2's own: ByteLevel with its regex
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(regex), "isolated"),
                                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    if nfc:
        t.normalizer = normalizers.NFC()
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return t


def _sentencepiece(metaspace: bool):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    t = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    if metaspace:
        t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    else:  # Llama-2's tokenizer.json, as the legacy converter wrote it
        t.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    t.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                   decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    t.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=420, special_tokens=specials, show_progress=False))
    return t


def build(kind: str, directory: Path) -> Path:
    """Write the `kind` tokenizer's files into `directory` (returned)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    if kind == "llama3":
        t = _byte_level(LLAMA3_REGEX, ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                       "<|end_header_id|>", "<|eot_id|>"], 360)
        bos = t.token_to_id("<|begin_of_text|>")
        t.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                          special_tokens=[("<|begin_of_text|>", bos)])])
        kw = dict(bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>", chat_template=LLAMA3_CHAT)
        cls = "PreTrainedTokenizerFast"
    elif kind == "qwen2":
        t = _byte_level(QWEN2_REGEX, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 360, nfc=True)
        kw = dict(eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML)
        cls = "Qwen2Tokenizer"
    elif kind == "smollm2":
        t = _byte_level(None, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 360)
        kw = dict(bos_token="<|im_start|>", eos_token="<|im_end|>", unk_token="<|endoftext|>", chat_template=CHATML)
        cls = "GPT2Tokenizer"
    else:
        t = _sentencepiece(metaspace=kind == "mistral")
        t.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                         special_tokens=[("<s>", 1)])
        kw = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", chat_template=LLAMA2_CHAT)
        cls = "LlamaTokenizer"
    PreTrainedTokenizerFast(tokenizer_object=t, **kw).save_pretrained(directory)
    path = Path(directory) / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.pop("backend", None)  # as the Hub's files are: the family's class names the tokenizer
    config["tokenizer_class"] = cls
    if kind in ("llama2", "mistral"):
        config.update(add_bos_token=True, add_eos_token=False, legacy=kind == "mistral")
        tj = Path(directory) / "tokenizer.json"  # the byte pieces are vocabulary, not added tokens (as Llama's)
        d = json.loads(tj.read_text())
        d["added_tokens"] = [t for t in d["added_tokens"] if not t["content"].startswith("<0x")]
        tj.write_text(json.dumps(d, ensure_ascii=False))
    path.write_text(json.dumps(config, indent=2))
    return Path(directory)


def vocab_size(directory: Path) -> int:
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(Path(directory) / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
