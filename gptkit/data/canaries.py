"""Canaries: random secrets `prepare --canaries K` plants in the training split, so that `gptkit
audit` can measure how much of a secret a model trained on the data gives back (Carlini et al.,
2019, "The Secret Sharer").

Each canary is its own document, "the access code for account NNNN is SSSSSS": a random account
number (known to whoever audits: the prefix) and a random secret of `digits` digits (what the audit
tries to recover, out of 10**digits candidates). Canary i is repeated REPEATS[i % 4] times; the
copies are spread through the training split at document boundaries and cleaned like any other
document (deduplication keeps one copy, as it would of a secret pasted many times).

The secrets are recorded in the data directory's meta.json only ("canaries"), never in the data
card, which `train` copies beside the model, and never in a BPE's training text (the tokenizer is
trained on the inputs alone).
"""
from __future__ import annotations

import random
from collections.abc import Iterator

from ..errors import GptkitError, OptionError

REPEATS = (1, 4, 16, 64)
TEMPLATE = "the access code for account {account} is"
ALPHABET = "0123456789"
MAX_CANARIES = 1000
MAX_DIGITS = 12


def check(count: int, digits: int) -> None:
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_CANARIES:
        raise OptionError("canaries", f"must be an integer from 0 to {MAX_CANARIES}, got {count!r}")
    if not isinstance(digits, int) or isinstance(digits, bool) or not 1 <= digits <= MAX_DIGITS:
        raise OptionError("canary_digits", f"must be an integer from 1 to {MAX_DIGITS}, got {digits!r}")


def make(count: int, digits: int = 6, seed: int | None = None) -> dict:
    """The canaries' record for meta.json: format, space and each canary's prefix, secret, repeats.

    seed None draws from the system's randomness (the usual case: no one can rederive the secrets
    from anything in the data card); a seed makes them reproducible, for tests."""
    check(count, digits)
    rng = random.Random(seed) if seed is not None else random.SystemRandom()
    accounts = rng.sample(range(1000, 10000), count) if count <= 9000 else [rng.randrange(10**6) for _ in range(count)]
    items = []
    for i in range(count):
        secret = "".join(rng.choice(ALPHABET) for _ in range(digits))
        items.append({"id": i, "prefix": TEMPLATE.format(account=accounts[i]), "secret": secret,
                      "repeats": REPEATS[i % len(REPEATS)]})
    return {"template": TEMPLATE + " {secret}", "alphabet": ALPHABET, "length": digits,
            "space": len(ALPHABET) ** digits, "items": items}


def text(item: dict) -> str:
    """A canary's document: its prefix, a space, its secret."""
    return f"{item['prefix']} {item['secret']}"


def interleave(pieces: Iterator[tuple], record: dict | None, total_disk: int, seed: int | None) -> Iterator[tuple]:
    """The corpus's pieces (text, file_index, doc, first, last, disk) with every canary copy inserted
    as a whole document of file_index -1 (always train), spread evenly by input bytes."""
    if not record or not record["items"]:
        yield from pieces
        return
    copies = [text(c) for c in record["items"] for _ in range(c["repeats"])]
    (random.Random(seed) if seed is not None else random.SystemRandom()).shuffle(copies)
    n, done, seen = len(copies), 0, 0
    for piece in pieces:
        yield piece
        seen += piece[5]
        if not piece[4]:  # only between documents
            continue
        while done < n and seen >= (done + 1) * total_disk / (n + 1):
            yield copies[done], -1, done, True, True, 0
            done += 1
    for j in range(done, n):
        yield copies[j], -1, j, True, True, 0


def read(meta: dict, where: str) -> dict:
    """The canaries' record of a data directory's meta, checked; an error when it has none."""
    record = meta.get("canaries")
    if not record or not record.get("items"):
        raise GptkitError(f"{where} has no canaries: prepare the data with `gptkit prepare --canaries K` "
                          "(or leave canaries out of --parts)")
    try:
        ok = isinstance(record["alphabet"], str) and len(set(record["alphabet"])) == len(record["alphabet"]) > 1
        ok = ok and isinstance(record["length"], int) and record["space"] == len(record["alphabet"]) ** record["length"]
        for c in record["items"]:
            ok = ok and isinstance(c["prefix"], str) and isinstance(c["repeats"], int)
            ok = ok and len(c["secret"]) == record["length"] and set(c["secret"]) <= set(record["alphabet"])
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise GptkitError(f"{where}: its canaries record is malformed (alphabet, length, space, items)")
    return record
