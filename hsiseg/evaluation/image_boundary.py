"""Boundary metrics of one image at every tree level (NSD and ASD per class, :mod:`hsiseg.evaluation.boundary`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hsiseg.evaluation.boundary import boundary_scores
from hsiseg.evaluation.level_truth import truth_at
from hsiseg.evaluation.metrics import to_level
from hsiseg.tree import LabelTree


@dataclass
class ImageBoundary:
    """NSD and ASD of one image at every tree level: ``levels[d] = (nsd, asd, in_truth)``, each (K_d,) over the
    depth-``d`` nodes (``tree.level_codes(d)``); ``in_truth``: the node is in the image's scored truth."""

    sample: str
    levels: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]


def image_boundary(
    sample: str, labels: np.ndarray, truth: np.ndarray, tree: LabelTree, tolerance: float
) -> ImageBoundary:
    """NSD and ASD of one image's (H, W) leaf codes against its (H, W) truth codes at every tree level, on the
    pixels whose truth is usable at that level (partial labels only where they are coarse enough)."""
    levels = {}
    for depth in range(1, tree.depth + 1):
        usable = truth_at(truth, tree, depth)
        region = (usable >= 0) & (usable < tree.num_leaves) & (labels >= 0)
        codes = np.asarray(tree.level_codes(depth), dtype=np.int64)
        truth_level = to_level(np.where(region, usable, -1), tree, depth)
        prediction_level = to_level(labels, tree, depth)
        nsd, asd = boundary_scores(prediction_level, truth_level, codes, tolerance, region)
        levels[depth] = (nsd, asd, np.isin(codes, truth_level[region]))
    return ImageBoundary(sample, levels)
