"""The ``hsiseg`` console script: Ctrl-C while the command line is still loading (torch and friends take a
few seconds to import) ends with one line, like Ctrl-C anywhere else, never a traceback; so does a flag or
value the command line cannot parse (``--steps abc``, ``--no-such-flag``), instead of a box of usage."""

from __future__ import annotations

import sys
from typing import Any

from .exit_codes import INTERRUPTED_EXIT_CODE


def main(args: list[str] | None = None) -> None:
    try:
        from .main import app, usage_error_types
    except KeyboardInterrupt:
        sys.stderr.write("hsiseg: interrupted while starting; nothing was done\n")
        raise SystemExit(INTERRUPTED_EXIT_CODE) from None
    usage_error, any_error, aborted = usage_error_types()
    try:
        code = app(args=args, prog_name="hsiseg", standalone_mode=False)
    except usage_error as error:
        if type(error).__name__ != "NoArgsIsHelpError":  # `hsiseg` alone: typer has printed the help
            sys.stderr.write(f"hsiseg: error: {usage_line(error, args)}\n")
        raise SystemExit(error.exit_code) from None
    except any_error as error:
        sys.stderr.write(f"hsiseg: error: {error.format_message()}\n")
        raise SystemExit(error.exit_code) from None
    except aborted:  # end of input at a prompt
        sys.stderr.write("hsiseg: aborted\n")
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)


def usage_line(error: Any, args: list[str] | None) -> str:
    """A click ``UsageError`` as one line: ``No such option: --nope (see hsiseg train --help)``; without the
    error's context, the command is the first of ``args`` (default: the command line's)."""
    message = " ".join(error.format_message().split())
    if error.ctx is not None:
        command = error.ctx.command_path
    else:
        words = sys.argv[1:] if args is None else args
        command = f"hsiseg {words[0]}" if words and not words[0].startswith("-") else "hsiseg"
    return f"{message.rstrip('.')} (see {command} --help)"
