"""Annotation layers: one annotator's strokes on one image, edited stroke by stroke and saved as the spec says.

Every sample of a data spec lists its annotation files; each file is one annotator's *layer*. An annotation
session edits exactly one layer per sample, its annotator's own file ``annotations/<sample>/<annotator>.png``
below the spec's root (label-image format, the spec's value table); every other file is shown read-only and is
never written. The spec gains the new file (and a value for a node its table lacks) on the first save, in one
atomic rewrite; its first version is kept beside it as ``<spec>.bak``.

A layer holds (H, W) int32 target codes (:data:`~hsiseg.labels.UNLABELLED` where nothing is drawn), a version
that grows with every change (two windows editing one image are told, never silently merged: a change must name
the version it was drawn on), and undo / redo stacks. Saving is atomic; a file changed on disk by anything but
this session since it was last read or written is a :class:`LayerConflict`, never overwritten.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from hsiseg.annotations import merge_label_maps, rasterize_strokes, read_label_image
from hsiseg.annotations.writers import write_label_values
from hsiseg.errors import HsisegError, HsisegWarning
from hsiseg.labels import UNLABELLED
from hsiseg.tree import LabelTree

ANNOTATOR_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_UNDO = 50  # changes kept per layer for undo
MAX_POINTS = 20_000  # points of one stroke (a request larger than this is refused)
MAX_WIDTH = 256  # brush width in pixels


class LayerConflict(HsisegError):
    """A layer was changed elsewhere (another window, or its file on disk) since the change was drawn."""


@dataclass(frozen=True)
class StrokeEdit:
    """One edit of a layer: ``tool`` brush (a polyline of ``width`` pixels labelled ``label``), eraser (the same,
    clearing), or polygon (filled, labelled ``label``); ``points`` are (x, y) = (column, row) in pixels."""

    tool: Literal["brush", "eraser", "polygon"]
    points: tuple[tuple[float, float], ...]
    label: str | None = None
    width: float = 1.0

    def check(self, tree: LabelTree) -> None:
        """Raise :class:`HsisegError` naming the first bad field."""
        if self.tool not in ("brush", "eraser", "polygon"):
            raise HsisegError(f"stroke: tool must be brush, eraser or polygon, got {self.tool!r}")
        if not 1 <= len(self.points) <= MAX_POINTS:
            raise HsisegError(f"stroke: points must hold 1 to {MAX_POINTS} [x, y] pairs, got {len(self.points)}")
        if not all(len(p) == 2 and all(np.isfinite(v) for v in p) for p in self.points):
            raise HsisegError("stroke: every point must be a pair of finite numbers [x, y]")
        if self.tool == "polygon" and len(self.points) < 3:
            raise HsisegError("stroke: a polygon needs at least 3 points")
        if self.tool != "eraser" and (self.label is None or self.label not in tree):
            raise HsisegError(f"stroke: label {self.label!r} is not a node of the label tree")
        if not (np.isfinite(self.width) and 0 < self.width <= MAX_WIDTH):
            raise HsisegError(f"stroke: width must be in (0, {MAX_WIDTH}] pixels, got {self.width}")

    def mask(self, shape: tuple[int, int], tree: LabelTree) -> np.ndarray:
        """(H, W) bool: the pixels this edit covers."""
        points = [list(p) for p in self.points]
        shape_key = {"polygon": points} if self.tool == "polygon" else {"points": points, "width": self.width}
        stroke = {"label": tree.nodes[0].name, **shape_key}  # any node: only the covered pixels matter
        return rasterize_strokes([stroke], shape, tree, "stroke") != UNLABELLED


@dataclass
class Layer:
    """One annotator's strokes on one sample (see module docstring). ``file`` is the spec's relative path."""

    file: str
    path: Path
    codes: np.ndarray  # (H, W) int32 target codes
    editable: bool
    version: int = 0
    stamp: tuple[int, int] | None = None  # (mtime_ns, size) of the file as last read or written here
    undo_stack: list[np.ndarray] = field(default_factory=list)
    redo_stack: list[np.ndarray] = field(default_factory=list)

    @property
    def annotator(self) -> str:
        return Path(self.file).stem

    def apply(self, edit: StrokeEdit, tree: LabelTree, version: int) -> None:
        """Draw ``edit`` (drawn on ``version``) into the layer; raises :class:`LayerConflict` on a stale version."""
        self._check_writable(version)
        edit.check(tree)
        covered = edit.mask(self.codes.shape, tree)
        code = UNLABELLED if edit.tool == "eraser" else tree.index(str(edit.label))
        self._change(np.where(covered, np.int32(code), self.codes))

    def undo(self, version: int) -> bool:
        """Undo the last change; False when there is none."""
        return self._step(version, self.undo_stack, self.redo_stack)

    def redo(self, version: int) -> bool:
        """Redo the last undone change; False when there is none."""
        return self._step(version, self.redo_stack, self.undo_stack)

    def _step(self, version: int, source: list[np.ndarray], target: list[np.ndarray]) -> bool:
        """Go back to the top of ``source``, keeping the current codes on ``target``."""
        self._check_writable(version)
        if not source:
            return False
        target.append(self.codes)
        self.codes = source.pop()
        self.version += 1
        return True

    def _change(self, codes: np.ndarray) -> None:
        self.undo_stack = (self.undo_stack + [self.codes])[-MAX_UNDO:]
        self.redo_stack.clear()
        self.codes = codes.astype(np.int32)
        self.version += 1

    def _check_writable(self, version: int) -> None:
        if not self.editable:
            raise HsisegError(f"{self.file}: another annotator's layer is shown read-only; draw on your own layer")
        if version != self.version:
            raise LayerConflict(
                f"{self.file}: changed in another window (version {self.version}, this change was drawn on "
                f"{version}); reload the page to see the current strokes"
            )


def check_annotator(name: str) -> str:
    """The annotator's name, checked: letters, digits, ``_ . -``, at most 64 characters (it names a file)."""
    if not ANNOTATOR_PATTERN.fullmatch(name):
        raise HsisegError(f"annotator: {name!r} must be 1-64 letters, digits, '_', '.' or '-' (it names a file)")
    return name


def own_file(sample_id: str, annotator: str) -> str:
    """The spec-relative path of ``annotator``'s layer of ``sample_id``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", sample_id).lstrip(".") or "sample"
    return f"annotations/{safe}/{annotator}.png"


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of ``path``, None when it does not exist."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_mtime_ns, status.st_size


def read_layer(
    file: str, path: Path, tree: LabelTree, table: dict[int, str], ignore: int, shape: tuple[int, int], editable: bool
) -> Layer:
    """A layer from its label image (an empty one when an own file does not exist yet)."""
    stamp = file_stamp(path)
    if stamp is None:
        if not editable:
            raise HsisegError(f"{path}: annotation file not found")
        return Layer(file, path, np.full(shape, UNLABELLED, dtype=np.int32), True)
    codes = read_label_image(path, tree, table, ignore)
    if codes.shape != shape:
        raise HsisegError(f"{path}: annotation shape {codes.shape} differs from the cube's {shape}")
    return Layer(file, path, codes.astype(np.int32), editable, stamp=stamp)


def save_layer(layer: Layer, values_of: dict[int, int], ignore: int) -> None:
    """Write the layer's codes as file values (``values_of``: code -> value), atomically; a file changed on
    disk since this session last read or wrote it raises :class:`LayerConflict` and is left as it is."""
    if file_stamp(layer.path) != layer.stamp:
        raise LayerConflict(f"{layer.path}: changed on disk by another program since it was opened; not overwritten "
                            "(reload the page to read it)")  # fmt: skip
    values = np.full(layer.codes.shape, ignore, dtype=np.int64)
    for code in np.unique(layer.codes[layer.codes != UNLABELLED]):
        values[layer.codes == code] = values_of[int(code)]
    write_label_values(layer.path, values)
    layer.stamp = file_stamp(layer.path)



def merged_codes(layers: Sequence[Layer]) -> np.ndarray:
    """(H, W) int32: every layer's strokes; where layers disagree the pixel is unlabelled (the spec's union,
    :func:`~hsiseg.annotations.merge_label_maps`, without its warning: the page shows the layers)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HsisegWarning)
        return merge_label_maps([layer.codes for layer in layers], source="layers").label_map
