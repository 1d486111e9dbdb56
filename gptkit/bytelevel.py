"""GPT-2's byte-level alphabet: the reversible byte -> printable character map of byte-level BPE
vocabularies (GPT-2's vocab.json/merges.txt, and the tokenizer.json of Llama-3, Qwen2, SmolLM2)."""
from __future__ import annotations


def bytes_to_unicode() -> dict[int, str]:
    """Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls, space, ...) are
    shifted to U+0100 onwards, so that every token is a visible, whitespace-free string."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shifted = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table
