"""How much memory one cube read may take, checked from the declared shape before anything is allocated.

Every reader computes the shape its header or metadata declares and calls :func:`check_cube_size` before it
reads a value, so a damaged or unusual header (a 20000 x 20000 x 100 cube is 160 GB as float32) is one clear
error instead of a ``MemoryError`` or a machine swapping itself to a halt. The limit is ``max_bytes``
(:func:`hsiseg.io.read_cube` option); by default half of the machine's physical memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from numbers import Real
from pathlib import Path
from typing import Any

from hsiseg.errors import HsisegError

FLOAT32_BYTES = 4
FALLBACK_MAX_BYTES = 4 * 10**9  # where the physical memory cannot be read (half of an assumed 8 GB machine)
GB = 10**9


class CubeTooLargeError(HsisegError):
    """A cube whose declared size exceeds the memory the read may use (``max_bytes``)."""


def physical_memory_bytes() -> int | None:
    """Bytes of physical memory of this machine, or None where the operating system does not say."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows) or no such name
        return None
    if pages <= 0 or page_size <= 0:
        return None
    return int(pages) * int(page_size)


def default_max_bytes() -> int:
    """Half of the physical memory (:data:`FALLBACK_MAX_BYTES` where it is unknown)."""
    memory = physical_memory_bytes()
    return FALLBACK_MAX_BYTES if memory is None else memory // 2


def resolve_max_bytes(max_bytes: Any) -> int:
    """The limit in bytes: ``None`` -> :func:`default_max_bytes`; else a positive number (e.g. ``4e9``)."""
    if max_bytes is None:
        return default_max_bytes()
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, Real) or not float(max_bytes) > 0:
        raise HsisegError(f"option 'max_bytes' must be a positive number of bytes (e.g. 8e9), got {max_bytes!r}")
    limit = float(max_bytes)
    return int(limit) if math.isfinite(limit) else 2**63 - 1


def cube_bytes(shape: Sequence[int], raw_itemsize: int = 0) -> int:
    """Bytes a read of ``shape`` values takes: float32 output plus ``raw_itemsize`` bytes per stored value
    when the reader holds the stored values in memory too (0 where they are memory-mapped)."""
    return math.prod(int(side) for side in shape) * (FLOAT32_BYTES + raw_itemsize)


def check_cube_size(path: str | Path, shape: Sequence[int], max_bytes: int | None, raw_itemsize: int = 0) -> None:
    """Refuse an empty cube, or one whose read would take more than ``max_bytes``, before allocating it.

    Parameters
    ----------
    path: the file, named in the message.
    shape: the declared shape of the stored array (any axis order; e.g. (H, W, B) or (pixels, bands)).
    max_bytes: the limit; None: :func:`default_max_bytes`.
    raw_itemsize: bytes per value of a raw copy the reader holds besides the float32 cube (0 if none).
    """
    sides = " x ".join(str(int(side)) for side in shape)
    if any(int(side) <= 0 for side in shape):
        raise HsisegError(f"{path}: the cube's shape is {sides}, which holds no values; the file is empty or damaged")
    limit = resolve_max_bytes(max_bytes)
    needed = cube_bytes(shape, raw_itemsize)
    if needed > limit:
        raise CubeTooLargeError(
            f"{path}: a {sides} cube needs {needed / GB:.1f} GB of memory to read, more than the "
            f"{limit / GB:.1f} GB allowed (max_bytes); check the file's header or metadata, crop the cube, "
            "or raise max_bytes on a machine with enough memory"
        )
