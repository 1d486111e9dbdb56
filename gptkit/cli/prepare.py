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
from pathlib import Path
from typing import Any

from ..errors import GptkitError, OptionError
from .args import finite_float

# The embedded default: a corpus every Python has, its standard library's own source.
STDLIB_TOKENIZER = "bpe"
STDLIB_VOCAB = 4096
STDLIB_MAX_BYTES = 24_000_000
STDLIB_PROMPTS = ["def fibonacci(n):\n", "import os\n\n\ndef list_files(", "class Stack:\n    def __init__(self"]


def _cache_dir() -> Path:
    base = os.environ.get("GPTKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "gptkit")
    return Path(base)


def cmd_prepare(args: argparse.Namespace) -> int:
    from ..data import format_summary, prepare
    t0 = time.time()
    if args.workers is not None and args.workers < 1:
        raise OptionError("workers", f"must be >= 1 (default: all cores), got {args.workers}")
    vocab_size = 8192 if args.vocab_size is None and args.tokenizer == "bpe" else args.vocab_size
    with warnings_as_lines():
        meta = prepare(args.inputs, args.out, tokenizer=args.tokenizer, vocab_size=vocab_size,
                       field=args.field, val_fraction=args.val_fraction, seed=args.seed,
                       num_workers=args.workers, on_decode_error=args.on_decode_error,
                       overwrite=args.overwrite, progress=not args.quiet)
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
    for path, _ in _list_files(sources):
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


def register(sub: Any) -> None:
    pr = sub.add_parser("prepare", help="tokenize text files into token shards")
    pr.add_argument("inputs", nargs="+", help=".txt/.md/.py/.jsonl files (or .gz of them), or directories")
    pr.add_argument("--tokenizer", default="gpt2", help="gpt2, bytes, bpe, or a tokenizer directory")
    pr.add_argument("--vocab-size", type=int, default=None, help="for --tokenizer bpe (default 8192)")
    pr.add_argument("--out", required=True, help="the data directory to write")
    pr.add_argument("--field", default="text", help="the text field of .jsonl records")
    pr.add_argument("--val-fraction", type=finite_float, default=0.01)
    pr.add_argument("--seed", type=int, default=1337)
    pr.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    pr.add_argument("--on-decode-error", choices=["replace", "skip", "error"], default="replace")
    pr.add_argument("--overwrite", action="store_true", help="replace an existing data directory")
    pr.add_argument("-q", "--quiet", action="store_true")
    pr.set_defaults(func=cmd_prepare)
