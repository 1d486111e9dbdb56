"""Build the two real task corpora of the README from what this machine already has, offline.

    python benchmarks/task_corpora.py po --lang de --out data/tasks/po-en-de
    python benchmarks/task_corpora.py docstrings --out data/tasks/pydoc

Each writes `pairs.jsonl` ({"source", "target", "group", "origin"} per line, deterministic order)
and `sources.json` (where every pair came from, with the licence of each source).

* `po`: English -> LANG from the gettext catalogs (.mo) that Debian packages install under
  /usr/share/locale/LANG/LC_MESSAGES: every single-line message with a translation (message
  contexts dropped, plural forms skipped, "_"/"&" keyboard accelerators removed, one pair per
  English string: the first catalog in name order wins; the ISO 639-3 / 3166-2 name lists left
  out, see NAME_LISTS). Licence: each catalog is part of its
  Debian package (`dpkg -S`), whose licences are read from /usr/share/doc/PKG/copyright.
* `docstrings`: code summarisation from Python's standard library (PSF licence): the source of
  every function or method with a docstring, the docstring removed, -> the docstring's first
  line. `group` is the file, so the train/val/test split (by group) never puts two functions of
  one file on both sides.
"""
from __future__ import annotations

import argparse
import ast
import gettext
import json
import re
import subprocess
import sys
import sysconfig
import textwrap
from collections import Counter
from importlib import metadata
from pathlib import Path

ACCEL = re.compile(r"(?<![_\w])_(?=\w)|&(?=\w)")  # "_File", "&Open": mnemonic markers
# Catalogs that are name lists more than text (ISO 639-3 language names, ISO 3166-2 subdivisions:
# 66% and 90% of their "translations" are the English name unchanged; both file namings): left out.
NAME_LISTS = ("iso_639-3", "iso_639_3", "iso_3166-2", "iso_3166_2")
FORMAT_JUNK = re.compile(r"[\x00-\x08\x0b-\x1f]")


def _write(out: Path, pairs: list[dict], sources: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "pairs.jsonl.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    tmp.replace(out / "pairs.jsonl")
    (out / "sources.json").write_text(json.dumps(sources, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(pairs):,} pairs -> {out / 'pairs.jsonl'}")


# ---------------------------------------------------------------------------- gettext catalogs

def _package_of(path: Path) -> str:
    try:
        out = subprocess.run(["dpkg", "-S", str(path)], capture_output=True, text=True, check=True).stdout
        return out.split(":")[0].strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _licences(package: str) -> list[str]:
    f = Path("/usr/share/doc") / package / "copyright"
    if not f.is_file():
        return []
    found = []
    for line in f.read_text(errors="replace").splitlines():
        if line.startswith("License:"):
            name = line.split(":", 1)[1].strip()
            if name and name not in found:
                found.append(name)
    return found


def _clean_msg(s: str) -> str:
    return ACCEL.sub("", s).strip()


def build_po(lang: str, out: Path, root: Path = Path("/usr/share/locale"), max_chars: int = 150,
             exclude: tuple[str, ...] = NAME_LISTS) -> None:
    catalogs = sorted(p for p in (root / lang / "LC_MESSAGES").glob("*.mo") if p.stem not in exclude)
    if not catalogs:
        sys.exit(f"no .mo catalogs under {root / lang / 'LC_MESSAGES'}")
    seen: set[str] = set()
    pairs, per_catalog, skipped = [], Counter(), {}
    for mo in catalogs:
        try:
            with open(mo, "rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except Exception as e:  # a catalog whose declared charset is wrong
            skipped[mo.name] = f"{type(e).__name__}: {e}"
            continue
        for key in sorted(k for k in catalog if isinstance(k, str)):
            value = catalog[key]
            if not key or not isinstance(value, str) or not value:
                continue
            src = _clean_msg(key.split("\x04")[-1])
            tgt = _clean_msg(value)
            if (not src or not tgt or "\n" in src or "\n" in tgt or FORMAT_JUNK.search(src + tgt)
                    or len(src) > max_chars or len(tgt) > max_chars or not re.search(r"[A-Za-z]{2}", src)):
                continue
            if src in seen:
                continue
            seen.add(src)
            pairs.append({"source": src, "target": tgt, "group": src, "origin": mo.stem})
            per_catalog[mo.stem] += 1
    packages: dict[str, dict] = {}
    for mo in catalogs:
        if per_catalog.get(mo.stem):
            pkg = _package_of(mo)
            entry = packages.setdefault(pkg, {"catalogs": [], "pairs": 0, "licences": _licences(pkg)})
            entry["catalogs"].append(mo.stem)
            entry["pairs"] += per_catalog[mo.stem]
    sources = {"corpus": f"gettext catalogs, English -> {lang}", "root": str(root / lang / "LC_MESSAGES"),
               "pairs": len(pairs), "packages": dict(sorted(packages.items(), key=lambda kv: -kv[1]["pairs"])),
               "excluded_catalogs": list(exclude), "skipped_catalogs": skipped}
    _write(out, pairs, sources)


# ---------------------------------------------------------------------------- Python docstrings

def _functions(path: Path, text: str) -> list[tuple[str, str]]:
    """(source without its docstring, docstring's first line) for each documented function."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    lines = text.splitlines()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.body:
            continue
        first = node.body[0]
        if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)):
            continue
        doc = (first.value.value.strip().splitlines() or [""])[0].strip()
        start = min([d.lineno for d in node.decorator_list] + [node.lineno]) - 1
        body = lines[start:first.lineno - 1] + lines[first.end_lineno:node.end_lineno]
        code = textwrap.dedent("\n".join(body)).strip("\n")
        if len(node.body) == 1:  # only a docstring: nothing to summarise
            continue
        found.append((code, doc))
    return found


def _package_licence(dist: str) -> str:
    """A distribution's licence as its metadata states it: the SPDX expression, else the
    licence classifiers, else the first line of its License field."""
    md = metadata.distribution(dist).metadata
    classifiers = ", ".join(c.split(" :: ")[-1] for c in md.get_all("Classifier") or [] if c.startswith("License ::"))
    free_text = (md.get("License") or "").strip().splitlines()
    return md.get("License-Expression") or classifiers or (free_text[0] if free_text else "unknown")


def _docstring_pairs(files: list[Path], root: Path, prefix: str, seen: set[str], max_source_chars: int,
                     min_words: int, max_words: int) -> list[dict]:
    pairs = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        rel = prefix + str(path.relative_to(root))
        for code, doc in _functions(path, text):
            words = doc.split()
            if not (min_words <= len(words) <= max_words) or len(code) > max_source_chars or code in seen:
                continue
            if "\t" in code or not code.startswith(("def ", "async def ", "@")):
                continue
            seen.add(code)
            pairs.append({"source": code, "target": doc, "group": rel, "origin": rel})
    return pairs


def build_docstrings(out: Path, max_source_chars: int = 700, min_words: int = 3, max_words: int = 20,
                     packages: tuple[str, ...] = (), exclude: Path | None = None) -> None:
    """The standard library's functions; or, with `packages` (installed distributions' import
    names), those packages' functions instead, leaving out any function whose code is also in
    the `exclude` corpus's pairs.jsonl (a held-out set for a model trained on that corpus)."""
    purelib, dists = Path(sysconfig.get_paths()["purelib"]), metadata.packages_distributions()
    for name in packages:  # every argument checked before any file is read
        if not (purelib / name).is_dir() or name not in dists:
            raise SystemExit(f"--packages: {name!r} is not an installed package directory in {purelib}")
    if exclude is not None and not (exclude / "pairs.jsonl").is_file():
        raise SystemExit(f"--exclude: {exclude} has no pairs.jsonl")
    seen: set[str] = set()
    if exclude is not None:
        with open(exclude / "pairs.jsonl", encoding="utf-8") as f:
            seen = {json.loads(line)["source"] for line in f}
    if not packages:
        root = Path(sysconfig.get_paths()["stdlib"])
        files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and "dist-packages" not in p.parts)
        pairs = _docstring_pairs(files, root, "", seen, max_source_chars, min_words, max_words)
        sources = {"corpus": "Python standard library: function source (docstring removed) -> first docstring line",
                   "root": str(root), "python": sys.version.split()[0],
                   "licence": "PSF-2.0 (Python Software Foundation License), the standard library's"}
    else:
        root = purelib
        pairs, listed = [], {}
        for name in packages:
            files = sorted(p for p in (root / name).rglob("*.py") if not {"_vendor", "vendor", "tests"} & set(p.parts))
            got = _docstring_pairs(files, root, "site-packages/", seen, max_source_chars, min_words, max_words)
            dist = dists[name][0]
            listed[name] = {"distribution": dist, "version": metadata.version(dist), "licence": _package_licence(dist),
                            "pairs": len(got)}
            pairs += got
        sources = {"corpus": "installed packages: function source (docstring removed) -> first docstring line",
                   "root": str(root), "python": sys.version.split()[0], "packages": listed,
                   "excluded": f"functions whose code is in {exclude}/pairs.jsonl" if exclude else None}
    per_top = Counter(p["group"].removeprefix("site-packages/").split("/")[0] for p in pairs)
    sources.update(pairs=len(pairs), files=len({p["group"] for p in pairs}), top_level=dict(per_top.most_common()))
    _write(out, pairs, sources)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    po = sub.add_parser("po", help="English -> LANG pairs from installed gettext catalogs")
    po.add_argument("--lang", default="de")
    po.add_argument("--out", type=Path, required=True)
    po.add_argument("--max-chars", type=int, default=150)
    po.add_argument("--exclude", default=",".join(NAME_LISTS), help="catalogs left out (comma-separated)")
    ds = sub.add_parser("docstrings", help="Python function -> first docstring line, standard library")
    ds.add_argument("--out", type=Path, required=True)
    ds.add_argument("--max-source-chars", type=int, default=700)
    ds.add_argument("--packages", default="", help="comma-separated import names of installed packages to read "
                                                   "instead of the standard library")
    ds.add_argument("--exclude", type=Path, help="a corpus directory whose functions are left out")
    args = ap.parse_args(argv)
    if args.what == "po":
        build_po(args.lang, args.out, max_chars=args.max_chars, exclude=tuple(filter(None, args.exclude.split(","))))
    else:
        build_docstrings(args.out, args.max_source_chars, packages=tuple(filter(None, args.packages.split(","))),
                         exclude=args.exclude)


if __name__ == "__main__":
    main()
