"""prepare's cleaning end to end: dedup within and across splits, PII, filters, the data card."""
import json
import random
from pathlib import Path

import numpy as np
import pytest

from gptkit.data import prepare
from gptkit.data.clean import CleanConfig
from gptkit.data.filters import Filters
from gptkit.errors import GptkitError
from gptkit.tokenizer import bytes_tokenizer

B = bytes_tokenizer()
WORDS = ("time person year way day thing man world life hand part child eye woman place work week case point "
         "government company number group problem fact be have do say get make go know take see come think look "
         "want give use find tell ask seem feel try leave call good new first last long great little own other old").split()


def doc(seed: int, n: int = 250) -> str:
    r = random.Random(seed)
    return " ".join(r.choice(WORDS) for _ in range(n)) + ".\n"


def near(text: str, k: int = 3, seed: int = 0) -> str:
    words = text.split(" ")
    for i in random.Random(seed).sample(range(len(words)), k):
        words[i] = "changed"
    return " ".join(words)


def tokens(out: Path, split: str) -> list[int]:
    meta = json.loads((out / "meta.json").read_text())
    parts = [np.fromfile(out / s["file"], dtype=meta["dtype"]) for s in meta["splits"][split]["shards"]]
    return np.concatenate(parts).tolist() if parts else []


def docs_of(out: Path) -> dict[str, list[str]]:
    """Each split's documents, decoded."""
    res = {}
    for split in ("train", "val"):
        ids = tokens(out, split)
        text = B.decode([i for i in ids])
        res[split] = [d for d in text.split("<|endoftext|>") if d]
    return res


def run(inputs, out, **kw):
    kw = {"tokenizer": "bytes", "progress": False, "num_workers": 1, "command": "test"} | kw
    return prepare(inputs, out, **kw)


def corpus(tmp_path: Path, texts: list[str]) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i, t in enumerate(texts):
        (src / f"{i:03d}.txt").write_text(t)
    return src


def test_exact_and_near_duplicates_go_within_and_across_splits(tmp_path):
    base = [doc(i) for i in range(30)]
    dups = [base[2], "  " + base[3].replace(" ", "\n "), near(base[4]), near(base[5], 5, 1)]
    src = corpus(tmp_path, base + dups)
    meta = run([src], tmp_path / "out", val_fraction=0.3, seed=3)
    got = docs_of(tmp_path / "out")
    kept = got["train"] + got["val"]
    assert sorted(kept) == sorted(base)  # every copy removed, every distinct document kept
    removed = meta["cleaning"]["stats"]["removed"]
    assert removed["exact_duplicate"]["documents"] == 2 and removed["near_duplicate"]["documents"] == 2
    assert removed["exact_duplicate"]["bytes"] == len(dups[0].encode()) + len(dups[1].encode())
    # the draw put some copies in the other split than their original: counted as cross-split
    from gptkit.data.prepare import _is_val
    split_of = ["val" if _is_val(3, i, 0, 0.3) else "train" for i in range(34)]
    crossing = sum(split_of[30 + j] != split_of[k] for j, k in enumerate([2, 3, 4, 5]))
    cs = meta["cleaning"]["stats"]["cross_split_duplicates"]
    assert cs["exact_duplicate"] + cs["near_duplicate"] == crossing > 0
    # no val document is a near copy of a train document
    from gptkit.data.dedup import MinHasher, shingle_hashes
    mh = MinHasher()
    for v in got["val"]:
        sv = mh.signature(shingle_hashes(v))
        assert all(np.mean(sv == mh.signature(shingle_hashes(t))) < 0.8 for t in got["train"])


def test_keep_duplicates(tmp_path):
    texts = [doc(1), doc(1), doc(2)]
    meta = run([corpus(tmp_path, texts)], tmp_path / "out", clean=CleanConfig(dedup=False))
    assert meta["documents"] == 3 and meta["cleaning"]["stats"]["removed"]["exact_duplicate"]["documents"] == 0


def test_pii_redact_drop_keep(tmp_path):
    texts = ["Mail me at ann@example.com or call (415) 555-2671.\n", "Nothing personal here, version 1.2.3 of 2024-01-31.\n",
             "key AKIAIOSFODNN7EXAMPLE from 93.184.216.34\n"]
    src = corpus(tmp_path, texts)
    m = run([src], tmp_path / "r", val_fraction=0)
    assert docs_of(tmp_path / "r")["train"] == ["Mail me at <EMAIL> or call <PHONE>.\n", texts[1], "key <SECRET> from <IP_ADDRESS>\n"]
    st = m["cleaning"]["stats"]
    assert st["pii_found"] == {"PRIVATE_KEY": 0, "SECRET": 1, "EMAIL": 1, "CREDIT_CARD": 0, "IP_ADDRESS": 1, "PHONE": 1}
    assert st["pii_documents"] == 2
    assert m["splits"]["train"]["bytes"] == sum(len(d.encode()) for d in docs_of(tmp_path / "r")["train"])
    m = run([src], tmp_path / "d", val_fraction=0, clean=CleanConfig(pii="drop"))
    assert docs_of(tmp_path / "d")["train"] == [texts[1]] and m["cleaning"]["stats"]["removed"]["pii"]["documents"] == 2
    run([src], tmp_path / "k", val_fraction=0, clean=CleanConfig(pii="keep"))
    assert docs_of(tmp_path / "k")["train"] == texts


def test_filters(tmp_path):
    texts = ["short\n", doc(1), "{}[]<>;;;" * 50 + "\n", "Le renard brun rapide saute par-dessus le chien paresseux et court dans la forêt.\n"]
    meta = run([corpus(tmp_path, texts)], tmp_path / "out", val_fraction=0,
               clean=CleanConfig(filters=Filters(min_chars=20, max_non_text=0.5, languages=("en",))))
    assert docs_of(tmp_path / "out")["train"] == [texts[1]]
    removed = meta["cleaning"]["stats"]["removed"]
    assert [removed[k]["documents"] for k in ("min_chars", "max_non_text", "language")] == [1, 1, 1]
    with pytest.raises(GptkitError, match="--languages: unknown language"):
        Filters(languages=("xx",))
    with pytest.raises(GptkitError, match="--max-non-text"):
        Filters(max_non_text=2)


def test_long_document_dropped_after_its_pieces_were_written(tmp_path, monkeypatch):
    import gptkit.data.corpus as corpus_mod
    monkeypatch.setattr(corpus_mod, "PIECE_CHARS", 1000)
    monkeypatch.setattr(corpus_mod, "BLOCK_BYTES", 512)
    long = "".join(doc(i, 60) for i in range(40))  # ~15 kB: many pieces
    src = corpus(tmp_path, [doc(100), long, doc(101), long])
    meta = run([src], tmp_path / "out", val_fraction=0, shard_tokens=5000)
    assert docs_of(tmp_path / "out")["train"] == [doc(100), long, doc(101)]
    assert meta["cleaning"]["stats"]["removed"]["exact_duplicate"]["documents"] == 1


def test_data_card_counts_equal_what_happened(tmp_path):
    base = [doc(i) for i in range(12)]
    texts = base + [base[0], near(base[1]), "x\n", "Reach me: bob@example.org\n"]
    src = corpus(tmp_path, texts)
    meta = run([src], tmp_path / "out", val_fraction=0.25, clean=CleanConfig(filters=Filters(min_chars=3)), command="gptkit prepare src")
    card = json.loads((tmp_path / "out" / "datacard.json").read_text())
    md = (tmp_path / "out" / "DATACARD.md").read_text()
    got = docs_of(tmp_path / "out")
    assert card["documents"] == {"read": 16, "kept": len(got["train"]) + len(got["val"])} and card["documents"]["kept"] == 13
    for s in ("train", "val"):
        assert card["splits"][s]["documents"] == len(got[s]) == meta["splits"][s]["documents"]
        assert card["splits"][s]["tokens"] == len(tokens(tmp_path / "out", s))
    assert card["dedup"]["removed"]["exact"]["documents"] == 1 and card["dedup"]["removed"]["near"]["documents"] == 1
    assert card["pii"]["found"]["EMAIL"] == 1 and card["pii"]["documents_with_pii"] == 1
    assert card["filters"]["removed"]["min_chars"]["documents"] == 1
    assert card["sources"] == [{"input": str(src), "files": 16, "bytes": sum(len(t.encode()) for t in texts)}]
    assert card["command"] == "gptkit prepare src" and card["tokenizer"]["kind"] == "bytes"
    assert "gptkit prepare src" in md and "| near duplicates | 1 |" in md and "| EMAIL | 1 |" in md


def test_everything_removed_is_one_clear_error(tmp_path):
    src = corpus(tmp_path, [doc(1), doc(1)])
    with pytest.raises(GptkitError, match="removed by cleaning"):
        run([src], tmp_path / "out", clean=CleanConfig(filters=Filters(min_chars=10**6)))
    assert not (tmp_path / "out").exists()


def test_train_copies_the_data_card_into_the_run(tmp_path):
    from gptkit.train import TrainConfig, train
    src = corpus(tmp_path, [doc(i, 400) for i in range(6)])
    run([src], tmp_path / "data", val_fraction=0.3, command="gptkit prepare src")
    train(TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), preset="tiny", block_size=16, batch_size=2,
                      max_iters=1, warmup_iters=1, eval_interval=1, eval_iters=1, progress=False, dtype="float32"))
    for name in ("DATACARD.md", "datacard.json"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "data" / name).read_bytes()


def test_a_bpe_is_trained_on_redacted_text(tmp_path):
    texts = [f"write to someone.special.address{i}@example.com about it\n" * 20 for i in range(3)]
    run([corpus(tmp_path, texts)], tmp_path / "out", tokenizer="bpe", vocab_size=300, val_fraction=0)
    from gptkit.tokenizer import Tokenizer
    vocab = Tokenizer.load(tmp_path / "out").ranks
    assert not any(b"special" in t or b"example" in t for t in vocab)  # the address never reached the trainer
    assert any(b"EMAIL" in t for t in vocab)  # its placeholder did
