"""Hostile input for chat (issue 20): `gptkit chat`, `finetune --task chat` and a served chat
template, table-driven like tests/test_hostile.py and with its helpers: every case is one line
`gptkit: error: ...` naming the problem, a non-zero exit, no traceback, and the workspace
afterwards byte for byte as before (nothing written, overwritten or left behind).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_hostile import assert_refused, run_cli, snapshot
from test_hostile_newer import _jsonl
from test_hostile_newer import template as newer_template  # noqa: F401 (the workspace it builds)

from conftest import build_random_gpt2

pytest.importorskip("transformers")

NO_PROMPT = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
TEMPLATES = {
    "nogen.jinja": NO_PROMPT,
    "raises.jinja": "{{ raise_exception('this template takes no conversation') }}",
    "broken.jinja": "{% for m in messages %}{{ m['content'] }",
}


def _turns(*pairs: tuple[str, str]) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in pairs]}


GOOD = [_turns(("user", f"question {i}"), ("assistant", f"answer {i}")) for i in range(20)]
CONVERSATIONS = {
    "convs.jsonl": GOOD,
    "long.jsonl": [_turns(("user", "q" * 60 + str(i)), ("assistant", "a" * 60)) for i in range(20)],
    "badrole.jsonl": [GOOD[0], {"messages": [{"role": "wizard", "content": "x"}]}],
    "order.jsonl": [GOOD[0], _turns(("user", "a"), ("user", "b"))],
    "notlist.jsonl": [GOOD[0], {"messages": "hi"}],
    "emptyturn.jsonl": [GOOD[0], _turns(("user", "  "), ("assistant", "b"))],
    "noreply.jsonl": [GOOD[0], _turns(("user", "a"))],
    "allbad.jsonl": [{"messages": "hi"}, {"conversations": 3}],
}


def _vocab_with_im_start(directory: Path) -> None:
    """A GPT-2 whose BPE vocabulary has <|im_start|> as an ordinary (plain-text) token."""
    from gptkit.chat.template import IM_START
    from gptkit.tokenizer import Tokenizer, bytes_tokenizer
    ranks = dict(bytes_tokenizer().ranks)
    ranks[IM_START.encode()] = len(ranks)
    build_random_gpt2(directory, vocab=len(ranks) + 1, n_positions=64, n_embd=32, tokenizer=False)
    Tokenizer("bpe", ranks, []).save(directory)


def _with_config(src: Path, dst: Path, **keys) -> None:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "tokenizer_config.json").read_text())
    (dst / "tokenizer_config.json").write_text(json.dumps({**cfg, **keys}))


@pytest.fixture(scope="module")
def chat_template(newer_template, tmp_path_factory) -> Path:  # noqa: F811
    root = tmp_path_factory.mktemp("hostile-chat") / "ws"
    shutil.copytree(newer_template, root, symlinks=True)
    for name, text in TEMPLATES.items():
        (root / name).write_text(text)
    (root / "latin1.jinja").write_bytes(b"\xff\xfe{{ messages }}")
    for name, rows in CONVERSATIONS.items():
        _jsonl(root / name, rows)
    (root / "convs.txt").write_text("question 1\nanswer 1\n")
    _with_config(root / "tiny", root / "tinynogen", chat_template=NO_PROMPT)
    # a control token above <|endoftext|> that spells an ordinary token ("a", a byte of the vocabulary)
    _with_config(root / "tiny", root / "tinyclash", added_tokens_decoder={
        "256": {"content": "<|endoftext|>", "special": True}, "257": {"content": "a", "special": True}})
    _vocab_with_im_start(root / "imvocab")
    return root


@pytest.fixture
def ws(chat_template, tmp_path, monkeypatch) -> Path:
    w = tmp_path / "ws"
    shutil.copytree(chat_template, w, symlinks=True)
    monkeypatch.chdir(w)
    monkeypatch.setenv("GPTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return w


CHAT = ["chat", "--model", "tiny"]
FTC = ["finetune", "--task", "chat", "--data", "convs.jsonl", "--init-from", "tiny", "--out", "ftc",
       "--val-fraction", "0.3", "--block-size", "32", "--max-iters", "2", "--no-progress"]


def _data(name: str, *extra: str) -> list[str]:
    i = FTC.index("--data")
    return [*FTC[:i + 1], name, *FTC[i + 2:], *extra]


def _init(name: str) -> list[str]:
    i = FTC.index("--init-from")
    return [*FTC[:i + 1], name, *FTC[i + 2:]]


# (id, argv, pattern the error line must match (case-insensitive))
CASES = [
    # -- gptkit chat: the model and its template
    ("chat-no-template", CHAT, r"no chat template.*gptkit finetune --task chat.*--chat-template FILE"),
    ("chat-template-no-prompt", [*CHAT, "--chat-template", "nogen.jinja"], r"no generation prompt"),
    ("chat-model-template-no-prompt", ["chat", "--model", "tinynogen"], r"no generation prompt"),
    ("chat-template-raises", [*CHAT, "--chat-template", "raises.jinja"],
     r"fails on a conversation of one user turn: this template takes no conversation"),
    ("chat-template-syntax", [*CHAT, "--chat-template", "broken.jinja"], r"does not compile"),
    ("chat-template-dir", [*CHAT, "--chat-template", "emptydir"], r"--chat-template emptydir: a directory"),
    ("chat-template-missing", [*CHAT, "--chat-template", "nope.jinja"], r"nope\.jinja: no such file"),
    ("chat-template-not-utf8", [*CHAT, "--chat-template", "latin1.jinja"], r"latin1\.jinja: cannot read"),
    ("chat-model-missing", ["chat", "--model", "nope/x"], r"nope/x"),
    ("chat-control-token-clash", ["chat", "--model", "tinyclash"], r"'a' is already an ordinary token.*two meanings"),
    ("chat-temperature-0", [*CHAT, "--temperature", "0"], r"temperature"),
    # -- finetune --task chat: conversations, the context, the model's tokens and template
    ("ftc-no-turn-fits-strict", _data("long.jsonl", "--strict"),
     r"long\.jsonl:\d+: the conversation's first reply ends at token \d+, past --block-size 32: no turn fits"),
    ("ftc-nothing-fits", _data("long.jsonl"), r"no training conversation fits --block-size 32"),
    ("ftc-unknown-role", _data("badrole.jsonl", "--strict"), r"badrole\.jsonl:2: turn 1 has unknown role 'wizard'"),
    ("ftc-order", _data("order.jsonl", "--strict"), r"order\.jsonl:2: turn 2 is user, expected assistant"),
    ("ftc-not-a-list", _data("notlist.jsonl", "--strict"), r"notlist\.jsonl:2: 'messages' is str, not a list"),
    ("ftc-empty-turn", _data("emptyturn.jsonl", "--strict"), r"emptyturn\.jsonl:2: turn 1 \(user\) is empty"),
    ("ftc-no-reply", _data("noreply.jsonl", "--strict"), r"noreply\.jsonl:2: no assistant turn"),
    ("ftc-all-bad", _data("allbad.jsonl"), r"allbad\.jsonl: no usable conversation \(2 bad record"),
    ("ftc-text-file", _data("convs.txt"), r"convs\.txt: conversations are read from \.jsonl or \.parquet, not '\.txt'"),
    ("ftc-data-dir", _data("emptydir"), r"emptydir: a directory, not a file of conversations"),
    ("ftc-data-missing", _data("nope.jsonl"), r"nope\.jsonl: no such file"),
    ("ftc-mix-ratio", [*FTC, "--mix", "data:1.5"], r"--mix 'data:1\.5': expected DIR:RATIO"),
    ("ftc-mix-not-prepared", [*FTC, "--mix", "emptydir:0.2"], r"--mix emptydir: not a prepared data directory"),
    ("ftc-template-no-prompt", _init("tinynogen"), r"no generation prompt"),
    ("ftc-im-start-ordinary", _init("imvocab"), r"'<\|im_start\|>' is already an ordinary token.*two meanings"),
    ("ftc-control-token-clash", _init("tinyclash"), r"'a' is already an ordinary token.*two meanings"),
    ("ft-strict-not-chat", ["finetune", "--task", "translate", "--target-lang", "German", "--data", "pairs.jsonl",
                            "--init-from", "tiny", "--out", "ft", "--strict"], r"--strict is for --task chat"),
    # -- serve: a template that cannot show where a reply begins, refused before serving
    ("serve-template-no-prompt", ["serve", "--model", "tiny", "--port", "0", "--chat-template", "nogen.jinja"],
     r"nogen\.jinja: the chat template has no generation prompt"),
    ("serve-model-template-no-prompt", ["serve", "--model", "tinynogen", "--port", "0"],
     r"tinynogen.*tokenizer_config\.json: the chat template has no generation prompt"),
    ("serve-template-raises", ["serve", "--model", "tiny", "--port", "0", "--chat-template", "raises.jinja"],
     r"raises\.jinja: the chat template fails on a conversation of one user turn"),
]


@pytest.mark.parametrize("argv,pattern", [pytest.param(a, p, id=i) for i, a, p in CASES])
def test_sweep(ws, capsys, argv, pattern):
    before = snapshot(ws)
    code, out, err = run_cli(argv, capsys, cwd=ws)
    assert_refused(ws, before, code, err, pattern)


def test_sweep_covers_chat():
    covered = {a[0] for _, a, _ in CASES} | {"finetune --task chat" for _, a, _ in CASES if a[:3] == FTC[:3]}
    assert {"chat", "finetune --task chat", "serve"} <= covered
