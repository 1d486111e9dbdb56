"""Conversation data: the OpenAI and ShareGPT forms, JSONL, Parquet and datasets; bad records counted
with their line, or refused with strict."""
from __future__ import annotations

import json
import re

import pytest

from gptkit.chat.data import read_conversations, split_conversations
from gptkit.errors import GptkitError

OPENAI = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                       {"role": "assistant", "content": "Hello."}]}
SHAREGPT = {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"},
                              {"from": "human", "value": "3+3?"}, {"from": "gpt", "value": "6"}]}
BAD = [
    ({"messages": "hi"}, "not a list of turns"),
    ({"messages": [{"role": "bot2", "content": "x"}]}, "unknown role 'bot2'"),
    ({"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]}, "turn 1 (user) is empty"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, "turn 1 is assistant, expected user"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "y"}]}, "turn 2 is system"),
    ({"messages": [{"role": "user", "content": "x"}]}, "no assistant turn"),
    ({"text": "x"}, "no 'messages'"),
]


def _write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_both_forms_are_read_as_messages(tmp_path):
    data = read_conversations(_write(tmp_path / "c.jsonl", [OPENAI, SHAREGPT]))
    assert data.bad == [] and data.summary() is None
    a, b = data.conversations
    assert a.messages == OPENAI["messages"] and a.origin.endswith("c.jsonl:1")
    assert [m["role"] for m in b.messages] == ["user", "assistant", "user", "assistant"]
    assert b.messages[3]["content"] == "6" and b.key == "2+2?"


@pytest.mark.parametrize("record,why", BAD)
def test_each_bad_record_is_counted_with_its_line_or_refused(tmp_path, record, why):
    path = _write(tmp_path / "c.jsonl", [OPENAI, record, SHAREGPT])
    data = read_conversations(path)
    assert len(data.conversations) == 2
    assert data.bad[0][0] == f"{path}:2" and why in data.bad[0][1]
    assert f"1 bad conversation(s) skipped ({path}:2: " in data.summary()
    with pytest.raises(GptkitError, match=re.escape(f"{path}:2: ") + ".*" + re.escape(why)):
        read_conversations(path, strict=True)


def test_a_line_that_is_not_json_is_a_bad_record(tmp_path):
    data = read_conversations(_write(tmp_path / "c.jsonl", [OPENAI, "{oops"]))
    assert data.bad[0][0].endswith(":2") and "not JSON" in data.bad[0][1]


def test_nothing_usable_is_an_error(tmp_path):
    with pytest.raises(GptkitError, match=r"no usable conversation \(1 bad record"):
        read_conversations(_write(tmp_path / "c.jsonl", [{"messages": []}]))
    with pytest.raises(GptkitError, match="no such file"):
        read_conversations(tmp_path / "missing.jsonl")
    with pytest.raises(GptkitError, match=r"\.jsonl or \.parquet, not csv"):
        read_conversations(_write(tmp_path / "c.csv", ["a,b"]))


def test_parquet_and_a_datasets_directory(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist([OPENAI, {"messages": OPENAI["messages"][1:]}]), tmp_path / "c.parquet")
    data = read_conversations(tmp_path / "c.parquet")
    assert [len(c.messages) for c in data.conversations] == [3, 2]
    assert data.conversations[1].origin.endswith("c.parquet: row 2")
    pytest.importorskip("datasets")
    (tmp_path / "ds").mkdir()
    _write(tmp_path / "ds" / "train.jsonl", [SHAREGPT, SHAREGPT])
    data = read_conversations(f"hf:{tmp_path / 'ds'}")
    assert len(data.conversations) == 2 and data.conversations[0].messages[1]["content"] == "4"


def test_the_split_is_by_conversation_key():
    from gptkit.chat.data import Conversation
    convs = [Conversation([{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}])
             for i in range(200)]
    a = split_conversations(convs, 0.2, 0.1, 0)
    b = split_conversations(list(reversed(convs)), 0.2, 0.1, 0)
    assert {c.key for c in a["val"]} == {c.key for c in b["val"]} and 20 < len(a["val"]) < 60
