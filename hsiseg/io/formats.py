"""Cube formats by name: the reader registry, detection from a file's name or first bytes, finding cubes.

A reader is a function ``read_x(path, ..., max_bytes=None) -> Cube`` registered with
``@READERS.register("x", suffixes=(...), listed=(...), magic=b"...")``: ``suffixes`` pick the format from a
file name, ``listed`` are the suffixes :func:`find_cubes` searches folders for (a format whose data file sits
beside a header lists only the header), ``magic`` the bytes a file of the format starts with.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hsiseg.errors import HsisegError
from hsiseg.io.cube import Cube
from hsiseg.registry import Registry

READERS: Registry[Callable[..., Cube]] = Registry("cube format", skip=("path", "max_bytes"))


def detect_format(path: Path) -> str:
    """The reader for ``path``: extension first (``.dat`` is ENVI data when a header sits beside it), then magic."""
    suffix = path.suffix.lower()
    if suffix == ".dat":
        has_header = path.with_suffix(".hdr").is_file() or Path(str(path) + ".hdr").is_file()
        return "envi" if has_header and not path.name.endswith("_SpecCube.dat") else "tivita"
    for name in READERS:
        if suffix in READERS.meta(name).get("suffixes", ()):
            return name
    with open(path, "rb") as handle:
        start = handle.read(1024)
    for name in READERS:
        magic = READERS.meta(name).get("magic")
        if magic and start.startswith(magic):
            return name
    raise HsisegError(
        f"{path}: unknown cube format (extension {suffix or '(none)'!r}); use one of "
        f"{sorted(_suffixes('suffixes') | {'.dat'})} or pass format=... ({sorted(READERS)})"
    )


def find_cubes(folder: str | Path) -> list[Path]:
    """Cube files under ``folder`` (recursive, sorted); ENVI data files beside a header are not listed twice."""
    folder = Path(folder)
    listed = _suffixes("listed")
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in listed or path.name.startswith("."):
            continue
        if path.suffix.lower() == ".dat" and detect_format(path) == "envi":
            continue  # its .hdr is listed
        found.append(path)
    return found


def _suffixes(kind: str) -> set[str]:
    return {suffix for name in READERS for suffix in READERS.meta(name).get(kind, ())}
