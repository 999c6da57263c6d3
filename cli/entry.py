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
        if type(error).__name__ == "NoArgsIsHelpError":  # `hsiseg` alone: the help is the answer
            sys.stderr.write(f"{error.format_message()}\n")
        else:
            sys.stderr.write(f"hsiseg: error: {usage_line(error)}\n")
        raise SystemExit(error.exit_code) from None
    except any_error as error:
        sys.stderr.write(f"hsiseg: error: {error.format_message()}\n")
        raise SystemExit(error.exit_code) from None
    except aborted:  # end of input at a prompt
        sys.stderr.write("hsiseg: aborted\n")
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)


def usage_line(error: Any) -> str:
    """A click ``UsageError`` as one line: ``No such option: --nope (see hsiseg train --help)``."""
    message = " ".join(error.format_message().split())
    command = error.ctx.command_path if error.ctx is not None else "hsiseg"
    return f"{message.rstrip('.')} (see {command} --help)"
