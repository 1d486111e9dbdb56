"""`gptkit prepare`: text files -> token shards; also the cached preparation `train` uses."""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GptkitError, OptionError
from .args import add_dataclass_args
from .args import option as _opt

# The embedded default: a corpus every Python has, its standard library's own source.
STDLIB_TOKENIZER = "bpe"
STDLIB_VOCAB = 4096
STDLIB_MAX_BYTES = 24_000_000
STDLIB_PROMPTS = ["def fibonacci(n):\n", "import os\n\n\ndef list_files(", "class Stack:\n    def __init__(self"]


def _cache_dir() -> Path:
    base = os.environ.get("GPTKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "gptkit")
    return Path(base)


def clean_config(args: argparse.Namespace):
    """The cleaning options as a CleanConfig (validated before any work)."""
    from ..data.clean import CleanConfig
    from ..data.decontam import Decontaminator
    from ..data.filters import Filters, parse_languages
    decontam = None
    if args.decontaminate:
        files = [f for f in args.decontaminate.split(",") if f.strip()]
        decontam = Decontaminator.from_files(files, args.decontaminate_n, args.decontaminate_mode)
    return CleanConfig(pii=args.pii, dedup=not args.keep_duplicates, threshold=args.dedup_threshold,
                       filters=Filters(args.min_chars, args.max_non_text, parse_languages(args.languages)),
                       decontaminate=decontam)


def cmd_prepare(args: argparse.Namespace) -> int:
    from ..data import format_summary, prepare
    t0 = time.time()
    if args.workers is not None and args.workers < 1:
        raise OptionError("workers", f"must be >= 1 (default: all cores), got {args.workers}")
    with warnings_as_lines():
        if args.merge:
            if args.canaries:
                raise OptionError("canaries", "are planted by prepare, not by --merge: plant them in a one-machine prepare")
            from ..data.merge import merge
            meta = merge(args.inputs, args.out, overwrite=args.overwrite, progress=not args.quiet)
        else:
            clean = clean_config(args)
            vocab_size = 8192 if args.vocab_size is None and args.tokenizer == "bpe" else args.vocab_size
            meta = prepare(args.inputs, args.out, tokenizer=args.tokenizer, vocab_size=vocab_size,
                           field=args.field, val_fraction=args.val_fraction, seed=args.seed,
                           num_workers=args.workers, on_decode_error=args.on_decode_error,
                           overwrite=args.overwrite, progress=not args.quiet, clean=clean,
                           hf_split=args.hf_split, num_shards=args.num_shards, shard_index=args.shard_index,
                           canaries=args.canaries, canary_digits=args.canary_digits)
    print(format_summary(meta, time.time() - t0))
    return 0


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Python warnings raised inside, printed as `gptkit: warning: ...` lines on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                print(f"gptkit: warning: {w.message}", file=sys.stderr)


def stdlib_data_dir(progress: bool = True) -> Path:
    """Prepare (once, then reuse) the Python standard library corpus in the cache directory (one
    per Python version: the standard library changes between them)."""
    from ..data import stdlib_corpus_files
    version = "".join(map(str, sys.version_info[:2]))
    out = _cache_dir() / f"data/stdlib-{STDLIB_TOKENIZER}{STDLIB_VOCAB}-py{version}"
    return _prepare_once(lambda: stdlib_corpus_files(max_bytes=STDLIB_MAX_BYTES), out,
                         STDLIB_TOKENIZER, STDLIB_VOCAB, progress, "the embedded corpus, Python's standard library")


def corpus_data_dir(corpus: Path, tokenizer: str, vocab_size: int | None, progress: bool = True) -> Path:
    """`train --data` given raw text (a file or a directory of them): prepare it once into the cache,
    keyed on the content: every file's path, size and modification time (a changed file, one added
    or removed, is prepared again), and the tokenizer's own files when it is a directory."""
    src = corpus.resolve()
    key = _content_key([src], tokenizer, vocab_size)
    out = _cache_dir() / f"data/{src.name}-{Path(tokenizer).name}-{key}"
    return _prepare_once(lambda: [src], out, tokenizer, vocab_size, progress, str(src))


def _content_key(sources: list[Path], tokenizer: str, vocab_size: int | None) -> str:
    from ..data.corpus import _list_files
    h = hashlib.blake2b(f"{tokenizer}|{vocab_size}".encode(), digest_size=8)
    for src in _list_files(sources):
        if src.kind == "hub":  # no file to look at: the name and split
            h.update(f"|{src.path}|{src.split}".encode())
            continue
        path = Path(src.path)
        st = path.stat()
        h.update(f"|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    tok_dir = Path(tokenizer)
    if tokenizer not in ("gpt2", "bytes", "bpe") and tok_dir.is_dir():
        for name in sorted(p.name for p in tok_dir.iterdir() if p.is_file()):
            h.update(name.encode() + (tok_dir / name).read_bytes())
    return h.hexdigest()[:12]


def _prepare_once(sources: Any, out: Path, tokenizer: str, vocab_size: int | None, progress: bool,
                  what: str) -> Path:
    """Rank 0 prepares (unless already done); other torchrun ranks wait for its meta.json."""
    from ..data import format_summary, prepare
    if (out / "meta.json").is_file():
        return out
    if os.environ.get("RANK", "0") != "0":
        deadline = time.time() + 3600
        while not (out / "meta.json").is_file():
            if time.time() > deadline:
                raise GptkitError(f"timed out waiting for rank 0 to prepare {out}")
            time.sleep(1)
        return out
    print(f"Preparing {what} with the {tokenizer} tokenizer into {out}", file=sys.stderr)
    t0 = time.time()
    with warnings_as_lines():
        meta = prepare(sources(), out, tokenizer=tokenizer, vocab_size=vocab_size, progress=progress)
    print(format_summary(meta, time.time() - t0), file=sys.stderr)
    return out


@dataclass
class PrepareCommand:
    inputs: list[str] = _opt(None, "files (.txt/.md/.py/..., .jsonl, .parquet, .gz/.zst of text or jsonl), directories, "
                             "datasets directories (save_to_disk or a load_dataset cache), hf:owner/name Hub datasets; "
                             "with --merge, the part directories", positional="+")
    out: str = _opt(None, "the data directory to write", required=True)
    tokenizer: str = _opt("gpt2", "gpt2, bytes, bpe (trained on the inputs), or a tokenizer directory")
    vocab_size: int | None = _opt(None, "for --tokenizer bpe: tokens in the trained vocabulary (none: 8192)")
    field: str = _opt("text", "the text field of .jsonl records, Parquet files and datasets")
    hf_split: str | None = _opt(None, "split of a datasets directory or hf: dataset (none: every split of a saved "
                                "DatasetDict; train for hf:)")
    val_fraction: float = _opt(0.01, "fraction of the documents held out for validation")
    seed: int = _opt(1337, "seed of the train/val split")
    workers: int | None = _opt(None, "encoding processes (none: all cores)")
    on_decode_error: str = _opt("replace", "bytes that are not UTF-8: replace them (U+FFFD), skip the file, or "
                                "stop with an error", choices=["replace", "skip", "error"])
    pii: str = _opt("redact", "e-mails, phone numbers, IP addresses, card numbers, secrets, private keys: replace "
                    "them with <KIND> placeholders, drop the document, or keep them", choices=["redact", "drop", "keep"])
    keep_duplicates: bool = _opt(False, "keep exact and near-duplicate documents (otherwise removed, first copy "
                                 "kept, across the corpus and both splits)")
    dedup_threshold: float = _opt(0.8, "near duplicates: MinHash Jaccard similarity of word 5-grams at or above "
                                  "this (fraction)")
    min_chars: int = _opt(0, "drop documents shorter than this (characters; 0: off)")
    max_non_text: float = _opt(1.0, "drop documents with a larger share of ASCII punctuation, symbols and control "
                               "characters (fraction; 1: off)")
    languages: str | None = _opt(None, "keep only documents in these languages, identified by py3langid "
                                 "(comma-separated ISO 639-1 codes such as en,fr; none: all)")
    decontaminate: str | None = _opt(None, "evaluation sets (comma-separated .jsonl task files or text files, one "
                                     "item per line): drop training documents sharing an n-gram of words with any")
    decontaminate_n: int = _opt(13, "decontamination n-gram length in normalised words (GPT-3's paper used 13)")
    decontaminate_mode: str = _opt("drop", "drop a contaminated document, or cut the shared spans out of it",
                                   choices=["drop", "cut"])
    num_shards: int = _opt(1, "prepare only part --shard-index of the input list, out of this many (one per "
                           "machine; combine the parts with --merge)")
    shard_index: int = _opt(0, "the part this machine prepares (0 .. num-shards - 1)")
    canaries: int = _opt(0, "plant this many random secrets in the training split, repeated 1, 4, 16 or 64 times, "
                         "for `gptkit audit` (recorded in meta.json, never in the data card; 0: none)")
    canary_digits: int = _opt(6, "digits of each canary's secret (10**digits candidates)")
    merge: bool = _opt(False, "the inputs are part directories: combine them into --out, deduplicating across parts")
    overwrite: bool = _opt(False, "replace an existing data directory")
    quiet: bool = _opt(False, "no progress output", flags=["-q"])


def register(sub: Any) -> None:
    pr = sub.add_parser("prepare", help="tokenize text into token shards, cleaned on the way in")
    add_dataclass_args(pr, PrepareCommand)
    pr.set_defaults(func=cmd_prepare)
