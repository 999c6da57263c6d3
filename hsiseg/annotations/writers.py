"""Writing label maps as label images hsiseg (and any image viewer) can read back.

Encoding used by the shipped data sets: PNG, uint8, 0 = unlabelled, value = tree code + 1 (leaves and
internal nodes), with :func:`code_label_table` as the spec's ``annotations.labels``. :func:`write_label_values`
writes file values as they are (PNG up to 16 bits, or NPY). Paths may be ``str`` or ``Path``; files are
written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.io.atomic import atomic_path
from hsiseg.tree import LabelTree


def code_label_table(tree: LabelTree) -> dict[int, str]:
    """File value -> node name for the code + 1 encoding."""
    return {node.code + 1: node.name for node in tree.nodes}


def code_annotation_spec(tree: LabelTree) -> dict[str, object]:
    """The data spec's ``annotations`` block for label images in the code + 1 encoding."""
    return {"format": "label-image", "ignore_value": 0, "labels": code_label_table(tree)}


def write_label_image(path: str | Path, label_map: np.ndarray) -> None:
    """Write a label map (H, W) of target codes (-100 = unlabelled) as a code + 1 PNG, atomically."""
    import imageio.v3 as imageio

    path = Path(path)
    if label_map.max(initial=-1) >= 255:
        raise HsisegError(f"{path}: codes up to {label_map.max()} do not fit the 8-bit code + 1 encoding")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        imageio.imwrite(temporary, np.where(label_map < 0, 0, label_map + 1).astype(np.uint8), extension=".png")


def write_label_values(path: str | Path, values: np.ndarray) -> None:
    """Write integer file values (H, W) as they are, atomically: ``.png`` (8-bit when they fit, else 16-bit;
    values must lie in 0-65535) or ``.npy`` (the array's integer dtype)."""
    import imageio.v3 as imageio

    path = Path(path)
    suffix = path.suffix.lower()
    if values.ndim != 2 or values.dtype.kind not in "iub":
        raise HsisegError(f"{path}: label values must be 2-D integers, got {values.dtype} {values.shape}")
    if suffix not in (".png", ".npy"):
        raise HsisegError(f"{path}: label images are written as .png or .npy, not {suffix or 'no extension'!r}")
    low, high = int(values.min(initial=0)), int(values.max(initial=0))
    if suffix == ".png" and (low < 0 or high > 65535):
        raise HsisegError(f"{path}: values {low} to {high} do not fit a PNG label image (0-65535); write .npy")
    with atomic_path(path) as temporary:
        if suffix == ".npy":
            with open(temporary, "wb") as handle:
                np.save(handle, values, allow_pickle=False)
        else:
            imageio.imwrite(temporary, values.astype(np.uint8 if high < 256 else np.uint16), extension=".png")
