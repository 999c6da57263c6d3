"""The lines of ``report.md``: one function per section, each a list of markdown lines (joined with newlines)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hsiseg.evaluation.calibration_metrics import bin_edges
from hsiseg.evaluation.gather import Evaluation
from hsiseg.evaluation.report_numbers import NO_CALIBRATION, LevelScores, class_rows

LEVEL_KEYS = ("accuracy", "balanced_accuracy", "mean_dice", "mean_iou", "mean_nsd", "mean_asd")


def fmt(value: float) -> str:
    """Three decimals, or "-" for NaN."""
    return "-" if np.isnan(value) else f"{value:.3f}"


def nsd_title(tolerance: float | None) -> str:
    """The NSD column title, with its tolerance in pixels when boundary metrics were asked for."""
    return f"NSD ({tolerance:g} px)" if tolerance is not None else "NSD"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def title_lines(evaluation: Evaluation, boundary_note: str | None) -> list[str]:
    """The title (scored pixels and images) and the boundary note, if any."""
    lines = [f"# Evaluation ({evaluation.truth.size} pixels with truth, {len(evaluation.per_image)} images)\n"]
    if boundary_note:
        lines += [f"{boundary_note}\n"]
    return lines


def level_lines(level: LevelScores, nsd: str) -> list[str]:
    """A tree level's section: its summary row, then one row per class (``nsd``: the NSD column title)."""
    numbers = level.numbers
    missed = "-" if numbers["asd_inf"] is None else str(numbers["asd_inf"])
    lines = [
        f"\n## Level {level.depth}\n",
        f"| accuracy | balanced accuracy | mean Dice | mean IoU | mean {nsd} | mean ASD (px) | missed (ASD inf) |",
        "|---|---|---|---|---|---|---|",
        _row([fmt(numbers[k]) for k in LEVEL_KEYS] + [missed]) + "\n",
        f"| class | pixels | Dice | IoU | precision | recall | {nsd} | ASD (px) | ASD inf (images) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in class_rows(level):
        infinite = "-" if row[-1] < 0 else str(row[-1])
        lines.append(_row([row[0], str(row[1])] + [fmt(v) for v in row[2:-1]] + [infinite]))
    return lines


def calibration_lines(calibration: dict[str, Any]) -> list[str]:
    """The calibration section: ECE, the reliability diagram and the non-empty bins; or why not available."""
    lines = ["\n## Calibration (top label)\n"]
    if not calibration["available"]:
        missing = calibration["frames_without_probabilities"]
        return lines + [f"{NO_CALIBRATION}; {missing} frame(s) have no probabilities.h5\n"]
    lines += [
        f"expected calibration error (ECE, {calibration['bins']} equal-width confidence bins, confidence = largest "
        f"class probability, correct = argmax is the truth leaf): **{fmt(calibration['ece'])}** over "
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
            lines.append(f"| {interval} | {count} | {fmt(confidence[b])} | {fmt(accuracy[b])} |")
    return lines


def severity_lines(severity: dict[str, Any]) -> list[str]:
    """The mistake-severity section: mean tree distances and their histogram."""
    mean, errors = severity["mean_distance"], severity["mean_distance_of_errors"]
    return [
        "\n## Mistake severity (tree distance between prediction and truth)\n",
        f"mean over pixels: {mean:.3f}; over errors only: {errors:.3f}\n",
        "| distance | pixels |",
        "|---|---|",
    ] + [f"| {d} | {n} |" for d, n in severity["histogram"].items()]


def unknown_tissue_lines(ood: dict[str, Any]) -> list[str]:
    """The unknown-tissue section: shares flagged unknown / invalid, held-out classes, OOD score table."""
    lines = ["\n## Unknown tissue\n", f"scored pixels predicted unknown: {fmt(ood['unknown_share'])}; invalid "
             f"(no usable spectrum): {fmt(ood['invalid_share'])}\n"]  # fmt: skip
    if ood.get("held_out_classes"):
        lines += [f"classes in the truth that the model never trained on: {', '.join(ood['held_out_classes'])}\n"]
    if "unknown_caught" in ood:
        lines += [f"at the threshold used: {fmt(ood['unknown_caught'])} of their pixels flagged unknown, "
                  f"{fmt(ood['known_flagged'])} of the trained classes' pixels\n"]  # fmt: skip
    if ood.get("scores"):
        lines += ["| OOD score | AUROC | AUPR | FPR at 95% TPR |", "|---|---|---|---|"]
        lines += [f"| {name} | {fmt(v['auroc'])} | {fmt(v['aupr'])} | {fmt(v['fpr_at_95_tpr'])} |"
                  for name, v in ood["scores"].items()]  # fmt: skip
    return lines


def per_image_lines(per_image: list[dict[str, Any]], tolerance: float | None) -> list[str]:
    """The per-image table; with boundary metrics asked for (``tolerance``), leaf NSD and ASD columns."""
    with_boundary = tolerance is not None
    extra = f" | leaf {nsd_title(tolerance)} | leaf ASD (px)" if with_boundary else ""
    lines = ["\n## Per image\n", f"| sample | subject | pixels | accuracy | mean Dice{extra} |",
             "|---|---|---|---|---|" + ("---|---|" if with_boundary else "")]  # fmt: skip
    for r in per_image:
        cells = [str(r["sample"]), str(r["subject"]), str(r["pixels"]), f"{r['accuracy']:.3f}", f"{r['mean_dice']:.3f}"]
        if with_boundary:
            cells += [fmt(float(r["nsd"])), fmt(float(r["asd"]))]
        lines.append(_row(cells))
    return lines


def per_subject_lines(means: list[tuple[str, int, float, float]]) -> list[str]:
    """The per-subject table from :func:`hsiseg.evaluation.report_numbers.subject_means`."""
    lines = [
        "\n## Per subject (mean of its images)\n",
        "| subject | images | accuracy | mean Dice |",
        "|---|---|---|---|",
    ]
    lines += [f"| {subject} | {images} | {accuracy:.3f} | {dice:.3f} |" for subject, images, accuracy, dice in means]
    return lines
