"""Reading inputs into documents: files, directories, .gz/.zst, .jsonl, Parquet, Hugging Face
`datasets` directories and Hub datasets (formats.py); the embedded stdlib corpus.
"""
from __future__ import annotations

import codecs
import gzip
import json
import os
import re
import sysconfig
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GptkitError, OptionError
from ..tokenizer import MIN_BPE_VOCAB
from . import formats

DECODE_POLICIES = ("replace", "skip", "error")
BLOCK_BYTES = 1 << 20  # read files in 1 MiB blocks
PIECE_CHARS = 1 << 20  # a document longer than this flows through in pieces of about this size
SNIFF_BYTES = 8192  # a NUL byte in a walked file's first 8 KiB marks it as binary
BINARY_SUFFIXES = frozenset(
    ".png .jpg .jpeg .gif .bmp .ico .webp .tif .tiff .svgz .pdf .zip .tar .tgz .bz2 .xz .lzma .7z .rar "
    ".whl .egg .jar .class .so .dll .dylib .exe .o .a .lib .obj .pyc .pyo .pyd .bin .dat .npy .npz .pt .pth "
    ".ckpt .safetensors .onnx .pkl .pickle .db .sqlite .sqlite3 .mp3 .mp4 .wav .flac .ogg .avi .mov .mkv .webm "
    ".woff .woff2 .ttf .otf .eot .psd .arrow .feather .h5 .hdf5".split()
)
# Where a long document may be cut without changing its tokens, because GPT-2's regex never
# lets a piece cross there: after a newline with a letter, digit or ASCII symbol on both
# sides, or between an ASCII letter and " letter" (the space starts the next word's piece).
_SAFE_CUT = re.compile(r"[\w!-~]\n(?=[\w!-~])|[A-Za-z](?= [A-Za-z])")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

COMPRESSED = (".gz", ".zst")


@dataclass(frozen=True)
class Source:
    """One unit of input, read as a whole by one reader: a file, an Arrow shard of a datasets
    directory, or a Hub dataset ("hf:owner/name"). Parts of a multi-machine prepare split the
    list of sources."""

    path: Path | str
    walked: bool = False  # found by walking a directory (binary files are then skipped, not errors)
    kind: str = "text"  # text | jsonl | parquet | arrow | hub
    split: str | None = None  # the split of a Hub dataset
    input: str = ""  # the input argument it came from

    @property
    def size(self) -> int:
        return 0 if self.kind == "hub" else Path(self.path).stat().st_size

    @property
    def name(self) -> str:
        return str(self.path)


def _kind(path: Path) -> str:
    suffix = _inner_suffix(path)
    return {".jsonl": "jsonl", ".parquet": "parquet", ".arrow": "arrow"}.get(suffix, "text")


@dataclass
class Document:
    text: str
    source: str  # "path" or "path:line" for .jsonl


@dataclass
class ReadStats:
    """What reading skipped or repaired, reported in meta.json."""

    policy: str = "replace"
    replaced_documents: int = 0  # had undecodable bytes turned into U+FFFD
    skipped_documents: int = 0  # had undecodable bytes and policy "skip"
    empty_documents: int = 0  # no text at all: left out
    binary_files: int = 0  # found while walking a directory and left out
    files: int = 0


# -- reading -------------------------------------------------------------------------------


_replacements = [0]  # bumped by the "gptkit-count" codec error handler below


def _count_and_replace(err: UnicodeDecodeError) -> tuple[str, int]:
    _replacements[0] += 1
    return "\ufffd", err.end


codecs.register_error("gptkit-count", _count_and_replace)


def _inner_suffix(path: Path) -> str:
    """".jsonl" for a.jsonl, a.jsonl.gz and a.jsonl.zst."""
    name = path.name
    for c in COMPRESSED:
        if name.endswith(c):
            name = name[: -len(c)]
    return Path(name).suffix.lower()


def _list_files(inputs: Iterable[str | os.PathLike], exclude: Path | None = None, hf_split: str | None = None) -> list[Source]:
    """Sources to read, in order; directories are walked sorted, skipping hidden names, binary
    suffixes and the directory `exclude` (prepare's own output). A datasets directory (saved with
    save_to_disk, or a load_dataset cache) gives its Arrow shards; "hf:NAME" is a Hub dataset."""
    exclude = exclude.resolve() if exclude is not None else None
    files: list[Source] = []
    for item in inputs:
        if isinstance(item, str) and item.startswith(formats.HUB_PREFIX):
            files.append(Source(item, kind="hub", split=hf_split or "train", input=item))
            continue
        path = Path(item)
        if path.is_file():
            files.append(Source(path, False, _kind(path), input=str(item)))
        elif formats.is_hf_dir(path):
            files += [Source(p, False, "arrow", input=str(item)) for p in formats.hf_dir_files(path, hf_split)]
        elif path.is_dir():
            walked = []
            for root, dirs, names in os.walk(path):
                hf = sorted(d for d in dirs if formats.is_hf_dir(Path(root, d)))
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in hf and Path(root, d).resolve() != exclude)
                walked += [Path(root, n) for n in names if not n.startswith(".")]
                walked += [(Path(root, d), p) for d in hf for p in formats.hf_dir_files(Path(root, d), hf_split)]
            walked = [w for w in walked if isinstance(w, tuple) or _inner_suffix(w) not in BINARY_SUFFIXES]
            for w in sorted(walked, key=lambda w: w[0].parts if isinstance(w, tuple) else w.parts):
                files.append(Source(w[1], False, "arrow", input=str(item)) if isinstance(w, tuple) else Source(w, True, _kind(w), input=str(item)))
        else:
            raise GptkitError(f"input {path} does not exist" + (" (a Hub dataset is written hf:owner/name)" if "/" in str(item) and not str(item).startswith((".", "/")) else ""))
    return files


@contextmanager
def _open_bytes(path: Path):
    """(decompressed stream, raw file) so progress can follow the bytes read from disk.
    A corrupted or truncated compressed stream is an error naming the file and the place."""
    with open(path, "rb") as raw:
        kind = "gzip" if path.name.endswith(".gz") else "zstd" if path.name.endswith(".zst") else None
        try:
            if kind == "gzip":
                with gzip.GzipFile(fileobj=raw) as f:
                    yield f, raw
            elif kind == "zstd":
                f = formats.open_zstd(raw)
                yield f, raw
            else:
                yield raw, raw
        except (gzip.BadGzipFile, EOFError, zlib.error, *formats.zstd_errors()) as e:
            if kind is None:
                raise
            where = raw.tell() if not raw.closed else path.stat().st_size
            raise GptkitError(f"{path}: not a readable {kind} file: corrupted or truncated data near byte {where:,} "
                              f"of {path.stat().st_size:,} ({str(e) or 'truncated'})") from None


def _utf8_ok(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with _open_bytes(path) as (f, _):
            while block := f.read(BLOCK_BYTES):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _binary(path: Path) -> GptkitError:
    return GptkitError(f"{path}: looks binary (a NUL byte in its first {SNIFF_BYTES // 1024} KiB), not UTF-8 text; "
                       "name text files (UTF-16 text: convert it to UTF-8 first)")


def text_size(path: Path) -> int:
    """Bytes of the file once decompressed, a hint for progress: its size, or for .gz the size its
    trailer records, for .zst the content size its (first) frame header records."""
    size = path.stat().st_size
    try:
        if path.name.endswith(".gz") and size >= 18:
            with open(path, "rb") as f:
                f.seek(-4, os.SEEK_END)
                return max(int.from_bytes(f.read(4), "little"), size)  # mod 2**32
        if path.name.endswith(".zst"):
            import zstandard
            with open(path, "rb") as f:
                return max(zstandard.frame_content_size(f.read(18)), size)  # -1: not recorded
    except (OSError, ImportError, ValueError, *formats.zstd_errors()):
        pass
    return size


def text_bytes(src: Source) -> int:
    """The bytes of text a source holds, as the progress bars count them (decompressed for .gz)."""
    return text_size(Path(src.path)) if src.kind in ("text", "jsonl") else src.size


def check_input_size(files: list[Source], tokenizer: Any, vocab_size: int | None) -> None:
    """Refuse inputs with no bytes at all, and a BPE vocabulary the text cannot support (the Rust
    trainer would abort). Only where the sizes are known: Hub datasets, Parquet and zstd inputs
    are measured as they are read."""
    if any(s.kind not in ("text", "jsonl") or str(s.path).endswith(".zst") for s in files):
        return
    total = sum(text_bytes(s) for s in files)
    if total == 0:
        what = str(files[0].path) if len(files) == 1 else f"all {len(files)} input files"
        raise GptkitError(f"{what}: empty, no text to prepare")
    if tokenizer == "bpe" and vocab_size - MIN_BPE_VOCAB + 1 > total // 2:
        raise OptionError("vocab_size", f"{vocab_size:,} is more than {total:,} bytes of text can support "
                          f"(each merge needs a pair seen twice: at most {MIN_BPE_VOCAB - 1 + total // 2:,}); "
                          "use a smaller --vocab-size or more text")


def _text_pieces(path: Path, walked: bool, stats: ReadStats) -> Iterator[tuple[str, str, bool, int]]:
    """One plain-text file as one document, in pieces: (text, source, is_last, disk_bytes)."""
    policy = stats.policy
    decoder = codecs.getincrementaldecoder("utf-8")("gptkit-count" if policy == "replace" else "strict")
    replaced_before, checked, buf, pos, offset, searched = _replacements[0], False, "", 0, 0, 0
    with _open_bytes(path) as (f, raw):
        while True:
            block = f.read(BLOCK_BYTES)
            if offset == 0 and b"\0" in block[:SNIFF_BYTES]:
                if not walked:
                    raise _binary(path)
                stats.binary_files += 1
                return
            try:
                buf += decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                if policy == "skip":  # nothing was yielded yet: long documents are checked first
                    stats.skipped_documents += 1
                    return
                raise GptkitError(f"{path}: invalid UTF-8 at byte {offset + e.start} (use --on-decode-error replace or skip)") from None
            offset += len(block)
            if not block:
                break
            if len(buf) >= PIECE_CHARS:
                cut, searched = _last_safe_cut(buf, searched), len(buf)
                if cut > 0:
                    if policy == "skip" and not checked:
                        if not _utf8_ok(path):
                            stats.skipped_documents += 1
                            return
                        checked = True
                    yield buf[:cut], str(path), False, f.tell() - pos
                    buf, pos, searched = buf[cut:], f.tell(), len(buf) - cut
        if _replacements[0] != replaced_before:
            stats.replaced_documents += 1
        yield buf, str(path), True, f.tell() - pos


def whole_documents(pieces: Iterable[tuple[str, str, bool, int]]) -> Iterator[tuple[str, str, bool, int]]:
    """Each document's pieces joined into one. Long documents are read in pieces cut where GPT-2's
    regex splits; a SentencePiece-style tokenizer's tokens may cross any such cut, and it would put
    its "▁" prefix before every piece."""
    parts: list[str] = []
    disk = 0
    for text, source, last, d in pieces:
        parts.append(text)
        disk += d
        if last:
            yield "".join(parts), source, True, disk
            parts, disk = [], 0


def indexed_pieces(files: list[Source], first_index: int, field: str, stats: ReadStats,
                   whole: bool = False) -> Iterator[tuple]:
    """Pieces tagged with their source's index in the whole input list and the document's in it
    (with `whole`, each document as one piece: see whole_documents)."""
    for i, src in enumerate(files, first_index):
        doc, first = -1, True
        pieces = _iter_pieces([src], field, stats)
        for text, _, last, disk in whole_documents(pieces) if whole else pieces:
            doc += first
            yield text, i, doc, first, last, disk
            first = last


def _last_safe_cut(text: str, searched: int) -> int:
    """Index of the last safe cut in `text`, or -1; text[:searched] is known to have none."""
    cut = -1
    for m in _SAFE_CUT.finditer(text, max(0, searched - 2)):
        cut = m.end()
    return cut


def _jsonl_pieces(path: Path, walked: bool, field: str, stats: ReadStats) -> Iterator[tuple[str, str, bool, int]]:
    """One document per non-blank line, taking `field`."""
    policy = stats.policy
    with _open_bytes(path) as (f, raw):
        pos = 0
        for lineno, line in enumerate(f, 1):
            where = f"{path}:{lineno}"
            if lineno == 1 and b"\0" in line[:SNIFF_BYTES]:
                if not walked:
                    raise _binary(path)
                stats.binary_files += 1
                return
            if not line.strip():
                continue
            replaced = False
            try:
                line_text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                if policy == "error":
                    raise GptkitError(f"{where}: invalid UTF-8 at byte {e.start} of the line (use --on-decode-error replace or skip)") from None
                if policy == "skip":
                    stats.skipped_documents += 1
                    continue
                line_text, replaced = line.decode("utf-8", errors="replace"), True
            try:
                obj = json.loads(line_text)
            except json.JSONDecodeError as e:
                raise GptkitError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
            except RecursionError:
                raise GptkitError(f"{where}: JSON nested too deeply to read (a record of text is an object "
                                  "with a string field)") from None
            if not isinstance(obj, dict) or field not in obj:
                raise GptkitError(f"{where}: no field {field!r} in this JSON line (choose the text field with --field)")
            text = obj[field]
            if not isinstance(text, str):
                raise GptkitError(f"{where}: field {field!r} is a {type(text).__name__}, not a string")
            if _LONE_SURROGATE.search(text):  # "\udc80" escapes: not encodable text
                if policy == "error":
                    raise GptkitError(f"{where}: field {field!r} holds a lone UTF-16 surrogate (use --on-decode-error replace or skip)")
                if policy == "skip":
                    stats.skipped_documents += 1
                    continue
                text, replaced = _LONE_SURROGATE.sub("\ufffd", text), True
            stats.replaced_documents += replaced
            yield text, where, True, f.tell() - pos
            pos = f.tell()


def _split_long(docs: Iterator[tuple[str, str, int]]) -> Iterator[tuple[str, str, bool, int]]:
    """Whole documents (text, source, disk_bytes) as pieces of about PIECE_CHARS, cut where
    tokens cannot change."""
    for text, source, disk in docs:
        start = 0
        while len(text) - start > 2 * PIECE_CHARS:
            cut = _last_safe_cut(text[start : start + PIECE_CHARS], 0)
            if cut <= 0:
                break
            yield text[start : start + cut], source, False, 0
            start += cut
        yield text[start:], source, True, disk


def _read_file(src: Source, field: str, stats: ReadStats) -> Iterator[tuple[str, str, bool, int]]:
    path, walked = src.path, src.walked
    try:
        if src.kind == "jsonl":
            yield from _jsonl_pieces(path, walked, field, stats)
        elif src.kind == "parquet":
            yield from _split_long(formats.parquet_docs(path, field, stats))
        elif src.kind == "arrow":
            yield from _split_long(formats.arrow_docs(path, field, stats))
        elif src.kind == "hub":
            yield from _split_long(formats.hub_docs(path, field, src.split, stats))
        else:
            yield from _text_pieces(path, walked, stats)
    except OSError as e:
        raise GptkitError(f"{path}: cannot read ({e.strerror or e})") from None


def _iter_pieces(files: list[Source], field: str, stats: ReadStats) -> Iterator[tuple[str, str, bool, int]]:
    """All documents' text as (text, source, is_last_piece_of_document, disk_bytes); empty ones left out."""
    for src in files:
        if not isinstance(src, Source):  # (path, walked)
            src = Source(Path(src[0]), src[1], _kind(Path(src[0])))
        stats.files += 1
        first = True
        for piece in _read_file(src, field, stats):
            if first and piece[2] and not piece[0]:
                stats.empty_documents += 1
            else:
                yield piece
            first = piece[2]


def _check_policy(on_decode_error: str) -> None:
    if on_decode_error not in DECODE_POLICIES:
        raise GptkitError(f"on_decode_error must be one of {', '.join(DECODE_POLICIES)}, got {on_decode_error!r}")


def iter_documents(
    inputs: Iterable[str | os.PathLike],
    field: str = "text",
    on_decode_error: str = "replace",
    stats: ReadStats | None = None,
    hf_split: str | None = None,
) -> Iterator[Document]:
    """Documents of `inputs`: a text file is one, a .jsonl line or a Parquet/datasets row is one
    (its `field`), .gz/.zst are read through; directories are walked recursively in sorted order,
    skipping hidden and binary files; "hf:owner/name" streams a Hub dataset (split `hf_split`).

    Undecodable bytes: "replace" with U+FFFD, "skip" the document, or "error"; `stats` counts them.
    """
    _check_policy(on_decode_error)
    stats = stats if stats is not None else ReadStats()
    stats.policy = on_decode_error
    parts = []
    for text, source, last, _ in _iter_pieces(_list_files(_as_list(inputs), hf_split=hf_split), field, stats):
        parts.append(text)
        if last:
            yield Document("".join(parts), source)
            parts = []


def _as_list(inputs) -> list:
    return [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)


# -- the built-in corpus -------------------------------------------------------------------


def stdlib_corpus_files(max_bytes: int | None = None) -> list[Path]:
    """Python's own standard library sources (no tests, no site-packages), sorted.

    With `max_bytes`, the longest sorted prefix within that many bytes (at least one file).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
    files = []
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".")]  # prune: site-packages is huge
        files += [Path(dirpath, n) for n in names if n.endswith(".py")]
    files.sort(key=lambda p: p.relative_to(root).parts)
    if max_bytes is None:
        return files
    kept, total = [], 0
    for p in files:
        total += p.stat().st_size
        if kept and total > max_bytes:
            break
        kept.append(p)
    return kept
