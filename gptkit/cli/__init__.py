"""`gptkit prepare | train | eval | generate | chat | lr-find | sweep | summarize | translate | finetune | score | serve | export | audit`: a thin layer over the Python API.

Each command is a module here with `register(subparsers)`; COMMANDS lists them in --help order.
Bad input is one line on stderr ("gptkit: error: ...") and exit status 2; --debug shows the
traceback instead.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from ..errors import GptkitError, OptionError
from . import audit, chat, export, generate, prepare, recipe, serve, tasks, train
from . import eval as eval_cmd

COMMANDS = [prepare, train, eval_cmd, generate, chat, recipe, tasks, serve, export, audit]


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (not the whole usage) like every other gptkit error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"gptkit: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="gptkit", description="Build, train and use GPT-style language models.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except GptkitError as e:
        if args.debug:
            raise
        msg = e.for_flags() if isinstance(e, OptionError) and e.flag in _flags(parser) else str(e)
        print(f"gptkit: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"gptkit: {e}" if str(e) else "gptkit: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        if args.debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"gptkit: error: {where}{e.strerror or e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    except MemoryError:
        if args.debug:
            raise
        print("gptkit: error: out of memory (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A Python warning on the command line: one `gptkit: warning: ...` line (no file and line)."""
    print(f"gptkit: warning: {message}", file=sys.stderr)


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of every command."""
    flags = {s for a in parser._actions for s in a.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= {s for a in sub._actions for s in a.option_strings}
    return flags


if __name__ == "__main__":
    sys.exit(main())
