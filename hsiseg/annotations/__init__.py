"""Sparse scribble annotations as label maps of tree target codes (see :mod:`hsiseg.annotations.readers`)."""

from hsiseg.annotations.merge import MergeResult, count_labels, merge_label_maps
from hsiseg.annotations.readers import (
    UNLABELLED,
    heiporspectral_masks,
    rasterize_strokes,
    read_colour_image,
    read_heiporspectral,
    read_label_image,
    read_strokes,
)

__all__ = [
    "UNLABELLED",
    "MergeResult",
    "count_labels",
    "heiporspectral_masks",
    "merge_label_maps",
    "rasterize_strokes",
    "read_colour_image",
    "read_heiporspectral",
    "read_label_image",
    "read_strokes",
]
