"""`gptkit chat --model M`: a conversation in the terminal.

Replies stream token by token and end at the template's end of turn. The history is kept within
the model's context: when the next prompt plus --max-new-tokens would not fit, the oldest turns
are dropped (a note says how many). Ctrl-C stops a reply (what came so far stays in the history)
and returns to the prompt; Ctrl-D or /quit ends the conversation. Commands:

    /reset          forget the conversation (the system prompt stays)
    /system TEXT    set the system prompt (empty TEXT: none)
    /save FILE      write the conversation as JSON ({"messages": [...]}, the OpenAI form)
    /help, /quit
"""
from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from gptkit.errors import GptkitError

HELP = "commands: /reset, /system TEXT, /save FILE, /help, /quit (Ctrl-C stops a reply, Ctrl-D quits)"


class Chat:
    """A conversation with a model: history, context budget, and one streamed reply at a time."""

    def __init__(self, model: Any, tokenizer: Any, template: Any, gen: dict[str, Any], system: str | None = None):
        self.model, self.tokenizer, self.template, self.gen = model, tokenizer, template, gen
        self.system = system or None
        self.turns: list[dict[str, str]] = []  # user and assistant messages, alternating

    @property
    def messages(self) -> list[dict[str, str]]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.turns

    def prompt_ids(self) -> tuple[list[int], int]:
        """The ids of the conversation with a generation prompt, and how many old turns were dropped
        to leave --max-new-tokens of room in the context."""
        from .template import render
        room = self.model.config.n_positions - self.gen.get("max_new_tokens", 20)
        dropped = 0
        while True:
            ids = self.tokenizer.encode_special(render(self.template, self.messages, True))
            if len(ids) <= room:
                return ids, dropped
            if len(self.turns) <= 1:
                self.turns.clear()
                raise GptkitError(f"this message does not fit the model's context ({len(ids)} tokens, with room for "
                                  f"{room} before the reply's --max-new-tokens): write a shorter one")
            del self.turns[:2]  # the oldest user turn and its reply
            dropped += 2

    def reply(self, text: str, write: Callable[[str], Any]) -> str:
        """Add the user's turn, stream the reply through write, keep it; Ctrl-C keeps what came."""
        from gptkit.generate import stream

        from .template import end_of_turn
        self.turns.append({"role": "user", "content": text})
        ids, dropped = self.prompt_ids()
        if dropped:
            write(f"(dropped the oldest {dropped} turn(s) to fit the context of {self.model.config.n_positions} "
                  "tokens)\n")
        pieces: list[str] = []
        try:
            for piece in stream(self.model, ids, tokenizer=self.tokenizer, eos_token_id=end_of_turn(self.tokenizer),
                                **self.gen):
                pieces.append(piece)
                write(piece)
        except KeyboardInterrupt:
            write(" [stopped]")
        self.turns.append({"role": "assistant", "content": "".join(pieces)})
        write("\n")
        return "".join(pieces)

    def command(self, line: str, write: Callable[[str], Any]) -> bool:
        """Run a /command; False for /quit."""
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/reset":
            self.turns.clear()
            write("(conversation cleared)\n")
        elif name == "/system":
            self.system = arg or None
            write(f"(system prompt {'set' if arg else 'removed'})\n")
        elif name == "/save":
            if not arg:
                write("(/save needs a file name)\n")
            else:
                self.save(Path(arg))
                write(f"(saved {len(self.messages)} message(s) to {arg})\n")
        elif name == "/help":
            write(HELP + "\n")
        else:
            write(f"(unknown command {name}; {HELP})\n")
        return True

    def save(self, path: Path) -> None:
        from gptkit.files import write_text
        try:
            write_text(path, json.dumps({"messages": self.messages}, ensure_ascii=False, indent=1) + "\n")
        except OSError as e:
            raise GptkitError(f"/save {path}: {e.strerror or e}") from None


def run(chat: Chat, read: Callable[[str], str] = input, out: TextIO = sys.stdout, prompt: str = ">>> ") -> int:
    """The read-reply loop (see the module doc)."""
    def write(s: str) -> None:
        out.write(s)
        out.flush()
    write(f"chatting with {getattr(chat.model, 'source', None) or 'the model'}; {HELP}\n")
    if read is input and threading.current_thread() is threading.main_thread():
        # Ctrl-C stops a reply even when this process was started with SIGINT ignored (Python keeps
        # an inherited SIG_IGN, e.g. under nohup, some launchers and test runners)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    while True:
        try:
            line = read(prompt)
        except EOFError:
            write("\n")
            return 0
        except KeyboardInterrupt:
            write("\n(Ctrl-D or /quit to leave)\n")
            continue
        line = line.strip()
        if not line:
            continue
        try:
            if line.startswith("/"):
                if not chat.command(line, write):
                    return 0
                continue
            chat.reply(line, write)
        except GptkitError as e:
            write(f"gptkit: error: {e}\n")
