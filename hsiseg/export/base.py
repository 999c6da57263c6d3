"""The exporter registry: what a streaming run's ``maps.h5`` is turned into, and in which order.

An exporter is ``function(maps, output_folder) -> written path`` registered with
``@EXPORTERS.register("name", needs=("other",), files=("name.ext",))``: ``needs`` names exporters whose files
it reads (the HTML report embeds ``areas.png``), and :func:`export_all` runs those first; ``files`` names what
it writes, so that a run refuses to replace a file of the same name it did not write (:func:`exported_files`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from hsiseg.errors import HsisegError
from hsiseg.export.maps import StreamMaps
from hsiseg.registry import Registry

Exporter = Callable[[StreamMaps, Path], Path]
EXPORTERS: Registry[Exporter] = Registry("export")
DEFAULT_EXPORTS = ("areas", "mp4", "html")


def check_exports(names: Iterable[str]) -> list[str]:
    """The exporters to run for ``names`` in an order that honours ``needs`` (needed ones added)."""
    ordered: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        EXPORTERS.check(name)
        if name in ordered:
            return
        if name in chain:
            raise HsisegError(f"exporters need each other in a circle: {' -> '.join((*chain, name))}")
        for needed in EXPORTERS.meta(name).get("needs", ()):
            visit(needed, (*chain, name))
        ordered.append(name)

    for name in names:
        visit(name, ())
    return ordered


def exported_files(names: Iterable[str]) -> list[str]:
    """The file names the exporters ``names`` (and those they need) declare they write."""
    return [file for name in check_exports(names) for file in EXPORTERS.meta(name).get("files", ())]


def export(name: str, maps: StreamMaps, output: Path) -> Path:
    """Run the exporter ``name`` alone (what it needs must exist already); returns what it wrote."""
    exporter = EXPORTERS.lookup(name)
    if not len(maps.slots):
        raise HsisegError(f"{maps.path}: no frame is done; nothing to export")
    return exporter(maps, output)


def export_all(names: Iterable[str], maps: StreamMaps, output: Path) -> list[Path]:
    """Run the exporters ``names`` and those they need, needed ones first; returns what they wrote."""
    return [export(name, maps, output) for name in check_exports(names)]
