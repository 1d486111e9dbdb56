"""`gptkit prepare | train | eval | generate | summarize | translate | finetune | score`: a thin layer over the Python API.

Each command is a module here with `register(subparsers)`; COMMANDS lists them in --help order.
Bad input is one line on stderr ("gptkit: error: ...") and exit status 2; --debug shows the
traceback instead.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import GptkitError
from . import eval as eval_cmd
from . import generate, prepare, tasks, train

COMMANDS = [prepare, train, eval_cmd, generate, tasks]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gptkit", description="Build, train and use GPT-style language models.")
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
        return args.func(args)
    except GptkitError as e:
        if args.debug:
            raise
        print(f"gptkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gptkit: interrupted", file=sys.stderr)
        return 130
    except (OSError, MemoryError) as e:
        if args.debug:
            raise
        print(f"gptkit: error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
