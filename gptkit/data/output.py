"""Where `prepare` (and `prepare --merge`) writes, and what it says about the result: --out is
new, empty, or (with --overwrite) a data directory gptkit made holding nothing else and no input;
the new directory replaces it in renames; the summary line counts what was left out, and the
warnings name a validation split too small to measure.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import OptionError
from ..files import remove_stale
from ..outputs import output_dir
from ..tokenizer import TOKENIZER_FILES
from .clean import cleaning_summary
from .shards import FORMAT, PART_FORMAT


def check_out_dir(out_dir: Path, inputs: list, overwrite: bool) -> Path:
    """--out must be a new or empty directory, or (with --overwrite) a data directory gptkit made that
    holds nothing else and none of the inputs: never a directory of the user's own files. Returns
    the directory to write (a symlink's target: the link is kept)."""
    if not str(out_dir):
        raise OptionError("out", "is empty; name the data directory to write")
    out_dir = output_dir(out_dir, "out", inputs=inputs, ours=lambda p: True, what="data",
                         whole=True)  # the rules all share
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return out_dir
    if not overwrite:
        raise OptionError("out", f"{out_dir} already exists and is not empty (--overwrite replaces a data "
                          "directory made by `gptkit prepare`)")
    meta_path = out_dir / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        assert isinstance(meta, dict) and meta.get("format") in (FORMAT, PART_FORMAT)
    except (OSError, ValueError, RecursionError, AssertionError):
        raise OptionError("out", f"{out_dir} is not a data directory made by `gptkit prepare` (it has no gptkit "
                          "meta.json): --overwrite only replaces those; choose another --out") from None
    ours = {"meta.json", *TOKENIZER_FILES, *(meta.get("written") or [])}
    for split in (meta.get("splits") or {}).values():
        ours |= {s.get("file") for s in (split.get("shards") or []) if isinstance(s, dict)}
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in ours or not p.is_file())
    if foreign:
        raise OptionError("out", f"{out_dir} holds {foreign[0]}"
                          f"{f' (and {len(foreign) - 1} more)' if len(foreign) > 1 else ''}, which `gptkit prepare` "
                          "did not write: --overwrite replaces only what gptkit made; move it away or choose another --out")
    return out_dir


@contextmanager
def staged(out_dir: Path) -> Iterator[Path]:
    """A fresh hidden directory beside out_dir to write the data into. When the block ends it
    takes out_dir's place (the old data kept until the new is in place); on any error it is
    removed, and a killed run's leftovers are removed by the next: never a half-written directory."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir.parent, f".{out_dir.name}.tmp-", f".{out_dir.name}.old-")
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        move_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_meta(tmp: Path, meta: dict) -> None:
    """meta.json, written last, listing every file of the directory (what --overwrite may replace)."""
    meta["written"] = sorted([p.name for p in tmp.iterdir()] + ["meta.json"])
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def move_into_place(tmp: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    os.replace(out_dir, old)  # keep the previous data until the new one is in place
    os.replace(tmp, out_dir)
    shutil.rmtree(old)


MIN_VAL_TOKENS = 10_000  # fewer, and a validation loss is too noisy to compare runs by


def split_warnings(splits: dict, val_fraction: float, documents: int) -> list[str]:
    """What is wrong with the validation split, in words a user can act on."""
    val, total = splits["val"], splits["train"]["tokens"] + splits["val"]["tokens"]
    if val_fraction == 0:
        return [("no validation split (--val-fraction 0): `gptkit train` needs one; evaluate on this data "
                 "with `gptkit eval --split train`")]
    out = []
    if splits["train"]["tokens"] == 0:
        out.append(f"the training split is empty: all {documents:,} documents drew val (--val-fraction "
                   f"{val_fraction:g}); lower --val-fraction or split the text into more documents")
    better = min(0.5, max(2 * val_fraction, 20 / max(documents, 1), 2 * MIN_VAL_TOKENS / max(total, 1)))
    hint = f"raise --val-fraction (e.g. {float(f'{better:.1g}'):g})" if better > val_fraction else "use more text"
    share = val["tokens"] / max(total, 1)
    if documents >= 2 and val["documents"] == 1:
        out.append(f"the validation split is 1 document of {documents:,} ({val['tokens']:,} tokens): a loss on one "
                   f"document is noisy and may not be typical; {hint}")
    elif val["tokens"] < MIN_VAL_TOKENS:
        out.append(f"the validation split has {val['tokens']:,} tokens, too few to measure a loss reliably "
                   f"(at least {MIN_VAL_TOKENS:,}); {hint}")
    if share > max(3 * val_fraction, val_fraction + 0.1):
        out.append(f"the validation split holds {share:.0%} of the tokens (--val-fraction asked {val_fraction:g}), "
                   f"leaving {splits['train']['tokens']:,} to train on: one long document drew val; split the "
                   "text into more documents (files, or .jsonl lines)")
    return out


def format_summary(meta: dict, seconds: float) -> str:
    """One line for the CLI: documents, bytes, tokens, bytes/token and throughput."""
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    nbytes, tokens = train["bytes"] + val["bytes"], train["tokens"] + val["tokens"]
    line = (
        f"{meta['documents']:,} {_plural(meta['documents'], 'document')} ({train['documents']:,} train / "
        f"{val['documents']:,} val), "
        f"{nbytes / 1e6:,.1f} MB -> {tokens:,} tokens ({train['tokens']:,} train / {val['tokens']:,} val), "
        f"{nbytes / max(tokens, 1):.2f} bytes/token, {seconds:.1f} s at {nbytes / 1e6 / max(seconds, 1e-9):.1f} MB/s"
    )
    errors = meta.get("decode_errors") or {}
    left_out = [
        (errors.get("replaced_documents", 0), "{} with undecodable bytes replaced (U+FFFD)", "document"),
        (errors.get("skipped_documents", 0), "{} with undecodable bytes skipped", "document"),
        (meta.get("skipped_binary_files", 0), "{} skipped", "binary file"),
        (meta.get("empty_documents", 0), "{} skipped", "empty document"),
    ]
    notes = [text.format(f"{n:,} {_plural(n, what)}") for n, text, what in left_out if n]
    return line + cleaning_summary(meta) + ("; " + ", ".join(notes) if notes else "")


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"
