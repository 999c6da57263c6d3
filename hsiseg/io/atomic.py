"""Atomic file writing: write to a temporary file beside the target, then rename over it.

An interrupted write (Ctrl-C, a crash, a full disk) leaves the previous file, or nothing, never half a file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hsiseg.errors import HsisegError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``, on error it is removed.

    A read-only file at ``path`` is refused before anything is written: a rename would replace it silently
    (renaming needs write access to the folder only, and root may write anything).
    """
    path = Path(path)
    _refuse_read_only(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as error:  # name the file the user asked for, not a hidden temporary one
        raise OSError(error.errno, error.strerror, str(path)) from None
    os.close(handle)
    temporary = Path(name)
    # mkstemp creates 0600: give the file the usual permissions, always writable by its owner, so that a umask
    # without write bits does not make hsiseg refuse its own files the next time (see _refuse_read_only)
    os.chmod(temporary, (0o666 & ~_umask()) | stat.S_IWUSR)
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if error.filename is not None and str(error.filename).endswith(".part"):
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _refuse_read_only(path: Path) -> None:
    with contextlib.suppress(OSError):  # a missing file, or one we cannot stat: the write itself will tell
        if path.is_file() and not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            raise HsisegError(f"{path}: the file is read-only; make it writable (chmod u+w) or choose another path")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a new empty folder beside ``path``; on success it replaces ``path`` as one unit.

    The swap is two renames (``path`` -> ``.NAME.old``, new -> ``path``) and a delete; a crash between them
    leaves the previous folder as ``.NAME.old``, which :func:`recover_folder` puts back. An error inside the
    ``with`` block removes the new folder and leaves ``path`` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(path)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent))
    os.chmod(temporary, 0o777 & ~_umask())
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    previous = _previous(path)
    if path.exists():
        os.replace(path, previous)
    os.replace(temporary, path)
    shutil.rmtree(previous, ignore_errors=True)


def recover_folder(path: str | Path) -> None:
    """Finish or undo an interrupted :func:`atomic_folder` swap of ``path``: restore ``.NAME.old`` when
    ``path`` is missing, delete it when ``path`` is there, and delete half-written ``.NAME.*.new`` folders."""
    path = Path(path)
    previous = _previous(path)
    if previous.is_dir():
        if path.exists():
            shutil.rmtree(previous, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):  # another process (a DDP rank) restored it first
                os.replace(previous, path)
    for stale in path.parent.glob(f".{path.name}.*.new"):
        shutil.rmtree(stale, ignore_errors=True)


def _previous(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def check_output_folder(path: str | Path) -> Path:
    """``path`` as a folder to write into; an existing file there is one clear error (nothing is written)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HsisegError(f"output {path} is a file, not a folder; choose a folder")
    return path
