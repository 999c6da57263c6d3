"""Reading sparse annotations into label maps of tree target codes.

Every reader returns an (H, W) int32 *label map*: a pixel holds the target code of a label-tree node
(``tree.index(name)``: a leaf, or an internal node for a partial label) or :data:`UNLABELLED` (-100, the
losses' default ``ignore_index``). File values are turned into node names by a mapping from the data spec;
a value or name the mapping or the tree does not know is an error naming the file and the value.

Formats:

- label images (PNG, TIFF, NPY): integer values, ``ignore_value`` (default 0) means unlabelled;
- colour images (PNG): an RGB colour per class (``"#ff0000": artery``), black/transparent = unlabelled;
- strokes (JSON): ``{"strokes": [{"label": "artery", "width": 5, "points": [[x, y], ...]},
  {"label": "bone", "polygon": [[x, y], ...]}]}``; polylines are drawn with a round brush of the given
  width (pixels), polygons are filled (scikit-image);
- HeiPorSPECTRAL masks: ``<timestamp>#<kind>#<annotator>#<label>#binary.png``, one binary mask per label and
  annotator (see :func:`read_heiporspectral`).

Image files are checked before they are decoded (:func:`hsiseg.io.images.load_image`): more than
:data:`~hsiseg.io.images.MAX_IMAGE_PIXELS` pixels (a decompression bomb, or the wrong file) is refused with
the pixel count; NPY files are read with ``allow_pickle=False`` and object arrays refused from the header; a
file no decoder understands is one :class:`HsisegError` naming it. Text files (strokes) must be UTF-8.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.annotations.merge import merge_label_maps
from hsiseg.errors import HsisegError
from hsiseg.io.images import load_image
from hsiseg.labels import UNLABELLED
from hsiseg.textfiles import read_utf8
from hsiseg.tree import LabelTree


def codes_for(tree: LabelTree, labels: Mapping[Any, str], source: str | Path) -> dict[Any, int]:
    """File value -> target code, checking every name against the tree."""
    codes = {}
    for value, name in labels.items():
        if name not in tree:
            raise HsisegError(f"{source}: label {name!r} (for file value {value!r}) is not a node of the label tree")
        codes[value] = tree.index(name)
    return codes


def read_label_values(path: str | Path) -> np.ndarray:
    """The raw values (H, W) of an integer label image (PNG, TIFF or NPY; a grey image saved as RGB is read as
    grey), before any mapping to tree codes."""
    image = load_image(path)
    if image.ndim == 3 and image.shape[2] in (3, 4) and (image[..., :3] == image[..., :1]).all():
        image = image[..., 0]  # a grey image saved as RGB
    if image.ndim != 2 or image.dtype.kind not in "iub":
        raise HsisegError(f"{path}: a label image must be 2-D integers, got {image.dtype} {image.shape}")
    return image


def read_label_image(path: Path, tree: LabelTree, labels: Mapping[int, str], ignore_value: int = 0) -> np.ndarray:
    """Integer label image -> label map (H, W) int32; ``labels`` maps file values to node names."""
    image = read_label_values(path)
    codes = codes_for(tree, {int(k): v for k, v in labels.items()}, path)
    values = np.unique(image)
    unknown = sorted(int(v) for v in values if int(v) != ignore_value and int(v) not in codes)
    if unknown:
        raise HsisegError(f"{path}: label values {unknown} are not in the spec's label table (known: {sorted(codes)})")
    lookup_values = np.array(sorted(codes), dtype=np.int64)
    label_map = np.full(image.shape, UNLABELLED, dtype=np.int32)
    annotated = image != ignore_value
    positions = np.searchsorted(lookup_values, image[annotated].astype(np.int64))
    label_map[annotated] = np.array([codes[int(v)] for v in lookup_values], dtype=np.int32)[positions]
    return label_map


def read_colour_image(path: Path, tree: LabelTree, colours: Mapping[str, str]) -> np.ndarray:
    """RGB(A) label image -> label map; ``colours`` maps ``'#rrggbb'`` to node names; black or transparent is
    unlabelled."""
    from matplotlib.colors import to_rgb

    image = load_image(path)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise HsisegError(f"{path}: a colour annotation must be RGB or RGBA, got shape {image.shape}")
    rgb = image[..., :3].astype(np.int64)
    keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    unlabelled = keys == 0
    if image.shape[2] == 4:
        unlabelled |= image[..., 3] == 0
    table = {}
    for colour, name in colours.items():
        try:
            r, g, b = (round(255 * c) for c in to_rgb(colour))
        except ValueError:
            raise HsisegError(f"{path}: {colour!r} in the colour table is not a colour") from None
        table[(r << 16) | (g << 8) | b] = name
    codes = codes_for(tree, table, path)
    label_map = np.full(keys.shape, UNLABELLED, dtype=np.int32)
    for key in np.unique(keys[~unlabelled]):
        if int(key) not in codes:
            raise HsisegError(f"{path}: colour #{int(key):06x} is not in the spec's colour table")
        label_map[(keys == key) & ~unlabelled] = codes[int(key)]
    return label_map


def rasterize_strokes(
    strokes: list[dict[str, Any]], shape: tuple[int, int], tree: LabelTree, source: str | Path
) -> np.ndarray:
    """Draw polylines (round brush of ``width`` pixels) and filled polygons into a label map (H, W).

    Points are ``[x, y]`` (column, row) in pixels. Later strokes are drawn over earlier ones.
    """
    from skimage.draw import disk, line, polygon

    height, width = shape
    label_map = np.full(shape, UNLABELLED, dtype=np.int32)
    for number, stroke in enumerate(strokes):
        where = f"{source}: stroke {number}"
        name = stroke.get("label")
        if not isinstance(name, str) or name not in tree:
            raise HsisegError(f"{where}: label {name!r} is not a node of the label tree")
        unknown = sorted(set(stroke) - {"label", "width", "points", "polygon"})
        if unknown:
            raise HsisegError(f"{where}: unknown keys {unknown} (allowed: label, width, points, polygon)")
        code = tree.index(name)
        mask = np.zeros(shape, dtype=bool)
        if "polygon" in stroke:
            points = np.asarray(stroke["polygon"], dtype=np.float64)
            if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
                raise HsisegError(f"{where}: 'polygon' needs at least 3 [x, y] points")
            rows, columns = polygon(points[:, 1], points[:, 0], shape=shape)
            mask[rows, columns] = True
        elif "points" in stroke:
            points = np.round(np.asarray(stroke["points"], dtype=np.float64)).astype(int)
            if points.ndim != 2 or points.shape[1] != 2 or len(points) < 1:
                raise HsisegError(f"{where}: 'points' needs [x, y] pairs")
            radius = float(stroke.get("width", 1)) / 2
            if radius <= 0:
                raise HsisegError(f"{where}: 'width' must be positive")
            centre = np.zeros(shape, dtype=bool)
            segments = zip(points[:-1], points[1:], strict=True) if len(points) > 1 else [(points[0], points[0])]
            for (x0, y0), (x1, y1) in segments:
                rows, columns = line(int(y0), int(x0), int(y1), int(x1))
                inside = (rows >= 0) & (rows < height) & (columns >= 0) & (columns < width)
                centre[rows[inside], columns[inside]] = True
            if radius <= 0.5:
                mask = centre
            else:
                from scipy.ndimage import binary_dilation

                offset = int(np.ceil(radius))
                brush = np.zeros((2 * offset + 1, 2 * offset + 1), dtype=bool)
                brush[disk((offset, offset), radius + 1e-9, shape=brush.shape)] = True
                mask = binary_dilation(centre, structure=brush)
        else:
            raise HsisegError(f"{where}: needs 'points' (a polyline) or 'polygon'")
        label_map[mask] = code
    return label_map


def read_strokes(path: Path, tree: LabelTree, shape: tuple[int, int]) -> np.ndarray:
    """A strokes JSON file (see module docstring) rasterised to a label map of ``shape`` (H, W)."""
    if not path.is_file():
        raise HsisegError(f"{path}: annotation file not found")
    try:
        content = json.loads(read_utf8(path, "the strokes file"))
    except json.JSONDecodeError as error:
        raise HsisegError(f"{path}: line {error.lineno}: invalid JSON: {error.msg}") from None
    if not isinstance(content, dict) or not isinstance(content.get("strokes"), list):
        raise HsisegError(f"{path}: expected {{'strokes': [...]}}")
    return rasterize_strokes(content["strokes"], shape, tree, path)


def heiporspectral_masks(folder: Path, image_name: str | None = None) -> dict[str, dict[str, Path]]:
    """annotator -> label -> mask path, for files ``<timestamp>#<kind>#<annotator>#<label>#binary.png``.

    ``image_name`` (the timestamp) restricts the search to one image.
    """
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.glob("*#binary.png")):
        parts = path.name.split("#")
        if len(parts) != 5:
            raise HsisegError(f"{path}: expected '<image>#<kind>#<annotator>#<label>#binary.png'")
        image, _, annotator, label, _ = parts
        if image_name is None or image == image_name:
            found.setdefault(annotator, {})[label] = path
    return found


def read_heiporspectral(
    folder: Path, tree: LabelTree, labels: Mapping[str, str] | None = None, image_name: str | None = None
) -> dict[str, np.ndarray]:
    """annotator -> label map, from HeiPorSPECTRAL binary masks; ``labels`` renames file labels to node names.

    Within one annotator, overlapping masks are a conflict: those pixels become unlabelled.
    """
    masks = heiporspectral_masks(folder, image_name)
    if not masks:
        raise HsisegError(f"{folder}: no '*#binary.png' annotation masks found")
    maps = {}
    for annotator, by_label in masks.items():
        layers = []
        for label, path in sorted(by_label.items()):
            name = (labels or {}).get(label, label)
            if name not in tree:
                raise HsisegError(f"{path}: label {label!r} is not a node of the label tree (map it in the spec)")
            mask = load_image(path)
            mask = mask[..., 0] if mask.ndim == 3 else mask
            layer = np.full(mask.shape, UNLABELLED, dtype=np.int32)
            layer[mask > 0] = tree.index(name)
            layers.append(layer)
        maps[annotator] = merge_label_maps(layers, source=f"{folder} ({annotator})").label_map
    return maps
