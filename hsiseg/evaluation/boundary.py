"""Boundary metrics beside Dice: normalised surface Dice (NSD) and average symmetric surface distance (ASD).

What the DKFZ htc framework reports next to Dice, computed with ``scipy.ndimage`` and matching MONAI 1.x's
``compute_surface_dice`` and ``compute_average_surface_distance(symmetric=True)`` (Euclidean distances, unit
spacing, ``use_subvoxels=False``) to float precision (tested):

- **Border** of a mask (H, W): its pixels with at least one of their 4 neighbours (up, down, left, right)
  outside the mask or outside the image: ``mask & ~binary_erosion(mask)`` with scipy's default cross-shaped
  structuring element and ``border_value=0``, as MONAI's ``get_mask_edges``. The border is an 8-connected
  inner contour, one pixel thick; a mask that touches the image edge has a border there.
- **Distances**, in pixels: Euclidean, from each border pixel of one mask to the nearest border pixel of the
  other (exact, ``distance_transform_edt``).
- **NSD** at tolerance ``tau`` (pixels): ``(|{d_pt <= tau}| + |{d_tp <= tau}|) / (|P| + |T|)`` over the
  distances from the prediction's border P to the truth's border T and back; in [0, 1], 1 when every border
  pixel lies within ``tau`` of the other border.
- **ASD**: the mean of both sets of distances pooled, ``(sum d_pt + sum d_tp) / (|P| + |T|)`` (MONAI's
  ``symmetric=True``); 0 for identical masks.
- **Edge cases (MONAI's conventions)**: a class absent from both prediction and truth gets NSD = ASD = NaN
  (skipped: never counted in a mean). A class in only one of them gets NSD = 0 and ASD = +inf; callers that
  average ASD must decide what inf means (the evaluation report averages the finite values and counts the
  infinite ones beside them, see :mod:`hsiseg.evaluation.scores`).
- **Region** (optional (H, W) bool: the scored pixels): outside it, prediction and truth alike are treated as
  "no class", as htc does by giving unscored pixels a dummy class. A class's border along the region's edge
  therefore counts, the same in prediction and truth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

OUTSIDE = -1  # label of pixels outside the scored region (never a class)


def border(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool mask -> (H, W) bool border: mask pixels with a 4-neighbour outside the mask or the image."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def label_borders(labels: np.ndarray) -> np.ndarray:
    """(H, W) int label map -> (H, W) bool: pixels with a 4-neighbour of another label, or on the image edge.

    ``(labels == c) & label_borders(labels)`` equals ``border(labels == c)`` for every class ``c``, for all
    classes in one pass.
    """
    labels = np.asarray(labels)
    edge = np.zeros(labels.shape, dtype=bool)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    vertical = labels[1:] != labels[:-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    horizontal = labels[:, 1:] != labels[:, :-1]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge


def surface_distances(border_from: np.ndarray, border_to: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances (pixels) from each pixel of one border (H, W) bool to the nearest pixel of the other, both ways.

    Returns ``(d_from_to, d_to_from)``: (n_from,) and (n_to,) float64, in row-major pixel order. Both borders
    must be non-empty. The distance transforms run on the bounding box of the two borders only (every pixel a
    distance can end on lies in it, so the result is exact).
    """
    both = border_from | border_to
    rows, columns = np.flatnonzero(both.any(1)), np.flatnonzero(both.any(0))
    box = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))
    from_box, to_box = border_from[box], border_to[box]
    to_distance = ndimage.distance_transform_edt(~to_box)
    from_distance = ndimage.distance_transform_edt(~from_box)
    return to_distance[from_box], from_distance[to_box]


def nsd_asd_of_borders(
    prediction_border: np.ndarray, truth_border: np.ndarray, tolerance: float
) -> tuple[float, float]:
    """NSD at ``tolerance`` and ASD of two (H, W) bool borders, with the module's NaN / 0 / inf conventions."""
    has_prediction, has_truth = bool(prediction_border.any()), bool(truth_border.any())
    if not has_prediction and not has_truth:
        return float("nan"), float("nan")
    if not has_prediction or not has_truth:
        return 0.0, float("inf")
    to_truth, to_prediction = surface_distances(prediction_border, truth_border)
    pooled = to_truth.size + to_prediction.size
    within = int((to_truth <= tolerance).sum() + (to_prediction <= tolerance).sum())
    return within / pooled, float((to_truth.sum() + to_prediction.sum()) / pooled)


def nsd_asd(prediction: np.ndarray, truth: np.ndarray, tolerance: float = 2.0) -> tuple[float, float]:
    """NSD at ``tolerance`` pixels and ASD (pixels) of two (H, W) bool masks (see the module docstring)."""
    check_tolerance(tolerance)
    return nsd_asd_of_borders(border(prediction), border(truth), tolerance)


def boundary_scores(
    prediction: np.ndarray,
    truth: np.ndarray,
    classes: Sequence[int] | np.ndarray,
    tolerance: float = 2.0,
    region: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class NSD and ASD of two (H, W) integer label maps.

    ``classes``: the K label values to score; ``region``: (H, W) bool scored pixels (default: all), outside of
    which both maps count as no class. Returns (K,) NSD and (K,) ASD, float64: NaN for a class in neither
    map, NSD 0 and ASD inf for a class in only one.
    """
    check_tolerance(tolerance)
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    if prediction.shape != truth.shape or prediction.ndim != 2:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} must be label maps of one shape")
    if region is not None:
        prediction = np.where(region, prediction, OUTSIDE)
        truth = np.where(region, truth, OUTSIDE)
    prediction_edges, truth_edges = label_borders(prediction), label_borders(truth)
    nsd = np.full(len(classes), np.nan)
    asd = np.full(len(classes), np.nan)
    for index, code in enumerate(classes):
        nsd[index], asd[index] = nsd_asd_of_borders(
            (prediction == code) & prediction_edges, (truth == code) & truth_edges, tolerance
        )
    return nsd, asd


def check_tolerance(tolerance: float) -> None:
    """Raise ValueError unless ``tolerance`` is a finite number >= 0 (pixels)."""
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"the NSD tolerance must be a finite number of pixels >= 0, got {tolerance}")
