"""Evaluation numbers: per-class and per-level segmentation scores, mistake severity, unknown-tissue detection.

All scores use annotated pixels only (truth >= 0): pixels without truth are never counted.

- Per class (from a confusion matrix ``[truth, prediction]``): Dice, IoU, precision, recall; a class absent
  from both truth and prediction gets NaN (not 0, not 1) and is left out of means.
- Overall accuracy and balanced accuracy (mean recall over classes present in the truth).
- Tree levels: prediction and truth are both mapped to their depth-d ancestors before scoring.
- Mistake severity: the tree distance d(prediction, truth) averaged over annotated pixels (0 when right) and
  over misclassified pixels only, plus the histogram of distances. On a flat tree with unit weights the
  mean equals 2 x the error rate.
- Unknown-tissue detection (OOD-SEG): held-out classes' pixels are positives (should be flagged), kept
  classes' pixels negatives; the OOD score is "higher = more in-distribution", so positives are ranked by
  -score. AUROC (by ranks: the probability a positive outranks a negative, ties counted half), AUPR (average
  precision), FPR at 95% TPR.
- Boundary metrics (NSD, ASD; per image and class from :mod:`hsiseg.evaluation.boundary`) averaged over
  images. Per class: NSD over the images holding the class in truth or prediction (NaN ones skipped, the
  0 of a class in only one of them counted); ASD over the images where it is finite, with the number of
  images where it is infinite (the class in only one of truth and prediction) beside it. Per image: the
  mean over the classes present in its truth (as mean Dice), ASD over the finite ones; per level: the mean
  over images.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from hsiseg.evaluation.metrics import confusion_matrix, to_level
from hsiseg.tree import LabelTree


def class_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Dice, IoU, precision, recall per class (C,) from a (C, C) confusion matrix; NaN where undefined."""
    tp = np.diag(confusion).astype(np.float64)
    truth = confusion.sum(1).astype(np.float64)
    predicted = confusion.sum(0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "dice": np.where(truth + predicted > 0, 2 * tp / (truth + predicted), np.nan),
            "iou": np.where(truth + predicted - tp > 0, tp / (truth + predicted - tp), np.nan),
            "precision": np.where(predicted > 0, tp / predicted, np.nan),
            "recall": np.where(truth > 0, tp / truth, np.nan),
        }


def summary_scores(confusion: np.ndarray) -> dict[str, float]:
    """Overall accuracy, balanced accuracy, and mean Dice / IoU over classes present in the truth."""
    scores = class_scores(confusion)
    present = confusion.sum(1) > 0
    total = confusion.sum()
    return {
        "accuracy": float(np.trace(confusion) / total) if total else float("nan"),
        "balanced_accuracy": float(np.nanmean(scores["recall"][present])) if present.any() else float("nan"),
        "mean_dice": float(np.nanmean(scores["dice"][present])) if present.any() else float("nan"),
        "mean_iou": float(np.nanmean(scores["iou"][present])) if present.any() else float("nan"),
    }


def level_confusion(
    prediction: np.ndarray, truth: np.ndarray, tree: LabelTree, depth: int
) -> tuple[np.ndarray, list[str]]:
    """Confusion matrix at tree depth ``depth`` over annotated leaf pixels, and the node names of its rows."""
    codes = [int(c) for c in tree.level_codes(depth)]
    position = np.full(tree.num_nodes, -1)
    position[codes] = np.arange(len(codes))
    keep = (truth >= 0) & (truth < tree.num_leaves) & (prediction >= 0)
    mapped_truth = position[to_level(truth[keep], tree, depth)]
    mapped_prediction = position[to_level(prediction[keep], tree, depth)]
    return confusion_matrix(mapped_prediction, mapped_truth, len(codes)), [tree.node(c).name for c in codes]


def mistake_severity(prediction: np.ndarray, truth: np.ndarray, tree: LabelTree) -> dict[str, object]:
    """Mean tree distance over annotated pixels and over misclassified ones, and the distance histogram."""
    keep = (truth >= 0) & (truth < tree.num_leaves) & (prediction >= 0)
    distances = tree.distance_matrix()[truth[keep], prediction[keep]]
    wrong = distances > 0
    values, counts = np.unique(np.round(distances, 6), return_counts=True)
    return {
        "mean_distance": float(distances.mean()) if distances.size else float("nan"),
        "mean_distance_of_errors": float(distances[wrong].mean()) if wrong.any() else 0.0,
        "histogram": {f"{v:g}": int(c) for v, c in zip(values, counts, strict=True)},
    }


def auroc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """P(a positive ranks above a negative), ties half: the Mann-Whitney form of the ROC area."""
    positive, negative = np.asarray(positive_scores, float), np.asarray(negative_scores, float)
    if not positive.size or not negative.size:
        return float("nan")
    ranks = rankdata(np.concatenate([positive, negative]))
    return float(
        (ranks[: positive.size].sum() - positive.size * (positive.size + 1) / 2) / (positive.size * negative.size)
    )


def average_precision(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """Area under the precision-recall curve (average precision) for detecting positives by high score."""
    scores = np.concatenate([positive_scores, negative_scores]).astype(float)
    labels = np.concatenate([np.ones(len(positive_scores)), np.zeros(len(negative_scores))])
    if not labels.sum() or labels.sum() == labels.size:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = labels[order]
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float((precision * hits).sum() / hits.sum())


def fpr_at_tpr(positive_scores: np.ndarray, negative_scores: np.ndarray, tpr: float = 0.95) -> float:
    """False-positive rate at the threshold that flags ``tpr`` of the positives (scores: higher = flagged)."""
    if not len(positive_scores) or not len(negative_scores):
        return float("nan")
    threshold = np.quantile(np.asarray(positive_scores, float), 1 - tpr, method="lower")
    return float((np.asarray(negative_scores, float) >= threshold).mean())


def ood_scores(in_distribution: np.ndarray, held_out: np.ndarray) -> dict[str, float]:
    """AUROC, AUPR and FPR@95%TPR for flagging held-out pixels; inputs are "higher = more in-distribution"."""
    positive, negative = -np.asarray(held_out, float), -np.asarray(in_distribution, float)
    return {
        "auroc": auroc(positive, negative),
        "aupr": average_precision(positive, negative),
        "fpr_at_95_tpr": fpr_at_tpr(positive, negative, 0.95),
    }


def boundary_class_means(nsd: np.ndarray, asd: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class means over images of (I, K) NSD and ASD (NaN: class in neither map; ASD inf: in only one).

    Returns (K,) ``nsd`` (mean of the non-NaN values), ``asd`` (mean of the finite values), ``asd_inf`` (int:
    images where ASD is inf) and ``images`` (int: images where the class is in truth or prediction); NaN means
    where no image counts.
    """
    nsd, asd = np.atleast_2d(nsd), np.atleast_2d(asd)
    counted = ~np.isnan(nsd)
    finite = np.isfinite(asd)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "nsd": np.where(counted.any(0), np.where(counted, nsd, 0).sum(0) / counted.sum(0), np.nan),
            "asd": np.where(finite.any(0), np.where(finite, asd, 0).sum(0) / finite.sum(0), np.nan),
            "asd_inf": np.isinf(asd).sum(0).astype(np.int64),
            "images": counted.sum(0).astype(np.int64),
        }


def boundary_image_means(nsd: np.ndarray, asd: np.ndarray, in_truth: np.ndarray) -> tuple[float, float, int]:
    """One image's NSD and ASD from (K,) per-class values and (K,) bool classes present in its truth: means over
    those classes (ASD over the finite values), and how many of them have ASD inf (missed by the prediction)."""
    in_truth = np.asarray(in_truth, dtype=bool)
    present_nsd, present_asd = nsd[in_truth], asd[in_truth]
    finite = np.isfinite(present_asd)
    return (
        float(present_nsd.mean()) if present_nsd.size else float("nan"),
        float(present_asd[finite].mean()) if finite.any() else float("nan"),
        int(np.isinf(present_asd).sum()),
    )
