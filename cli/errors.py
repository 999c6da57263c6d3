"""Turn user errors into one line on stderr: :class:`hsiseg.HsisegError` and operating-system errors (a full
disk, a read-only folder, a path that is a file) exit with code 2; Ctrl-C prints what was kept and how to go
on, and exits with 130 (the shell's code for an interrupt)."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from hsiseg.errors import HsisegError

from .exit_codes import INTERRUPTED_EXIT_CODE, USER_ERROR_EXIT_CODE

__all__ = ["INTERRUPTED_EXIT_CODE", "USER_ERROR_EXIT_CODE", "Interrupted", "reports_errors"]

F = TypeVar("F", bound=Callable[..., Any])


class Interrupted(Exception):
    """Ctrl-C, with the command's own advice on what was kept and how to resume."""


def reports_errors(command: F) -> F:
    """Decorate a typer command so user errors print ``hsiseg: error: ...`` and exit with code 2, and Ctrl-C
    ``hsiseg: interrupted ...`` with code 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except HsisegError as error:
            typer.echo(f"hsiseg: error: {error}", err=True)
            raise typer.Exit(USER_ERROR_EXIT_CODE) from None
        except OSError as error:  # e.g. no space left on device, a read-only folder
            typer.echo(f"hsiseg: error: {os_error_line(error)}", err=True)
            raise typer.Exit(USER_ERROR_EXIT_CODE) from None
        except Interrupted as interrupted:
            typer.echo(f"hsiseg: {interrupted}", err=True)
            raise typer.Exit(INTERRUPTED_EXIT_CODE) from None
        except KeyboardInterrupt:
            typer.echo("hsiseg: interrupted; files already written are complete (every write is atomic)", err=True)
            raise typer.Exit(INTERRUPTED_EXIT_CODE) from None

    return wrapper  # type: ignore[return-value]


def os_error_line(error: OSError) -> str:
    """``PATH: reason; advice`` for the operating-system errors a user can fix."""
    path = error.filename or ""
    reason = error.strerror or str(error)
    advice = {
        errno.ENOSPC: "free some space (files already written are complete) and run again",
        errno.EDQUOT: "free some space (files already written are complete) and run again",
        errno.EACCES: "choose a folder you may write to",
        errno.EROFS: "the file system is read-only; choose another folder",
        errno.EEXIST: "a file of that name is in the way; choose another path",
        errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
        errno.EISDIR: "it is a folder; give a file path",
    }.get(error.errno or 0, "")
    return "; ".join(part for part in (f"{path}: {reason}" if path else reason, advice) if part)
