"""``hsiseg evaluate``: score a prediction folder against a data spec's truth, and write a report.

The prediction folder is the output of ``hsiseg predict`` (``summary.json`` says which cube each frame came
from; ``<frame>/labels.npy`` holds the raw leaf codes). Truth is the spec's dense truth where it exists
(``--against truth``) or its sparse annotations (``--against annotations``); only pixels with truth count.
Partial labels (internal nodes) in the truth are scored only at the tree levels where they are defined.

The report folder receives ``report.md`` (summary per tree level, per-class table, mistake severity, per
image and per subject means), ``classes_level<d>.csv``, ``per_image.csv``, ``confusion_level<d>.png``
(rows = truth, ordered by the tree, family boundaries drawn) and ``dice_level<d>.png`` (per-class bars).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.evaluation.scores import class_scores, level_confusion, mistake_severity, summary_scores
from hsiseg.io.atomic import atomic_path
from hsiseg.spec import DataSpec
from hsiseg.tree import LabelTree


@dataclass
class Evaluation:
    tree: LabelTree
    prediction: np.ndarray  # (P,) leaf codes of all scored pixels
    truth: np.ndarray  # (P,) truth codes (-100 = none)
    per_image: list[dict[str, object]] = field(default_factory=list)


def collect(predictions: Path, spec: DataSpec, split: str | None = None, against: str = "truth") -> Evaluation:
    """Read every predicted frame of ``predictions`` that belongs to a spec sample, with its truth."""
    summary_path = predictions / "summary.json"
    if not summary_path.is_file():
        raise HsisegError(f"{predictions}: no summary.json; pass the output folder of hsiseg predict")
    frames = [row for row in json.loads(summary_path.read_text()) if row["status"] != "failed"]
    by_cube = {spec.resolve(sample.cube).resolve(): sample_id for sample_id, sample in spec.samples.items()}
    allowed = set(spec.split(split)) if split else set(spec.samples)
    predicted, truths, per_image = [], [], []
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
        confusion, _ = level_confusion(labels[keep], truth[keep].astype(np.int64), spec.tree, spec.tree.depth)
        per_image.append(
            {
                "sample": sample_id,
                "subject": spec.samples[sample_id].subject,
                "pixels": int(keep.sum()),
                **summary_scores(confusion),
            }
        )
    if not predicted:
        raise HsisegError(f"{predictions}: no predicted frame matches a sample of {spec.path} (split {split or 'all'})")
    return Evaluation(spec.tree, np.concatenate(predicted), np.concatenate(truths), per_image)


def write_report(evaluation: Evaluation, output: Path) -> dict[str, object]:
    """Write the report files (see module docstring); returns the summary numbers per level."""
    tree, prediction, truth = evaluation.tree, evaluation.prediction, evaluation.truth
    output.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {}
    lines = [f"# Evaluation ({truth.size} pixels with truth, {len(evaluation.per_image)} images)\n"]
    for depth in range(1, tree.depth + 1):
        confusion, names = level_confusion(prediction, _truth_at(truth, tree, depth), tree, depth)
        scores = class_scores(confusion)
        numbers = summary_scores(confusion)
        summary[f"level_{depth}"] = numbers
        lines += [
            f"\n## Level {depth}\n",
            "| accuracy | balanced accuracy | mean Dice | mean IoU |",
            "|---|---|---|---|",
        ]
        values = [numbers[k] for k in ("accuracy", "balanced_accuracy", "mean_dice", "mean_iou")]
        lines += ["| " + " | ".join(f"{v:.3f}" for v in values) + " |\n"]
        lines += ["| class | pixels | Dice | IoU | precision | recall |", "|---|---|---|---|---|---|"]
        rows = []
        for index, name in enumerate(names):
            row = [name, int(confusion[index].sum())] + [
                scores[k][index] for k in ("dice", "iou", "precision", "recall")
            ]
            rows.append(row)
            lines.append("| " + " | ".join([name, str(row[1])] + [_fmt(v) for v in row[2:]]) + " |")
        _write_csv(
            output / f"classes_level{depth}.csv", ["class", "pixels", "dice", "iou", "precision", "recall"], rows
        )
        _plot_confusion(output / f"confusion_level{depth}.png", confusion, names, tree, depth)
        _plot_dice(output / f"dice_level{depth}.png", scores["dice"], names, f"level {depth}")
    leaf_truth = truth < tree.num_leaves
    severity = mistake_severity(prediction[leaf_truth], truth[leaf_truth], tree)
    summary["severity"] = severity
    lines += ["\n## Mistake severity (tree distance between prediction and truth)\n"]
    mean, errors = severity["mean_distance"], severity["mean_distance_of_errors"]
    lines += [f"mean over pixels: {mean:.3f}; over errors only: {errors:.3f}\n"]
    lines += ["| distance | pixels |", "|---|---|"] + [f"| {d} | {n} |" for d, n in severity["histogram"].items()]
    lines += ["\n## Per image\n", "| sample | subject | pixels | accuracy | mean Dice |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['sample']} | {r['subject']} | {r['pixels']} | {r['accuracy']:.3f} | {r['mean_dice']:.3f} |"
        for r in evaluation.per_image
    ]
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
