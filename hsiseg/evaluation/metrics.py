"""Segmentation metrics on annotated pixels, at the leaf level and at any tree level.

Only annotated pixels are scored (the rest has no truth). A partial label (an internal node) counts as
correct when the predicted leaf lies under it; it is left out of per-class (leaf) Dice.
"""

from __future__ import annotations

import numpy as np

from hsiseg.annotations import UNLABELLED
from hsiseg.tree import LabelTree


def confusion_matrix(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts ``[truth, prediction]`` over pixels whose truth is a class ``0..C-1``."""
    keep = (truth >= 0) & (truth < num_classes)
    index = truth[keep].astype(np.int64) * num_classes + prediction[keep].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def to_level(codes: np.ndarray, tree: LabelTree, depth: int) -> np.ndarray:
    """Map leaf codes (any shape; negatives kept) to the codes of their ancestors at ``depth``."""
    table = tree.level_map()[depth - 1]
    out = codes.copy()
    leaves = (codes >= 0) & (codes < tree.num_leaves)
    out[leaves] = table[codes[leaves]]
    return out


def dice_per_class(confusion: np.ndarray) -> np.ndarray:
    """Dice per class from a confusion matrix; NaN for classes absent from both truth and prediction."""
    true_positive = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(0) + confusion.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * true_positive / denominator, np.nan)


def annotated_metrics(prediction: np.ndarray, target: np.ndarray, tree: LabelTree) -> dict[str, float]:
    """Leaf accuracy (partial labels count when the leaf is under them), top-level accuracy, and mean leaf Dice
    over classes present in the target. ``prediction``: leaf codes; ``target``: target codes, -100 unlabelled."""
    annotated = target != UNLABELLED
    if not annotated.any():
        return {"leaf_accuracy": float("nan"), "top_accuracy": float("nan"), "mean_dice": float("nan"), "pixels": 0}
    predicted, wanted = prediction[annotated], target[annotated]
    members = tree.ancestor_matrix()  # (N, C)
    correct = members[wanted, predicted] > 0
    top_prediction = to_level(predicted, tree, 1)
    top_wanted = np.array([tree.index(tree.ancestor(tree.node(int(c)).name, 1)) for c in range(tree.num_nodes)])[wanted]
    leaf = wanted < tree.num_leaves
    confusion = confusion_matrix(predicted[leaf], wanted[leaf], tree.num_leaves)
    present = confusion.sum(1) > 0
    dice = dice_per_class(confusion)
    return {
        "leaf_accuracy": float(correct.mean()),
        "top_accuracy": float((top_prediction == top_wanted).mean()),
        "mean_dice": float(np.nanmean(dice[present])) if present.any() else float("nan"),
        "pixels": int(annotated.sum()),
    }
