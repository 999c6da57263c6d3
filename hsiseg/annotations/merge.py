"""Several annotators (or several layers) merged into one label map, and annotation summaries."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hsiseg.errors import HsisegError, HsisegWarning
from hsiseg.labels import UNLABELLED
from hsiseg.tree import LabelTree


@dataclass
class MergeResult:
    """A merged label map (H, W) int32 and the number of pixels given up because annotators disagreed."""

    label_map: np.ndarray
    conflicts: int


def merge_label_maps(maps: Sequence[np.ndarray], source: str = "annotations") -> MergeResult:
    """Union of label maps: a pixel labelled by several maps with different codes is a conflict and becomes
    unlabelled (a :class:`HsisegWarning` reports how many)."""
    if not maps:
        raise HsisegError(f"{source}: nothing to merge")
    shape = maps[0].shape
    for label_map in maps:
        if label_map.shape != shape:
            raise HsisegError(f"{source}: annotation shapes differ ({shape} vs {label_map.shape})")
    merged = np.full(shape, UNLABELLED, dtype=np.int32)
    conflict = np.zeros(shape, dtype=bool)
    for label_map in maps:
        labelled = label_map != UNLABELLED
        disagree = labelled & (merged != UNLABELLED) & (merged != label_map)
        conflict |= disagree
        merged[labelled] = label_map[labelled]
    merged[conflict] = UNLABELLED
    count = int(conflict.sum())
    if count:
        warnings.warn(
            f"{source}: {count} pixels labelled differently by annotators set to unlabelled",
            HsisegWarning,
            stacklevel=2,
        )
    return MergeResult(merged, count)


def count_labels(label_map: np.ndarray, tree: LabelTree) -> dict[str, int]:
    """Pixels per node name (only nodes that occur), in code order."""
    codes, counts = np.unique(label_map[label_map != UNLABELLED], return_counts=True)
    return {tree.node(int(code)).name: int(count) for code, count in zip(codes, counts, strict=True)}
