"""The data card `prepare` writes beside the shards: datacard.json (for machines) and
DATACARD.md (for people), both made from the same dict. `gptkit train` copies them into the
run directory, so a model says what it was trained on."""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import shutil
import sys
from pathlib import Path

from ..files import atomic_path, write_json, write_text

FORMAT = "gptkit-datacard-v1"
FILES = ("DATACARD.md", "datacard.json")


def command_line(argv: list[str] | None = None) -> str:
    """The command that is running, as a shell line (`gptkit ...` when run through the CLI)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and (argv[0].endswith(("gptkit", "__main__.py")) or argv[0] == "-m"):
        argv[0] = "gptkit"
    return shlex.join(argv)


def build(meta: dict, sources: list[dict], command: str, parts: int | None = None) -> dict:
    """The card from the meta that prepare (or merge) wrote, its sources and the command."""
    c = meta.get("cleaning") or {}
    stats = c.get("stats") or {}
    config = c.get("config") or {}
    removed = stats.get("removed", {})
    splits = {s: {k: v[k] for k in ("documents", "tokens", "bytes")} for s, v in meta["splits"].items()}
    card = {
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "sources": sources,
        "tokenizer": {"kind": meta["tokenizer"], "vocab_size": meta["vocab_size"], "eot_id": meta["eot_id"]},
        "documents": {"read": stats.get("documents_in", meta["documents"]), "kept": meta["documents"]},
        "splits": splits,
        "val_fraction": meta["val_fraction"],
        "seed": meta["seed"],
        "dedup": {
            "enabled": config.get("dedup", False),
            **(c.get("dedup_params") or {}),
            "removed": {k: removed.get(f"{k}_duplicate", {"documents": 0, "bytes": 0}) for k in ("exact", "near")},
            "removed_across_splits": stats.get("cross_split_duplicates", {}),
        },
        "pii": {
            "mode": config.get("pii", "keep"),
            "found": stats.get("pii_found", {}),
            "documents_with_pii": stats.get("pii_documents", 0),
            "documents_removed": removed.get("pii", {"documents": 0})["documents"],
        },
        "filters": {
            **(config.get("filters") or {}),
            "removed": {k: removed.get(k, {"documents": 0, "bytes": 0}) for k in ("min_chars", "max_non_text", "language")},
        },
        "decontamination": _decontamination(config, stats, removed),
        "read": {
            "files": meta.get("files"),
            "skipped_binary_files": meta.get("skipped_binary_files", 0),
            "empty_documents": meta.get("empty_documents", 0),
            "decode_errors": meta.get("decode_errors", {}),
        },
    }
    if meta.get("canaries"):  # how many, never the secrets: the card travels with the model
        items = meta["canaries"]["items"]
        card["canaries"] = {"planted": len(items), "copies": sum(c["repeats"] for c in items),
                            "space": meta["canaries"]["space"]}
    if parts:
        card["parts"] = parts
    if meta.get("val_note"):
        card["val_note"] = meta["val_note"]
    return card


def _n(x) -> str:
    return f"{x:,}" if isinstance(x, int) else str(x)


def render(card: dict) -> str:
    """DATACARD.md."""
    t = card["tokenizer"]
    lines = [
        "# Data card",
        "",
        f"Prepared by gptkit on {card['created']}" + (f" in {card['parts']} parts, then merged" if card.get("parts") else "") + ", with:",
        "",
        "```",
        card["command"],
        "```",
        "",
        "## Sources",
        "",
        "| input | files | bytes |",
        "|---|---:|---:|",
    ]
    lines += [f"| `{s['input']}` | {_n(s['files'])} | {_n(s['bytes'])} |" for s in card["sources"]]
    lines += [
        "",
        f"Tokenizer: `{t['kind']}`, {_n(t['vocab_size'])} ids, end of text = {t['eot_id']}.",
        "",
        "## Result",
        "",
        (f"{_n(card['documents']['read'])} documents read, {_n(card['documents']['kept'])} kept "
        f"(val fraction {card['val_fraction']}, seed {card['seed']})."),
        "",
        "| split | documents | tokens | bytes of text |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {s} | {_n(v['documents'])} | {_n(v['tokens'])} | {_n(v['bytes'])} |" for s, v in card["splits"].items()]
    if card.get("val_note"):
        lines += ["", f"Note: {card['val_note']}."]
    if card.get("canaries"):
        c = card["canaries"]
        lines += ["", (f"Canaries: {_n(c['planted'])} random secrets ({_n(c['copies'])} copies, before cleaning) were "
                       "planted in the training split for `gptkit audit`; what they are is recorded in meta.json only. "
                       "A model trained on this data is for auditing, not for release.")]
    d, p, f = card["dedup"], card["pii"], card["filters"]
    lines += ["", "## Deduplication", ""]
    if d["enabled"]:
        lines += [
            (f"Exact duplicates ({d.get('exact')}) and near duplicates ({d.get('method')}, Jaccard >= "
            f"{d.get('jaccard_threshold')}, {d.get('num_perm')} permutations in {d.get('bands')} bands of {d.get('rows')}), "
            "first occurrence kept, across the whole corpus and both splits."),
            "",
            "| removed | documents | bytes | of them across splits |",
            "|---|---:|---:|---:|",
            (f"| exact duplicates | {_n(d['removed']['exact']['documents'])} | {_n(d['removed']['exact']['bytes'])} | "
            f"{_n(d['removed_across_splits'].get('exact_duplicate', 0))} |"),
            (f"| near duplicates | {_n(d['removed']['near']['documents'])} | {_n(d['removed']['near']['bytes'])} | "
            f"{_n(d['removed_across_splits'].get('near_duplicate', 0))} |"),
        ]
    else:
        lines.append("Off (`--keep-duplicates`): duplicates were kept.")
    lines += ["", "## Personal data and secrets", ""]
    if p["mode"] == "keep":
        lines.append("Not looked for (`--pii keep`).")
    else:
        action = "replaced by typed placeholders such as `<EMAIL>`" if p["mode"] == "redact" else "documents holding any were removed"
        lines += [
            f"Mode `{p['mode']}`: {action}. {_n(p['documents_with_pii'])} documents had findings"
            + (f", {_n(p['documents_removed'])} removed." if p["mode"] == "drop" else "."),
            "",
            "| kind | found |",
            "|---|---:|",
        ]
        lines += [f"| {k} | {_n(v)} |" for k, v in p["found"].items()]
    lines += ["", "## Quality filters", ""]
    settings = [f"min_chars {f.get('min_chars')}", f"max_non_text {f.get('max_non_text')}",
                f"languages {', '.join(f.get('languages') or []) or 'any'}"]
    lines += [f"Settings: {'; '.join(settings)}.", "", "| filter | documents removed | bytes |", "|---|---:|---:|"]
    lines += [f"| {k} | {_n(v['documents'])} | {_n(v['bytes'])} |" for k, v in f["removed"].items()]
    lines += _render_decontamination(card.get("decontamination"))
    r = card["read"]
    de = r.get("decode_errors") or {}
    lines += [
        "",
        "## Reading",
        "",
        (f"{_n(r['files'])} files read; {_n(r['skipped_binary_files'])} binary files skipped; "
        f"{_n(r['empty_documents'])} empty documents left out; undecodable bytes: policy `{de.get('policy')}`, "
        f"{_n(de.get('replaced_documents', 0))} documents repaired, {_n(de.get('skipped_documents', 0))} skipped."),
        "",
    ]
    return "\n".join(lines)


def _decontamination(config: dict, stats: dict, removed: dict) -> dict | None:
    d = config.get("decontaminate")
    if not d:
        return None
    dc = stats.get("decontamination") or {}
    return {**d, "removed": removed.get("contaminated", {"documents": 0, "bytes": 0}),
            "cut_ngrams": dc.get("cut_ngrams", 0), "cut_documents": dc.get("cut_documents", 0),
            "examples": dc.get("examples", [])}


def _render_decontamination(d: dict | None) -> list[str]:
    lines = ["", "## Decontamination", ""]
    if not d:
        return lines + ["Off: training documents were not checked against evaluation sets (`--decontaminate`)."]
    what = (f"{_n(d['removed']['documents'])} documents ({_n(d['removed']['bytes'])} bytes) removed"
            if d["mode"] == "drop" else f"{_n(d['cut_ngrams'])} shared n-grams cut out of {_n(d['cut_documents'])} documents")
    lines += [(f"Against {', '.join(d['files'])}: {_n(d['items'])} items, {_n(d['ngrams'])} distinct {d['n']}-grams of "
              f"normalised words ({_n(d['short_items'])} items shorter than {d['n']} words could not be matched). "
              f"Mode `{d['mode']}`: {what}.")]
    if d["examples"]:
        lines += ["", "Shared n-grams found (first few):", ""] + [f"- `{e}`" for e in d["examples"]]
    return lines


def write(directory: str | os.PathLike, card: dict) -> None:
    directory = Path(directory)
    write_json(directory / "datacard.json", card)
    write_text(directory / "DATACARD.md", render(card))


def copy(data_dir: str | os.PathLike, run_dir: str | os.PathLike) -> bool:
    """Copy the data card of a data directory into a run directory (if it has one)."""
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    if not (data_dir / "datacard.json").is_file():
        return False
    for name in FILES:
        if (data_dir / name).is_file():
            with atomic_path(run_dir / name) as tmp:
                shutil.copyfile(data_dir / name, tmp)
    return True
