"""Conversation data: one conversation per record, in the OpenAI or the ShareGPT form.

    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello."}]}                         # OpenAI
    {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]}   # ShareGPT

from .jsonl, .parquet, or a Hugging Face dataset ("hf:owner/name", "hf:owner/name:config", or
"hf:DIR" for a local dataset directory; its --split, train by default). A conversation is an
optional system turn, then user and assistant turns alternating from a user turn, with at least
one assistant turn. A record that is not one (not a list, an unknown role, an empty turn, turns
out of order) is counted and reported with its line, or refused with strict=True.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptkit.errors import GptkitError

ROLE_NAMES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
              "chatgpt": "assistant", "bot": "assistant", "model": "assistant"}
HUB_PREFIX = "hf:"


@dataclass
class Conversation:
    messages: list[dict[str, str]]
    origin: str = ""  # "file:line" (1-based) or "name: row N"
    group: str | None = None

    @property
    def key(self) -> str:
        """What the train/val/test split hashes: the group field, else the first user turn."""
        return self.group if self.group is not None else next(m["content"] for m in self.messages
                                                               if m["role"] == "user")


@dataclass
class ChatData:
    conversations: list[Conversation]
    bad: list[tuple[str, str]] = field(default_factory=list)  # (where, why) of each refused record

    def summary(self) -> str | None:
        """One line about the bad records (None when there are none)."""
        if not self.bad:
            return None
        shown = "; ".join(f"{where}: {why}" for where, why in self.bad[:3])
        more = f"; and {len(self.bad) - 3} more" if len(self.bad) > 3 else ""
        return (f"{len(self.bad)} bad conversation(s) skipped ({shown}{more}); --strict refuses them")


class BadRecord(ValueError):
    pass


def parse_conversation(rec: Any) -> list[dict[str, str]]:
    """The messages of one record ({role, content} dicts), or BadRecord saying what is wrong."""
    if not isinstance(rec, dict):
        raise BadRecord(f"expected a JSON object, got {type(rec).__name__}")
    key = "messages" if "messages" in rec else "conversations" if "conversations" in rec else None
    if key is None:
        raise BadRecord(f"no 'messages' (OpenAI form) or 'conversations' (ShareGPT form) field (fields: "
                        f"{', '.join(map(repr, list(rec)[:5])) or 'none'})")
    turns = rec[key]
    if not isinstance(turns, (list, tuple)):
        raise BadRecord(f"{key!r} is {type(turns).__name__}, not a list of turns")
    out = [_turn(t, i, key) for i, t in enumerate(turns, 1)]
    _check_order(out)
    return out


def _turn(t: Any, i: int, key: str) -> dict[str, str]:
    if not isinstance(t, dict):
        raise BadRecord(f"turn {i} is {type(t).__name__}, not an object")
    role_key, text_key = ("role", "content") if key == "messages" else ("from", "value")
    role, content = t.get(role_key, t.get("role")), t.get(text_key, t.get("content"))
    if not isinstance(role, str) or role.lower() not in ROLE_NAMES:
        raise BadRecord(f"turn {i} has unknown role {role!r} (known: system, user, assistant; ShareGPT's "
                        "human, gpt)")
    if isinstance(content, list):  # OpenAI content parts: the text ones
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(content, str):
        raise BadRecord(f"turn {i} ({role}) has no text {text_key!r}")
    if not content.strip():
        raise BadRecord(f"turn {i} ({role}) is empty")
    return {"role": ROLE_NAMES[role.lower()], "content": content}


def _check_order(turns: list[dict[str, str]]) -> None:
    if not turns:
        raise BadRecord("no turns")
    body = turns[1:] if turns[0]["role"] == "system" else turns
    for i, t in enumerate(body):
        want = "user" if i % 2 == 0 else "assistant"
        if t["role"] != want:
            n = i + 1 + (len(turns) - len(body))
            raise BadRecord(f"turn {n} is {t['role']}, expected {want} (an optional system turn, then user and "
                            "assistant alternating from a user turn)")
    if not any(t["role"] == "assistant" for t in body):
        raise BadRecord("no assistant turn: nothing to learn")


def _records(source: str, fmt: str | None, split: str) -> Iterator[tuple[str, Any]]:
    """(where, record) of a file or a Hub dataset, in order."""
    if source.startswith(HUB_PREFIX):
        yield from _hub_records(source, split)
        return
    from gptkit.tasks.data import detect_format, read_records
    path = Path(source)
    if path.is_dir():
        raise GptkitError(f"{path}: a directory, not a file of conversations (a dataset directory is hf:{path})")
    if not path.is_file():
        raise GptkitError(f"{path}: no such file")
    from gptkit.tasks.data import SUFFIXES
    if fmt is None and SUFFIXES.get(path.suffix.lower()) not in ("jsonl", "parquet"):
        kind = SUFFIXES.get(path.suffix.lower()) or repr(path.suffix.lower() or "a name without a suffix")
        raise GptkitError(f"{path}: conversations are read from .jsonl or .parquet, not {kind}")
    fmt = detect_format(path, fmt)
    if fmt not in ("jsonl", "parquet"):
        raise GptkitError(f"{path}: conversations are read from .jsonl or .parquet, not {fmt}")
    for line, rec in _lenient(path, fmt, read_records):
        yield (f"{path}:{line}" if fmt == "jsonl" else f"{path}: row {line}"), rec


def _lenient(path: Path, fmt: str, read_records: Any) -> Iterable[tuple[int, Any]]:
    """read_records, except that a JSONL line that is not a JSON object is a bad record, not an error."""
    if fmt != "jsonl":
        yield from read_records(path, fmt)
        return
    import json
    try:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield i, json.loads(line)
                    except (json.JSONDecodeError, RecursionError) as e:
                        yield i, BadRecord(f"not JSON ({getattr(e, 'msg', 'nested too deeply')})")
    except UnicodeDecodeError as e:
        raise GptkitError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _hub_records(source: str, split: str) -> Iterator[tuple[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise GptkitError("hf: data needs the datasets package: pip install 'gptkit[data]'") from None
    from gptkit.data.formats import hub_spec
    repo, config = hub_spec(source)
    try:
        ds = datasets.load_dataset(repo, config, split=split)
    except Exception as e:  # datasets raises many types for "not found", "offline", "no such split"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GptkitError(f"{source}: cannot load this dataset ({type(e).__name__}: {msg})") from None
    for i, rec in enumerate(ds, 1):
        yield f"{source}: row {i}", rec


def read_conversations(source: str | os.PathLike, strict: bool = False, format: str | None = None,
                       split: str = "train", group_field: str = "group") -> ChatData:
    """Every good conversation of `source`, and (where, why) of each bad record; strict=True
    refuses the first bad record instead. No good conversation at all is an error."""
    out, bad = [], []
    for where, rec in _records(os.fspath(source), format, split):
        try:
            if isinstance(rec, BadRecord):
                raise rec
            messages = parse_conversation(rec)
        except BadRecord as e:
            if strict:
                raise GptkitError(f"{where}: {e} (without --strict, bad conversations are counted and skipped)") from None
            bad.append((where, str(e)))
            continue
        group = rec.get(group_field) if group_field else None
        out.append(Conversation(messages, where, str(group) if group is not None else None))
    if not out:
        first = f": {bad[0][0]}: {bad[0][1]}" if bad else ""
        raise GptkitError(f"{os.fspath(source)}: no usable conversation ({len(bad)} bad record(s){first})")
    return ChatData(out, bad)


def split_conversations(convs: list[Conversation], val_fraction: float, test_fraction: float,
                        seed: int) -> dict[str, list[Conversation]]:
    """{"train", "val", "test"} by a hash of each conversation's key, as task examples are split."""
    from gptkit.tasks.data import split_examples
    return split_examples(convs, val_fraction, test_fraction, seed)  # type: ignore[arg-type]
