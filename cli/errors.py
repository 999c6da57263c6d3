"""Turn :class:`hsiseg.HsisegError` into one line on stderr and exit code 2."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from hsiseg.errors import HsisegError

USER_ERROR_EXIT_CODE = 2

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(command: F) -> F:
    """Decorate a typer command so user errors print ``hsiseg: error: ...`` and exit with code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except HsisegError as error:
            typer.echo(f"hsiseg: error: {error}", err=True)
            raise typer.Exit(USER_ERROR_EXIT_CODE) from None

    return wrapper  # type: ignore[return-value]
