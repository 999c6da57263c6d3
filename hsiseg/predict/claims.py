"""Claims: one process at a time computes a frame, however many runs share an output folder.

A claim is an exclusive advisory lock (``flock``) on ``FRAME/.lock``, held from the moment a run takes the
frame until its outputs are written. The operating system releases it when the process ends, killed or not,
so a crashed run never leaves a stale claim behind. Where ``fcntl`` is missing (Windows) claims always
succeed: runs sharing a folder there must use ``num_parts``.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class Claim:
    """An exclusive claim (a frame's, or the right to write the summary); ``release`` ends it."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    def release(self) -> None:
        self._handle.close()  # closing the file drops the lock


def try_claim(lock_path: Path, wait: bool = False) -> Claim | None:
    """Lock ``lock_path`` (created with its folder if needed); ``None`` when another process holds it and
    ``wait`` is false."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a")  # noqa: SIM115 - held open for the claim's lifetime
    if fcntl is None:
        return Claim(handle)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return Claim(handle)
