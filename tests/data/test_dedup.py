import random

import numpy as np
from datasketch import MinHash

from gptkit.data.dedup import Deduper, MinHasher, exact_digest, shingle_hashes

WORDS = ("time person year way day thing man world life hand part child eye woman place work week case point "
         "government company number group problem fact be have do say get make go know take see come think look "
         "want give use find tell ask seem feel try leave call good new first last long great little own other old "
         "right big high different small large next early young important few public bad same able").split()


def doc(seed: int, n: int = 300) -> str:
    r = random.Random(seed)
    return " ".join(r.choice(WORDS) for _ in range(n)) + "."


def change_words(text: str, k: int, seed: int = 0) -> str:
    words = text.split(" ")
    r = random.Random(seed)
    for i in r.sample(range(len(words)), k):
        words[i] = "CHANGED"
    return " ".join(words)


def test_signature_equals_datasketch_update_batch():
    h = shingle_hashes(doc(1))
    m = MinHash(num_perm=128, seed=1, scheme="affine32", hashfunc=lambda x: x)
    m.update_batch([int(x) for x in h])
    assert np.array_equal(MinHasher().signature(h), m.hashvalues)


def test_shingles_ignore_case_punctuation_and_spacing_only():
    assert np.array_equal(shingle_hashes("One two three four five six"), shingle_hashes("one, TWO  three\nfour: five six!"))
    assert not np.array_equal(shingle_hashes("one two three four five six"), shingle_hashes("one two three four five seven"))
    assert len(shingle_hashes("a b c d e f g")) == 3 and len(shingle_hashes("just two")) == 1
    assert len(shingle_hashes("... !!! ---")) == 0 and len(shingle_hashes("")) == 0
    assert len(shingle_hashes("café naïve 日本語 über straße")) == 1  # non-ASCII letters are word characters


def test_exact_digest_normalises_whitespace_only():
    assert exact_digest("a  b\n\tc ") == exact_digest(" a b c")
    assert exact_digest("a b c") != exact_digest("A b c") and exact_digest("a+b") != exact_digest("a-b")


def check_all(texts, splits=None, **kw):
    d, mh = Deduper(**kw), MinHasher()
    splits = splits or ["train"] * len(texts)
    return [d.check(exact_digest(t), mh.signature(shingle_hashes(t)), s) for t, s in zip(texts, splits)]


def test_exact_and_near_copies_are_caught_distinct_documents_survive():
    base = [doc(i) for i in range(20)]
    texts = base + [base[3], "  " + base[4].replace(" ", "\n"), change_words(base[5], 3), change_words(base[6], 4, 1)]
    verdicts = check_all(texts)
    assert verdicts[:20] == [None] * 20  # 20 different documents on the same vocabulary all survive
    assert verdicts[20:] == [("exact", "train"), ("exact", "train"), ("near", "train"), ("near", "train")]


def test_copies_across_splits_are_reported_with_the_kept_split():
    a, b = doc(1), doc(2)
    verdicts = check_all([a, b, a, change_words(b, 2)], ["train", "val", "val", "train"])
    assert verdicts == [None, None, ("exact", "train"), ("near", "val")]


def test_threshold_is_respected():
    a = doc(7, 200)
    far = change_words(a, 40)  # Jaccard of 5-grams well below 0.8
    assert check_all([a, far]) == [None, None]
    closer = change_words(a, 15)  # about 0.55
    assert check_all([a, closer]) == [None, None]
    assert check_all([a, closer], threshold=0.4)[1] == ("near", "train")


def test_documents_without_words_dedup_exactly_only():
    assert check_all(["...", "...", "!!!"]) == [None, ("exact", "train"), None]


def test_memory_is_per_document_not_per_text():
    d, mh = Deduper(), MinHasher()
    big = doc(1, 200_000)  # ~1 MB of text: one signature, like any other document
    d.check(exact_digest(big), mh.signature(shingle_hashes(big)), "train")
    assert d._sigs.nbytes == 1024 * 128 * 4
