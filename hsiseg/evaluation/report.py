"""``hsiseg evaluate``: score a prediction folder against a data spec's truth, and write a report.

The prediction folder is the output of ``hsiseg predict`` (``summary.json`` says which cube each frame came
from; ``<frame>/labels.npy`` holds the raw leaf codes). Truth is the spec's dense truth where it exists
(``--against truth``) or its sparse annotations (``--against annotations``); only pixels with truth count.
Partial labels (internal nodes) in the truth are scored only at the tree levels where they are defined.

The report folder receives ``report.md`` (summary per tree level, per-class table, mistake severity, unknown
tissue, per image and per subject means), ``classes_level<d>.csv``, ``per_image.csv``,
``confusion_level<d>.png`` (rows = truth, ordered by the tree, family boundaries drawn) and
``dice_level<d>.png`` (per-class bars).

Calibration (top label, :mod:`hsiseg.evaluation.calibration_metrics`): when every frame kept its class
probabilities (``hsiseg predict --probabilities`` writes ``probabilities.h5``), the expected calibration error
over scored pixels with a leaf truth (confidence = the largest probability, correct = ``labels.npy``, the
argmax, equals the truth leaf; 15 equal-width bins), ``reliability.png`` and ``calibration_bins.csv``;
otherwise the report says "calibration: not available (predict with --probabilities)".

Boundary metrics (:mod:`hsiseg.evaluation.boundary`; ``nsd_tolerance`` given to :func:`collect`): NSD at that
tolerance and ASD, in pixels, per image, class and tree level, on the image's scored pixels. Only images whose
truth covers at least :data:`DENSE_COVERAGE` of their pixels count (dense truth; scribbles have no meaningful
boundary); when none does, the report says "boundary metrics need dense truth". Averaging rules are in
:mod:`hsiseg.evaluation.scores`.

Unknown tissue (OOD-SEG protocol): the shares of scored pixels predicted unknown and invalid are always
reported. When the truth holds classes the model never trained on (leaves missing from the card's
``trained_classes``, recorded by ``hsiseg predict`` in ``args.json``), their pixels are positives and the
trained classes' pixels negatives, and every OOD score the prediction kept (``ood_score.npy``: the score in
use; ``probabilities.h5``: every calibrated score) gets AUROC, AUPR and FPR at 95% TPR.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.evaluation.boundary import boundary_scores
from hsiseg.evaluation.calibration_metrics import ECE_BINS, CalibrationBins, bin_edges, calibration_bins
from hsiseg.evaluation.scores import (
    boundary_class_means,
    boundary_image_means,
    class_scores,
    level_confusion,
    mistake_severity,
    ood_scores,
    summary_scores,
)
from hsiseg.io.atomic import atomic_path
from hsiseg.io.images import load_image
from hsiseg.metrics import to_level
from hsiseg.spec import DataSpec
from hsiseg.tree import LabelTree

DENSE_COVERAGE = 0.5  # boundary metrics only for images whose truth covers at least this share of the pixels
NO_CALIBRATION = "calibration: not available (predict with --probabilities)"
NO_BOUNDARY = "boundary metrics need dense truth"


@dataclass
class ImageBoundary:
    """NSD and ASD of one image at every tree level: ``levels[d] = (nsd, asd, in_truth)``, each (K_d,) over the
    depth-``d`` nodes (``tree.level_codes(d)``); ``in_truth``: the node is in the image's scored truth."""

    sample: str
    levels: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class Evaluation:
    tree: LabelTree
    prediction: np.ndarray  # (P,) leaf codes of all scored pixels
    truth: np.ndarray  # (P,) truth codes (-100 = none)
    per_image: list[dict[str, object]] = field(default_factory=list)
    unknown: np.ndarray | None = None  # (P,) bool: predicted unknown
    invalid: np.ndarray | None = None  # (P,) bool: no usable spectrum
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # OOD score name -> (P,) values
    trained_classes: list[str] | None = None  # leaves the model trained on (None: not recorded)
    confidence: np.ndarray | None = None  # (P,) top-label probability; None unless every frame kept probabilities
    frames_without_probabilities: int = 0
    nsd_tolerance: float | None = None  # None: boundary metrics not asked for
    boundary: list[ImageBoundary] = field(default_factory=list)  # images with dense truth
    sparse_images: int = 0  # images left out of the boundary metrics (truth below DENSE_COVERAGE)


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
    summary_path = predictions / "summary.json"
    if not summary_path.is_file():
        raise HsisegError(f"{predictions}: no summary.json; pass the output folder of hsiseg predict")
    frames = [row for row in json.loads(summary_path.read_text()) if row["status"] != "failed"]
    arguments = _read_json(predictions / "args.json")
    masks: dict[str, list[np.ndarray]] = {"unknown": [], "invalid": []}
    scores: dict[str, list[np.ndarray]] = {}
    by_cube = {spec.resolve(sample.cube).resolve(): sample_id for sample_id, sample in spec.samples.items()}
    allowed = set(spec.split(split)) if split else set(spec.samples)
    predicted, truths, per_image = [], [], []
    confidences: list[np.ndarray] = []
    boundaries: list[ImageBoundary] = []
    without_probabilities = sparse = 0
    for row in frames:
        sample_id = by_cube.get(Path(row["source"]).resolve())
        if sample_id is None or sample_id not in allowed:
            continue
        labels_path = predictions / row["frame"] / "labels.npy"
        if not labels_path.is_file():
            raise HsisegError(f"{labels_path}: missing; rerun hsiseg predict --continue")
        labels = np.load(labels_path).astype(np.int64)
        truth = (
            spec.read_truth(sample_id, labels.shape)
            if against == "truth"
            else spec.read_annotation(sample_id, labels.shape)
        )
        if truth is None:
            raise HsisegError(f"sample {sample_id} has no dense truth in the spec; use --against annotations")
        if truth.shape != labels.shape:
            raise HsisegError(f"sample {sample_id}: prediction {labels.shape} and truth {truth.shape} differ in shape")
        keep = truth != -100
        predicted.append(labels[keep])
        truths.append(truth[keep].astype(np.int64))
        frame = predictions / row["frame"]
        for name in masks:
            masks[name].append(_read_mask(frame / f"{name}.png", labels.shape)[keep])
        for name, values in _read_scores(frame, arguments.get("ood_score_used")).items():
            scores.setdefault(name, []).append(values[keep])
        confidence = _read_confidence(frame / "probabilities.h5", labels.shape, spec.tree.num_leaves)
        if confidence is None:
            without_probabilities += 1
        else:
            confidences.append(confidence[keep])
        confusion, _ = level_confusion(labels[keep], truth[keep].astype(np.int64), spec.tree, spec.tree.depth)
        record: dict[str, object] = {
            "sample": sample_id,
            "subject": spec.samples[sample_id].subject,
            "pixels": int(keep.sum()),
            **summary_scores(confusion),
        }
        if nsd_tolerance is not None:
            record["nsd"] = record["asd"] = float("nan")
            if keep.mean() >= DENSE_COVERAGE:
                image = image_boundary(sample_id, labels, truth.astype(np.int64), spec.tree, nsd_tolerance)
                boundaries.append(image)
                nsd, asd, in_truth = image.levels[spec.tree.depth]
                record["nsd"], record["asd"], _ = boundary_image_means(nsd, asd, in_truth)
            else:
                sparse += 1
        per_image.append(record)
    if not predicted:
        raise HsisegError(f"{predictions}: no predicted frame matches a sample of {spec.path} (split {split or 'all'})")
    complete = {name: np.concatenate(parts) for name, parts in scores.items() if len(parts) == len(predicted)}
    return Evaluation(
        spec.tree, np.concatenate(predicted), np.concatenate(truths), per_image,
        np.concatenate(masks["unknown"]), np.concatenate(masks["invalid"]), complete,
        arguments.get("trained_classes"),
        np.concatenate(confidences) if not without_probabilities else None, without_probabilities,
        nsd_tolerance, boundaries, sparse,
    )  # fmt: skip


def image_boundary(
    sample: str, labels: np.ndarray, truth: np.ndarray, tree: LabelTree, tolerance: float
) -> ImageBoundary:
    """NSD and ASD of one image's (H, W) leaf codes against its (H, W) truth codes at every tree level, on the
    pixels whose truth is usable at that level (partial labels only where they are coarse enough)."""
    levels = {}
    for depth in range(1, tree.depth + 1):
        usable = _truth_at(truth, tree, depth)
        region = (usable >= 0) & (usable < tree.num_leaves) & (labels >= 0)
        codes = np.asarray(tree.level_codes(depth), dtype=np.int64)
        truth_level = to_level(np.where(region, usable, -1), tree, depth)
        prediction_level = to_level(labels, tree, depth)
        nsd, asd = boundary_scores(prediction_level, truth_level, codes, tolerance, region)
        levels[depth] = (nsd, asd, np.isin(codes, truth_level[region]))
    return ImageBoundary(sample, levels)


def _read_confidence(path: Path, shape: tuple[int, ...], classes: int) -> np.ndarray | None:
    """(H, W) float32 top-label probability from a frame's ``probabilities.h5`` (None when it has none)."""
    if not path.is_file():
        return None
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            if "probabilities" not in handle:
                return None
            probabilities = handle["probabilities"][()]
    except OSError as error:
        raise HsisegError(f"{path}: unreadable ({error}); rerun hsiseg predict --probabilities --overwrite") from None
    if probabilities.shape != (classes, *shape):
        raise HsisegError(f"{path}: probabilities of shape {probabilities.shape}, expected {(classes, *shape)}")
    return probabilities.max(0).astype(np.float32)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _read_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A saved 0/255 mask PNG as bool (all False when the frame has none: older outputs)."""
    if not path.is_file():
        return np.zeros(shape, dtype=bool)
    mask = load_image(path) > 0  # an unreadable file is one clear error
    if mask.shape != shape:
        raise HsisegError(f"{path}: shape {mask.shape} differs from the frame's labels {shape}")
    return mask


def _read_scores(frame: Path, used: str | None) -> dict[str, np.ndarray]:
    """Every OOD score map a frame kept: ``probabilities.h5`` (``scores/<name>``), else ``ood_score.npy``."""
    probabilities = frame / "probabilities.h5"
    if probabilities.is_file():
        import h5py

        with h5py.File(probabilities, "r") as handle:
            if "scores" in handle:
                return {name: handle["scores"][name][()] for name in handle["scores"]}
    score = frame / "ood_score.npy"
    if used and score.is_file():
        return {used: np.load(score, allow_pickle=False)}
    return {}


def unknown_tissue(evaluation: Evaluation) -> dict[str, object]:
    """Shares of scored pixels predicted unknown and invalid; with classes the model never trained on in the
    truth, AUROC / AUPR / FPR@95%TPR of every kept OOD score (held-out classes = positives)."""
    tree, truth = evaluation.tree, evaluation.truth
    result: dict[str, object] = {
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


def write_report(evaluation: Evaluation, output: Path) -> dict[str, object]:
    """Write the report files (see module docstring); returns the summary numbers per level, ``calibration``
    and ``boundary``."""
    tree, prediction, truth = evaluation.tree, evaluation.prediction, evaluation.truth
    output.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {}
    lines = [f"# Evaluation ({truth.size} pixels with truth, {len(evaluation.per_image)} images)\n"]
    boundary_note = _boundary_note(evaluation)
    tolerance = evaluation.nsd_tolerance
    summary["boundary"] = {
        "nsd_tolerance_px": tolerance, "images": len(evaluation.boundary), "sparse_images": evaluation.sparse_images,
        "note": boundary_note,
    }  # fmt: skip
    nsd_title = f"NSD ({tolerance:g} px)" if tolerance is not None else "NSD"
    if boundary_note:
        lines += [f"{boundary_note}\n"]
    for depth in range(1, tree.depth + 1):
        confusion, names = level_confusion(prediction, _truth_at(truth, tree, depth), tree, depth)
        scores = class_scores(confusion)
        boundary = _level_boundary(evaluation, depth, len(names))
        numbers = {**summary_scores(confusion), **boundary["level"]}
        summary[f"level_{depth}"] = numbers
        lines += [
            f"\n## Level {depth}\n",
            "| accuracy | balanced accuracy | mean Dice | mean IoU | "
            f"mean {nsd_title} | mean ASD (px) | missed (ASD inf) |",
            "|---|---|---|---|---|---|---|",
        ]
        keys = ("accuracy", "balanced_accuracy", "mean_dice", "mean_iou", "mean_nsd", "mean_asd")
        values = [numbers[k] for k in keys]
        missed = "-" if numbers["asd_inf"] is None else str(numbers["asd_inf"])
        lines += ["| " + " | ".join([_fmt(v) for v in values] + [missed]) + " |\n"]
        lines += [
            f"| class | pixels | Dice | IoU | precision | recall | {nsd_title} | ASD (px) | ASD inf (images) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        rows = []
        for index, name in enumerate(names):
            row = [name, int(confusion[index].sum())] + [
                scores[k][index] for k in ("dice", "iou", "precision", "recall")
            ] + [boundary["classes"]["nsd"][index], boundary["classes"]["asd"][index]]  # fmt: skip
            infinite = boundary["classes"]["asd_inf"][index]
            rows.append(row + [infinite])
            cells = [name, str(row[1])] + [_fmt(v) for v in row[2:]] + ["-" if infinite < 0 else str(infinite)]
            lines.append("| " + " | ".join(cells) + " |")
        header = ["class", "pixels", "dice", "iou", "precision", "recall", "nsd", "asd", "asd_inf_images"]
        _write_csv(output / f"classes_level{depth}.csv", header, [r[:-1] + [r[-1] if r[-1] >= 0 else ""] for r in rows])
        _plot_confusion(output / f"confusion_level{depth}.png", confusion, names, tree, depth)
        _plot_dice(output / f"dice_level{depth}.png", scores["dice"], names, f"level {depth}")
    summary["calibration"] = calibration = _calibration(evaluation, output)
    lines += _calibration_lines(calibration)
    leaf_truth = truth < tree.num_leaves
    severity = mistake_severity(prediction[leaf_truth], truth[leaf_truth], tree)
    summary["severity"] = severity
    lines += ["\n## Mistake severity (tree distance between prediction and truth)\n"]
    mean, errors = severity["mean_distance"], severity["mean_distance_of_errors"]
    lines += [f"mean over pixels: {mean:.3f}; over errors only: {errors:.3f}\n"]
    lines += ["| distance | pixels |", "|---|---|"] + [f"| {d} | {n} |" for d, n in severity["histogram"].items()]
    ood = unknown_tissue(evaluation)
    summary["unknown_tissue"] = ood
    lines += _unknown_tissue_lines(ood)
    with_boundary = tolerance is not None
    extra = f" | leaf {nsd_title} | leaf ASD (px)" if with_boundary else ""
    lines += ["\n## Per image\n", f"| sample | subject | pixels | accuracy | mean Dice{extra} |",
              "|---|---|---|---|---|" + ("---|---|" if with_boundary else "")]  # fmt: skip
    for r in evaluation.per_image:
        cells = [str(r["sample"]), str(r["subject"]), str(r["pixels"]), f"{r['accuracy']:.3f}", f"{r['mean_dice']:.3f}"]
        if with_boundary:
            cells += [_fmt(float(r["nsd"])), _fmt(float(r["asd"]))]
        lines.append("| " + " | ".join(cells) + " |")
    subjects = sorted({str(r["subject"]) for r in evaluation.per_image})
    lines += [
        "\n## Per subject (mean of its images)\n",
        "| subject | images | accuracy | mean Dice |",
        "|---|---|---|---|",
    ]
    for subject in subjects:
        rows = [r for r in evaluation.per_image if r["subject"] == subject]
        accuracy, dice = np.mean([r["accuracy"] for r in rows]), np.nanmean([r["mean_dice"] for r in rows])
        lines.append(f"| {subject} | {len(rows)} | {accuracy:.3f} | {dice:.3f} |")
    _write_csv(
        output / "per_image.csv", list(evaluation.per_image[0]), [list(r.values()) for r in evaluation.per_image]
    )
    with atomic_path(output / "report.md") as temporary:
        temporary.write_text("\n".join(lines) + "\n")
    with atomic_path(output / "summary.json") as temporary:
        temporary.write_text(json.dumps(summary, indent=2))
    return summary


def _boundary_note(evaluation: Evaluation) -> str | None:
    """Why the report has no boundary metrics (None when it has them)."""
    if evaluation.nsd_tolerance is None:
        return "boundary metrics: not computed"
    if not evaluation.boundary:
        return f"{NO_BOUNDARY} (no image's truth covers {DENSE_COVERAGE:.0%} of its pixels; use --against truth)"
    if evaluation.sparse_images:
        return (f"boundary metrics over {len(evaluation.boundary)} images; {evaluation.sparse_images} with truth on "
                f"under {DENSE_COVERAGE:.0%} of their pixels left out ({NO_BOUNDARY})")  # fmt: skip
    return None


def _level_boundary(evaluation: Evaluation, depth: int, classes: int) -> dict[str, dict]:
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


def _calibration(evaluation: Evaluation, output: Path) -> dict[str, object]:
    """ECE over scored pixels with a leaf truth, ``reliability.png`` and ``calibration_bins.csv``; or why not."""
    if evaluation.confidence is None:
        return {"available": False, "note": NO_CALIBRATION,
                "frames_without_probabilities": evaluation.frames_without_probabilities}  # fmt: skip
    tree, truth = evaluation.tree, evaluation.truth
    leaf = (truth >= 0) & (truth < tree.num_leaves)
    bins = calibration_bins(evaluation.confidence[leaf], evaluation.prediction[leaf] == truth[leaf], ECE_BINS)
    edges = bins.edges
    _write_csv(
        output / "calibration_bins.csv", ["lower", "upper", "pixels", "mean_confidence", "accuracy"],
        [[f"{edges[b]:.6f}", f"{edges[b + 1]:.6f}", int(bins.counts[b]), bins.mean_confidence[b], bins.accuracy[b]]
         for b in range(bins.bins)],
    )  # fmt: skip
    _plot_reliability(output / "reliability.png", bins)
    return {
        "available": True, "ece": bins.ece, "bins": bins.bins, "pixels": int(bins.counts.sum()),
        "counts": bins.counts.tolist(), "mean_confidence": bins.mean_confidence.tolist(),
        "accuracy": bins.accuracy.tolist(),
    }  # fmt: skip


def _calibration_lines(calibration: dict[str, object]) -> list[str]:
    lines = ["\n## Calibration (top label)\n"]
    if not calibration["available"]:
        missing = calibration["frames_without_probabilities"]
        return lines + [f"{NO_CALIBRATION}; {missing} frame(s) have no probabilities.h5\n"]
    lines += [
        f"expected calibration error (ECE, {calibration['bins']} equal-width confidence bins, confidence = largest "
        f"class probability, correct = argmax is the truth leaf): **{_fmt(calibration['ece'])}** over "
        f"{calibration['pixels']} pixels with a leaf truth\n",
        "![reliability diagram](reliability.png)\n",
        "| confidence bin | pixels | mean confidence | accuracy |",
        "|---|---|---|---|",
    ]
    edges = bin_edges(int(calibration["bins"]))
    confidence, accuracy = calibration["mean_confidence"], calibration["accuracy"]
    for b, count in enumerate(calibration["counts"]):
        if count:
            interval = f"({edges[b]:.3f}, {edges[b + 1]:.3f}]"
            lines.append(f"| {interval} | {count} | {_fmt(confidence[b])} | {_fmt(accuracy[b])} |")
    return lines


def _unknown_tissue_lines(ood: dict[str, object]) -> list[str]:
    lines = ["\n## Unknown tissue\n", f"scored pixels predicted unknown: {_fmt(ood['unknown_share'])}; invalid "
             f"(no usable spectrum): {_fmt(ood['invalid_share'])}\n"]  # fmt: skip
    if ood.get("held_out_classes"):
        lines += [f"classes in the truth that the model never trained on: {', '.join(ood['held_out_classes'])}\n"]
    if "unknown_caught" in ood:
        lines += [f"at the threshold used: {_fmt(ood['unknown_caught'])} of their pixels flagged unknown, "
                  f"{_fmt(ood['known_flagged'])} of the trained classes' pixels\n"]  # fmt: skip
    if ood.get("scores"):
        lines += ["| OOD score | AUROC | AUPR | FPR at 95% TPR |", "|---|---|---|---|"]
        lines += [f"| {name} | {_fmt(v['auroc'])} | {_fmt(v['aupr'])} | {_fmt(v['fpr_at_95_tpr'])} |"
                  for name, v in ood["scores"].items()]  # fmt: skip
    return lines


def _truth_at(truth: np.ndarray, tree: LabelTree, depth: int) -> np.ndarray:
    """Truth codes usable at ``depth``: leaves as they are; partial labels only where they are at least that
    coarse (their depth >= ``depth`` means they name the depth-``depth`` ancestor), else dropped (-100)."""
    out = truth.copy()
    partial = truth >= tree.num_leaves
    for code in np.unique(truth[partial]):
        node = tree.node(int(code))
        if node.depth >= depth:
            leaf = tree.leaf_index(tree.leaves_of(node.name)[0])  # any leaf under it has the same ancestor
            out[truth == code] = leaf
        else:
            out[truth == code] = -100
    return out


def _fmt(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.3f}"


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    with atomic_path(path) as temporary:
        temporary.write_text(buffer.getvalue())


def _plot_confusion(path: Path, confusion: np.ndarray, names: list[str], tree: LabelTree, depth: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    size = max(4.0, 0.35 * len(names) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    shown = axis.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axis.set_yticks(range(len(names)), names, fontsize=7)
    axis.set(xlabel="prediction", ylabel="truth", title=f"confusion (row-normalised), level {depth}")
    families = [tree.path(name)[0] for name in names]
    for index in range(1, len(names)):
        if families[index] != families[index - 1]:  # family boundaries of the tree
            axis.axhline(index - 0.5, color="black", linewidth=1)
            axis.axvline(index - 0.5, color="black", linewidth=1)
    figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)


def _plot_dice(path: Path, dice: np.ndarray, names: list[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(max(5.0, 0.4 * len(names) + 2), 3.5))
    axis.bar(range(len(names)), np.nan_to_num(dice), color="#4c72b0")
    axis.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axis.set(ylim=(0, 1), ylabel="Dice", title=f"per-class Dice, {title}")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)


def _plot_reliability(path: Path, bins: CalibrationBins) -> None:
    """Reliability diagram: accuracy per confidence bin (bars as wide as the bins) against the diagonal, the gap
    to each bin's mean confidence, and the pixels per bin in a small panel below (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges, width = bins.edges[:-1], 1.0 / bins.bins
    filled = bins.counts > 0
    accuracy, confidence = np.nan_to_num(bins.accuracy), np.nan_to_num(bins.mean_confidence)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    style = {"width": width, "align": "edge", "linewidth": 0.6}
    top.bar(edges[filled], accuracy[filled], color="#4c72b0", edgecolor="black", label="accuracy", **style)
    gap = (confidence - accuracy)[filled]
    top.bar(edges[filled], gap, bottom=accuracy[filled], color="#c44e52", alpha=0.35, edgecolor="#c44e52",
            label="gap to mean confidence", **style)  # fmt: skip
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfectly calibrated")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=f"reliability, ECE {bins.ece:.3f}")
    top.legend(loc="upper left", fontsize=7)
    bottom.bar(edges, bins.counts, color="#8c8c8c", edgecolor="black", **style)
    if filled.any():
        bottom.set_yscale("log")
    bottom.set(xlabel="confidence (largest class probability)", ylabel="pixels")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
