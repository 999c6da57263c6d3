"""The numbers of an evaluation report: per tree level (scores, confusion, boundary means), calibration, mistake
severity, unknown tissue and per-subject means; no files written here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hsiseg.evaluation.calibration_metrics import ECE_BINS, CalibrationBins, calibration_bins
from hsiseg.evaluation.gather import DENSE_COVERAGE, Evaluation
from hsiseg.evaluation.level_truth import truth_at
from hsiseg.evaluation.scores import (
    boundary_class_means,
    boundary_image_means,
    class_scores,
    level_confusion,
    mistake_severity,
    ood_scores,
    summary_scores,
)

NO_CALIBRATION = "calibration: not available (predict with --probabilities)"
NO_BOUNDARY = "boundary metrics need dense truth"
CLASS_SCORES = ("dice", "iou", "precision", "recall")


@dataclass
class LevelScores:
    """Scores of one tree level over its K nodes (``tree.level_codes(depth)``)."""

    depth: int
    confusion: np.ndarray  # (K, K) pixels, rows = truth, columns = prediction
    names: list[str]  # (K,) node names, in the tree's order
    classes: dict[str, np.ndarray]  # CLASS_SCORES -> (K,) per-class scores
    boundary: dict[str, np.ndarray]  # "nsd", "asd" -> (K,) means over images; "asd_inf" -> (K,) images (-1: none)
    numbers: dict[str, Any]  # the level's summary: accuracy, means of Dice, IoU, NSD, ASD, missed classes


def level_scores(evaluation: Evaluation, depth: int) -> LevelScores:
    """Confusion, per-class scores and boundary means at ``depth``, partial labels scored where defined."""
    tree = evaluation.tree
    confusion, names = level_confusion(evaluation.prediction, truth_at(evaluation.truth, tree, depth), tree, depth)
    boundary = level_boundary(evaluation, depth, len(names))
    numbers = {**summary_scores(confusion), **boundary["level"]}
    return LevelScores(depth, confusion, names, class_scores(confusion), boundary["classes"], numbers)


def class_rows(level: LevelScores) -> list[list[Any]]:
    """One row per class: name, pixels, Dice, IoU, precision, recall, NSD, ASD, images with ASD inf (-1: no
    image with dense truth)."""
    rows = []
    for index, name in enumerate(level.names):
        scores = [level.classes[key][index] for key in CLASS_SCORES]
        boundary = [level.boundary[key][index] for key in ("nsd", "asd", "asd_inf")]
        rows.append([name, int(level.confusion[index].sum()), *scores, *boundary])
    return rows


def level_boundary(evaluation: Evaluation, depth: int, classes: int) -> dict[str, dict]:
    """Per-class means (K,) and the level's means over images of NSD and ASD; NaN (and -1 counts) without any
    image with dense truth."""
    if not evaluation.boundary:
        return {
            "classes": {"nsd": np.full(classes, np.nan), "asd": np.full(classes, np.nan),
                        "asd_inf": np.full(classes, -1)},
            "level": {"mean_nsd": float("nan"), "mean_asd": float("nan"), "asd_inf": None},
        }  # fmt: skip
    nsd = np.stack([image.levels[depth][0] for image in evaluation.boundary])  # (I, K)
    asd = np.stack([image.levels[depth][1] for image in evaluation.boundary])
    per_image = [boundary_image_means(*image.levels[depth]) for image in evaluation.boundary]
    image_nsd = np.array([m[0] for m in per_image])
    image_asd = np.array([m[1] for m in per_image])
    return {
        "classes": boundary_class_means(nsd, asd),
        "level": {
            "mean_nsd": float(np.nanmean(image_nsd)) if (~np.isnan(image_nsd)).any() else float("nan"),
            "mean_asd": float(np.nanmean(image_asd)) if (~np.isnan(image_asd)).any() else float("nan"),
            "asd_inf": int(sum(m[2] for m in per_image)),
        },
    }


def boundary_note(evaluation: Evaluation) -> str | None:
    """Why the report has no boundary metrics, or leaves images out of them (None when all images count)."""
    if evaluation.nsd_tolerance is None:
        return "boundary metrics: not computed"
    if not evaluation.boundary:
        return f"{NO_BOUNDARY} (no image's truth covers {DENSE_COVERAGE:.0%} of its pixels; use --against truth)"
    if evaluation.sparse_images:
        return (f"boundary metrics over {len(evaluation.boundary)} images; {evaluation.sparse_images} with truth on "
                f"under {DENSE_COVERAGE:.0%} of their pixels left out ({NO_BOUNDARY})")  # fmt: skip
    return None


def boundary_summary(evaluation: Evaluation, note: str | None) -> dict[str, Any]:
    """The ``boundary`` entry of ``summary.json``: tolerance, images with and without dense truth, the note."""
    return {
        "nsd_tolerance_px": evaluation.nsd_tolerance, "images": len(evaluation.boundary),
        "sparse_images": evaluation.sparse_images, "note": note,
    }  # fmt: skip


def leaf_calibration_bins(evaluation: Evaluation) -> CalibrationBins | None:
    """Top-label calibration bins over the scored pixels with a leaf truth (None without probabilities)."""
    if evaluation.confidence is None:
        return None
    tree, truth = evaluation.tree, evaluation.truth
    leaf = (truth >= 0) & (truth < tree.num_leaves)
    return calibration_bins(evaluation.confidence[leaf], evaluation.prediction[leaf] == truth[leaf], ECE_BINS)


def calibration_summary(evaluation: Evaluation, bins: CalibrationBins | None) -> dict[str, Any]:
    """The ``calibration`` entry of ``summary.json``: ECE and the (B,) bins, or why there are none."""
    if bins is None:
        return {"available": False, "note": NO_CALIBRATION,
                "frames_without_probabilities": evaluation.frames_without_probabilities}  # fmt: skip
    return {
        "available": True, "ece": bins.ece, "bins": bins.bins, "pixels": int(bins.counts.sum()),
        "counts": bins.counts.tolist(), "mean_confidence": bins.mean_confidence.tolist(),
        "accuracy": bins.accuracy.tolist(),
    }  # fmt: skip


def leaf_severity(evaluation: Evaluation) -> dict[str, Any]:
    """Mistake severity (tree distance between prediction and truth) over the pixels with a leaf truth."""
    leaf_truth = evaluation.truth < evaluation.tree.num_leaves
    return mistake_severity(evaluation.prediction[leaf_truth], evaluation.truth[leaf_truth], evaluation.tree)


def unknown_tissue(evaluation: Evaluation) -> dict[str, Any]:
    """Shares of scored pixels predicted unknown and invalid; with classes the model never trained on in the
    truth, AUROC / AUPR / FPR@95%TPR of every kept OOD score (held-out classes = positives)."""
    tree, truth = evaluation.tree, evaluation.truth
    result: dict[str, Any] = {
        "unknown_share": float(evaluation.unknown.mean()) if evaluation.unknown is not None else float("nan"),
        "invalid_share": float(evaluation.invalid.mean()) if evaluation.invalid is not None else float("nan"),
    }
    if evaluation.trained_classes is None:
        return result
    trained = [tree.index(name) for name in evaluation.trained_classes if name in tree]
    leaf = (truth >= 0) & (truth < tree.num_leaves)
    unseen = leaf & ~np.isin(truth, trained)
    valid = ~evaluation.invalid if evaluation.invalid is not None else np.ones_like(leaf)
    positives, negatives = unseen & valid, leaf & ~unseen & valid
    result["held_out_classes"] = sorted({tree.leaves[c] for c in np.unique(truth[unseen])})
    if positives.any() and negatives.any():
        result["scores"] = {
            name: ood_scores(values[negatives], values[positives]) for name, values in evaluation.scores.items()
        }
        if evaluation.unknown is not None:
            result["unknown_caught"] = float(evaluation.unknown[positives].mean())
            result["known_flagged"] = float(evaluation.unknown[negatives].mean())
    return result


def subject_means(per_image: list[dict[str, Any]]) -> list[tuple[str, int, float, float]]:
    """Per subject (sorted): its images, their mean accuracy and mean of mean Dice (NaN images skipped)."""
    means = []
    for subject in sorted({str(r["subject"]) for r in per_image}):
        rows = [r for r in per_image if r["subject"] == subject]
        accuracy, dice = np.mean([r["accuracy"] for r in rows]), np.nanmean([r["mean_dice"] for r in rows])
        means.append((subject, len(rows), float(accuracy), float(dice)))
    return means
