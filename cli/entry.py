"""The ``hsiseg`` console script: Ctrl-C while the command line is still loading (torch and friends take a
few seconds to import) ends with one line, like Ctrl-C anywhere else, never a traceback."""

from __future__ import annotations

import sys

from .exit_codes import INTERRUPTED_EXIT_CODE


def main() -> None:
    try:
        from .main import app
    except KeyboardInterrupt:
        sys.stderr.write("hsiseg: interrupted while starting; nothing was done\n")
        raise SystemExit(INTERRUPTED_EXIT_CODE) from None
    app()
