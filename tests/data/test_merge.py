"""prepare --num-shards N --shard-index I on each machine, then --merge: equal to one prepare."""
import json
import random
import shutil
from pathlib import Path

import pytest

from gptkit.data import prepare
from gptkit.data.merge import merge
from gptkit.errors import GptkitError

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


def doc(seed: int, n: int = 120) -> str:
    r = random.Random(seed)
    return " ".join(r.choice(WORDS) for _ in range(n)) + "\n"


def near(text: str, seed: int = 0) -> str:
    words = text.split(" ")
    words[random.Random(seed).randrange(len(words))] = "changed"
    return " ".join(words)


@pytest.fixture
def src(tmp_path) -> Path:
    """Documents whose copies sit in the other half of the input list (so only the merge sees
    them), copies within a half, PII, and a JSONL file of several documents."""
    d = tmp_path / "src"
    d.mkdir()
    texts = [doc(i) for i in range(16)]
    texts += [texts[1], near(texts[2]), texts[12], "mail: ann@example.com\n" + doc(99), near(texts[14], 3)]
    for i, t in enumerate(texts):
        (d / f"{i:03d}.txt").write_text(t)
    (d / "zz.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in [doc(50), texts[3], doc(51)]))
    return d


def run(inputs, out, **kw):
    kw = {"tokenizer": "bytes", "progress": False, "num_workers": 1, "val_fraction": 0.3, "seed": 5,
          "shard_tokens": 700, "command": "test"} | kw
    return prepare(inputs, out, **kw)


def files_of(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.suffix == ".bin" or p.name.endswith(".json") and p.name != "datacard.json"}


def card(d: Path) -> dict:
    c = json.loads((d / "datacard.json").read_text())
    for k in ("created", "command", "parts", "part_commands"):
        c.pop(k, None)
    return c


@pytest.mark.parametrize("n", [2, 3])
def test_parts_then_merge_equal_one_prepare(tmp_path, src, n):
    one = run([src], tmp_path / "one")
    parts = []
    for i in range(n):
        m = run([src], tmp_path / f"part{i}", num_shards=n, shard_index=i)
        assert m["format"] == "gptkit-part-v1"
        parts.append(tmp_path / f"part{i}")
    merged = merge(list(reversed(parts)), tmp_path / "merged", progress=False, command="merge")  # any order
    assert merged == one
    assert files_of(tmp_path / "merged") == files_of(tmp_path / "one")
    assert card(tmp_path / "merged") == card(tmp_path / "one")
    removed = one["cleaning"]["stats"]["removed"]
    assert removed["exact_duplicate"]["documents"] == 3 and removed["near_duplicate"]["documents"] == 2
    full = json.loads((tmp_path / "merged" / "datacard.json").read_text())
    assert full["parts"] == n and full["command"] == "merge" and len(full["part_commands"]) == n


def test_merge_refuses_parts_that_do_not_belong_together(tmp_path, src):
    for i in range(2):
        run([src], tmp_path / f"p{i}", num_shards=2, shard_index=i)
    run([src], tmp_path / "gpt2", num_shards=2, shard_index=1, tokenizer="gpt2")
    run([src], tmp_path / "seed", num_shards=2, shard_index=1, seed=6)
    other = tmp_path / "other"
    shutil.copytree(src, other)
    (other / "000.txt").write_text("different")
    run([other], tmp_path / "inputs", num_shards=2, shard_index=1)
    cases = [
        (["p0", "gpt2"], "different tokenizer"),
        (["p0", "seed"], "different --seed"),
        (["p0", "inputs"], r"different input list"),
        (["p0", "p0"], "both part 0 of 2"),
        (["p0"], r"part\(s\) 1 of 2 missing"),
    ]
    for names, msg in cases:
        with pytest.raises(GptkitError, match=msg):
            merge([tmp_path / n for n in names], tmp_path / "out", progress=False)
        assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))
    run([src], tmp_path / "whole")
    with pytest.raises(GptkitError, match="is a finished data directory, not a part"):
        merge([tmp_path / "whole"], tmp_path / "out", progress=False)
    with pytest.raises(GptkitError, match="--shard-index must be in"):
        run([src], tmp_path / "x", num_shards=2, shard_index=2)
    with pytest.raises(GptkitError, match="train the BPE once"):
        run([src], tmp_path / "x", num_shards=2, tokenizer="bpe", vocab_size=300)


def _corrupt_first_shard(part: Path, value: int = 65535) -> Path:
    meta = json.loads((part / "meta.json").read_text())
    shard = part / meta["splits"]["train"]["shards"][0]["file"]
    raw = bytearray(shard.read_bytes())
    raw[2:402] = value.to_bytes(2, "little") * 200  # tokens 1..200 of a uint16 shard
    shard.write_bytes(bytes(raw))
    return shard


def test_merge_refuses_a_part_with_ids_beyond_the_vocabulary(tmp_path, src):
    for i in range(2):
        run([src], tmp_path / f"p{i}", num_shards=2, shard_index=i)
    shard = _corrupt_first_shard(tmp_path / "p1")
    with pytest.raises(GptkitError, match=rf"{shard.name} holds token id 65535, beyond the vocabulary of 257"):
        merge([tmp_path / "p0", tmp_path / "p1"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_reading_a_shard_with_ids_beyond_the_vocabulary_names_it(tmp_path, src):
    """Data that got such ids anyway (a shard edited by hand, an older merge): train and eval say so."""
    from gptkit.data import TokenShards
    from gptkit.data.shards import unigram_entropy
    run([src], tmp_path / "d")
    _corrupt_first_shard(tmp_path / "d")
    shards = TokenShards(tmp_path / "d", "train")
    import torch
    with pytest.raises(GptkitError, match="holds token id 65535, beyond the vocabulary of 257 ids"):
        for _ in shards.iter_eval_batches(8, 16):
            pass
    with pytest.raises(GptkitError, match="token id 65535"):
        for seed in range(20):  # random windows: some cover the bad tokens
            shards.get_batch(64, 16, torch.Generator().manual_seed(seed))
    with pytest.raises(GptkitError, match="token id 65535"):
        unigram_entropy(tmp_path / "d")
