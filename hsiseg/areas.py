"""Pixel counts of a label map per class, unknown and invalid: one column layout and one naming for every
areas table (a frame's ``areas.csv``, a recording's ``pixels`` dataset and ``areas.csv``, the legends).

Column ``j`` of a count row holds label code ``j + INVALID``: column 0 counts invalid pixels, column 1
unknown ones, column ``2 + c`` leaf ``c``.
"""

from __future__ import annotations

import numpy as np

from hsiseg.labels import INVALID, UNKNOWN
from hsiseg.tree import LabelTree

UNKNOWN_NAME = "unknown"
INVALID_NAME = "invalid"
INVALID_LEGEND = "invalid (no usable spectrum)"  # where a reader needs the meaning, not a column name


def area_columns(num_leaves: int) -> int:
    """Columns of a count row for a tree of ``num_leaves`` leaves."""
    return num_leaves - INVALID


def count_areas(labels: np.ndarray, num_leaves: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(H, W) label map (leaf codes, ``UNKNOWN``, ``INVALID``) -> (C + 2,) pixel counts per column.

    With ``weights`` (H, W), the sum of the weights per column instead (e.g. the confidence, for its mean).
    """
    bins = (np.asarray(labels).astype(np.int64) - INVALID).ravel()
    flat = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    return np.bincount(bins, weights=flat, minlength=area_columns(num_leaves))


def column_code(column: int) -> int:
    """The label code a count column holds."""
    return column + INVALID


def area_name(tree: LabelTree, code: int, legend: bool = False) -> str:
    """A label code's name: a tree node's name, ``unknown``, or ``invalid`` (explained when ``legend``)."""
    if code == UNKNOWN:
        return UNKNOWN_NAME
    if code == INVALID:
        return INVALID_LEGEND if legend else INVALID_NAME
    return tree.node(code).name
