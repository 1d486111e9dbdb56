"""Tiny models with known answers for the audit tests: trained until they have memorised a small
random corpus (or its planted canaries), or left at their random initialisation. Trained by a plain
loop (no checkpoints, no evaluation) to keep the suite fast.

The fixtures are imported by the test modules (a conftest.py here would shadow tests/conftest.py,
which other tests import by name); each is built once per session whichever module asks first."""
from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import pytest
import torch

from gptkit.data import TokenShards, prepare
from gptkit.data.clean import CleanConfig
from gptkit.hf import save_model
from gptkit.model import GPT, preset_config
from gptkit.tokenizer import Tokenizer

MEMORISE_STEPS = 500  # at lr 3e-3: 97 % of 16-token suffixes back (250 steps: 53 %; lr 1e-2: none)
CANARY_STEPS = 120
WORDS = ("alpha beta gamma delta echo fox golf hotel india juliet kilo lima mike november oscar papa quebec "
         "romeo sierra tango").split()


def write_corpus(directory: Path, docs: int, words: int, seed: int = 0) -> Path:
    """Documents of random words: nothing in them can be predicted, only memorised."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "docs.jsonl", "w") as f:
        for _ in range(docs):
            f.write(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(words))}) + "\n")
    return directory


def make_data(tmp: Path, canaries: int = 0, docs: int = 12, words: int = 40) -> Path:
    corpus = write_corpus(tmp / "corpus", docs, words)
    out = tmp / "data"
    with warnings.catch_warnings():  # a validation split this small is the point, not a problem
        warnings.simplefilter("ignore")
        prepare([corpus], out, tokenizer="bytes", val_fraction=0.3, seed=0, progress=False, num_workers=1,
                clean=CleanConfig(pii="keep", dedup=False), canaries=canaries, canary_digits=3, canary_seed=1)
    return out


def fit(data: Path, out: Path, steps: int, seed: int = 0, lr: float = 1e-2) -> Path:
    """A tiny GPT trained `steps` AdamW steps on the train split (0: the random initialisation)."""
    torch.manual_seed(seed)
    model = GPT(preset_config("tiny", vocab_size=257, n_positions=128))
    shards = TokenShards(data, "train")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        for group in opt.param_groups:  # warm up, then decay linearly to a tenth
            group["lr"] = lr * min((step + 1) / 10, 1 - 0.9 * step / steps)
        x, y = shards.get_batch(32, 64, g)
        loss = model.loss(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    return save_model(model, out, Tokenizer.load(data))


_BUILT: dict[str, Path] = {}


def _once(name: str, factory, build) -> Path:
    if name not in _BUILT:
        _BUILT[name] = build(factory.mktemp(name))
    return _BUILT[name]


@pytest.fixture(scope="session")
def plain_data(tmp_path_factory) -> Path:
    return _once("plain", tmp_path_factory, lambda t: make_data(t, docs=6, words=30))


@pytest.fixture(scope="session")
def canary_data(tmp_path_factory) -> Path:
    return _once("canary", tmp_path_factory, lambda t: make_data(t, canaries=4, docs=4, words=20))


@pytest.fixture(scope="session")
def memorised(tmp_path_factory, plain_data) -> Path:
    return _once("memorised", tmp_path_factory, lambda t: fit(plain_data, t, steps=MEMORISE_STEPS, lr=3e-3))


@pytest.fixture(scope="session")
def canary_model(tmp_path_factory, canary_data) -> Path:
    return _once("canary_model", tmp_path_factory, lambda t: fit(canary_data, t, steps=CANARY_STEPS))


@pytest.fixture(scope="session")
def untrained(tmp_path_factory, canary_data) -> Path:
    return _once("untrained", tmp_path_factory, lambda t: fit(canary_data, t, steps=0))
