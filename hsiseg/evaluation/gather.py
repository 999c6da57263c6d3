"""Gathering a prediction folder's frames with their truth (:func:`collect`): every scored pixel's prediction,
truth, masks, OOD scores and confidence, per-image scores, and per-image boundary metrics where truth is dense."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.dataset.spec import DataSpec
from hsiseg.errors import HsisegError
from hsiseg.evaluation.frame_files import (
    read_confidence,
    read_json,
    read_labels,
    read_mask,
    read_scores,
    read_summary,
)
from hsiseg.evaluation.image_boundary import ImageBoundary, image_boundary
from hsiseg.evaluation.scores import boundary_image_means, level_confusion, summary_scores
from hsiseg.tree import LabelTree

DENSE_COVERAGE = 0.5  # boundary metrics only for images whose truth covers at least this share of the pixels
MASKS = ("unknown", "invalid")  # per-frame mask PNGs kept by hsiseg predict


@dataclass
class Evaluation:
    """Every scored pixel (truth present) of the evaluated images, concatenated image by image (P pixels)."""

    tree: LabelTree
    prediction: np.ndarray  # (P,) leaf codes of all scored pixels
    truth: np.ndarray  # (P,) truth codes (-100 = none)
    per_image: list[dict[str, Any]] = field(default_factory=list)
    unknown: np.ndarray | None = None  # (P,) bool: predicted unknown
    invalid: np.ndarray | None = None  # (P,) bool: no usable spectrum
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # OOD score name -> (P,) values
    trained_classes: list[str] | None = None  # leaves the model trained on (None: not recorded)
    confidence: np.ndarray | None = None  # (P,) top-label probability; None unless every frame kept probabilities
    frames_without_probabilities: int = 0
    nsd_tolerance: float | None = None  # None: boundary metrics not asked for
    boundary: list[ImageBoundary] = field(default_factory=list)  # images with dense truth
    sparse_images: int = 0  # images left out of the boundary metrics (truth below DENSE_COVERAGE)


@dataclass
class _Parts:
    """What :func:`collect` has read so far: per image, arrays over its P_i scored pixels, to concatenate."""

    predicted: list[np.ndarray] = field(default_factory=list)  # (P_i,) leaf codes
    truths: list[np.ndarray] = field(default_factory=list)  # (P_i,) int64 truth codes
    masks: dict[str, list[np.ndarray]] = field(default_factory=lambda: {name: [] for name in MASKS})  # (P_i,) bool
    scores: dict[str, list[np.ndarray]] = field(default_factory=dict)  # OOD score name -> (P_i,) values
    confidences: list[np.ndarray] = field(default_factory=list)  # (P_i,) top-label probability
    without_probabilities: int = 0
    per_image: list[dict[str, Any]] = field(default_factory=list)
    boundaries: list[ImageBoundary] = field(default_factory=list)
    sparse: int = 0


def collect(
    predictions: Path,
    spec: DataSpec,
    split: str | None = None,
    against: str = "truth",
    nsd_tolerance: float | None = None,
) -> Evaluation:
    """Read every predicted frame of ``predictions`` that belongs to a spec sample, with its truth; its top-label
    confidence when it kept probabilities; with ``nsd_tolerance`` (pixels), its boundary metrics when its truth
    is dense."""
    frames = _predicted_frames(predictions)
    arguments = read_json(predictions / "args.json")
    parts = _Parts()
    for frame, sample_id in _frames_of_samples(predictions, frames, spec, split):
        labels, truth = _labels_and_truth(frame, sample_id, spec, against)
        keep = truth != -100
        _add_pixels(parts, frame, labels, truth, keep, arguments.get("ood_score_used"), spec.tree.num_leaves)
        record = _image_record(sample_id, labels, truth, keep, spec)
        if nsd_tolerance is not None:
            _add_boundary(parts, record, sample_id, labels, truth, keep, spec.tree, nsd_tolerance)
        parts.per_image.append(record)
    if not parts.predicted:
        raise HsisegError(f"{predictions}: no predicted frame matches a sample of {spec.path} (split {split or 'all'})")
    return _evaluation(parts, spec.tree, arguments.get("trained_classes"), nsd_tolerance)


def _predicted_frames(predictions: Path) -> list[dict]:
    """The rows of the prediction folder's ``summary.json`` whose frame did not fail."""
    summary_path = predictions / "summary.json"
    if not summary_path.is_file():
        raise HsisegError(f"{predictions}: no summary.json; pass the output folder of hsiseg predict")
    return [row for row in read_summary(summary_path) if row["status"] != "failed"]


def _frames_of_samples(
    predictions: Path, frames: list[dict], spec: DataSpec, split: str | None
) -> list[tuple[Path, str]]:
    """(frame folder, sample id) of every frame predicted from the cube of a spec sample in ``split`` (all
    samples without one), in the summary's order."""
    by_cube = {spec.resolve(sample.cube).resolve(): sample_id for sample_id, sample in spec.samples.items()}
    allowed = set(spec.split(split)) if split else set(spec.samples)
    matched = []
    for row in frames:
        sample_id = by_cube.get(Path(row["source"]).resolve())
        if sample_id is not None and sample_id in allowed:
            matched.append((predictions / row["frame"], sample_id))
    return matched


def _labels_and_truth(frame: Path, sample_id: str, spec: DataSpec, against: str) -> tuple[np.ndarray, np.ndarray]:
    """A frame's (H, W) int64 predicted leaf codes and its sample's (H, W) truth codes (-100 = none): the dense
    truth (``against="truth"``) or the sparse annotations."""
    labels_path = frame / "labels.npy"
    if not labels_path.is_file():
        raise HsisegError(f"{labels_path}: missing; rerun hsiseg predict --continue")
    labels = read_labels(labels_path, spec.tree.num_leaves)
    truth = (
        spec.read_truth(sample_id, labels.shape)
        if against == "truth"
        else spec.read_annotation(sample_id, labels.shape)
    )
    if truth is None:
        raise HsisegError(f"sample {sample_id} has no dense truth in the spec; use --against annotations")
    if truth.shape != labels.shape:
        raise HsisegError(f"sample {sample_id}: prediction {labels.shape} and truth {truth.shape} differ in shape")
    return labels, truth


def _add_pixels(
    parts: _Parts,
    frame: Path,
    labels: np.ndarray,
    truth: np.ndarray,
    keep: np.ndarray,
    score_used: str | None,
    classes: int,
) -> None:
    """Append one frame's scored pixels (``keep``, (H, W) bool): prediction, truth, masks, OOD scores and
    top-label confidence (or count the frame as one without probabilities)."""
    parts.predicted.append(labels[keep])
    parts.truths.append(truth[keep].astype(np.int64))
    for name in parts.masks:
        parts.masks[name].append(read_mask(frame / f"{name}.png", labels.shape)[keep])
    for name, values in read_scores(frame, score_used).items():
        parts.scores.setdefault(name, []).append(values[keep])
    confidence = read_confidence(frame / "probabilities.h5", labels.shape, classes)
    if confidence is None:
        parts.without_probabilities += 1
    else:
        parts.confidences.append(confidence[keep])


def _image_record(
    sample_id: str, labels: np.ndarray, truth: np.ndarray, keep: np.ndarray, spec: DataSpec
) -> dict[str, Any]:
    """One image's row of the per-image table: sample, subject, scored pixels and its leaf-level scores."""
    confusion, _ = level_confusion(labels[keep], truth[keep].astype(np.int64), spec.tree, spec.tree.depth)
    return {
        "sample": sample_id,
        "subject": spec.samples[sample_id].subject,
        "pixels": int(keep.sum()),
        **summary_scores(confusion),
    }


def _add_boundary(
    parts: _Parts,
    record: dict[str, Any],
    sample_id: str,
    labels: np.ndarray,
    truth: np.ndarray,
    keep: np.ndarray,
    tree: LabelTree,
    tolerance: float,
) -> None:
    """Boundary metrics of an image with dense truth (its leaf-level NSD and ASD into ``record``); an image with
    sparse truth is only counted, its ``record`` NaN."""
    record["nsd"] = record["asd"] = float("nan")
    if keep.mean() < DENSE_COVERAGE:
        parts.sparse += 1
        return
    image = image_boundary(sample_id, labels, truth.astype(np.int64), tree, tolerance)
    parts.boundaries.append(image)
    nsd, asd, in_truth = image.levels[tree.depth]
    record["nsd"], record["asd"], _ = boundary_image_means(nsd, asd, in_truth)


def _evaluation(
    parts: _Parts, tree: LabelTree, trained_classes: list[str] | None, nsd_tolerance: float | None
) -> Evaluation:
    """Concatenate the parts; OOD scores only when every frame kept them, confidence only when every frame
    kept probabilities."""
    images = len(parts.predicted)
    complete = {name: np.concatenate(values) for name, values in parts.scores.items() if len(values) == images}
    confidence = np.concatenate(parts.confidences) if not parts.without_probabilities else None
    return Evaluation(
        tree=tree,
        prediction=np.concatenate(parts.predicted),
        truth=np.concatenate(parts.truths),
        per_image=parts.per_image,
        unknown=np.concatenate(parts.masks["unknown"]),
        invalid=np.concatenate(parts.masks["invalid"]),
        scores=complete,
        trained_classes=trained_classes,
        confidence=confidence,
        frames_without_probabilities=parts.without_probabilities,
        nsd_tolerance=nsd_tolerance,
        boundary=parts.boundaries,
        sparse_images=parts.sparse,
    )
