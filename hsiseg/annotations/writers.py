"""Writing label maps as label images hsiseg (and any image viewer) can read back.

Encoding used by the shipped data sets: PNG, uint8, 0 = unlabelled, value = tree code + 1 (leaves and
internal nodes), with :func:`code_label_table` as the spec's ``annotations.labels``.
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


def write_label_image(path: Path, label_map: np.ndarray) -> None:
    """Write a label map (H, W) of target codes (-100 = unlabelled) as a code + 1 PNG, atomically."""
    import imageio.v3 as imageio

    if label_map.max(initial=-1) >= 255:
        raise HsisegError(f"{path}: codes up to {label_map.max()} do not fit the 8-bit code + 1 encoding")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        imageio.imwrite(temporary, np.where(label_map < 0, 0, label_map + 1).astype(np.uint8), extension=".png")
