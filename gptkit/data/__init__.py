"""Data: reading inputs into documents (corpus.py), `prepare` (prepare.py: text -> token shards;
output.py: where it writes, its summary),
`TokenShards` (shards.py: shards -> batches) and training rows (batches.py).

The names below are the package's public API; import the rest from its module.
"""
from __future__ import annotations

from .corpus import Document, ReadStats, iter_documents, stdlib_corpus_files
from .output import format_summary
from .prepare import prepare
from .shards import FORMAT, TokenShards, read_meta, unigram_entropy

__all__ = ["FORMAT", "Document", "ReadStats", "TokenShards", "format_summary", "iter_documents", "prepare",
           "read_meta", "stdlib_corpus_files", "unigram_entropy"]
