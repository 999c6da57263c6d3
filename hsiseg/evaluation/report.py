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

This module writes the files; the work is split by concern: :mod:`hsiseg.evaluation.gather` (:func:`collect`,
reading predictions and truth per image), :mod:`hsiseg.evaluation.report_numbers` (the numbers),
:mod:`hsiseg.evaluation.report_markdown` and :mod:`hsiseg.evaluation.report_tables` (``report.md``, the CSVs)
and :mod:`hsiseg.evaluation.report_plots` (the figures).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hsiseg.evaluation.gather import DENSE_COVERAGE, Evaluation, collect
from hsiseg.evaluation.image_boundary import ImageBoundary, image_boundary
from hsiseg.evaluation.level_truth import truth_at as _truth_at
from hsiseg.evaluation.report_markdown import (
    calibration_lines,
    level_lines,
    nsd_title,
    per_image_lines,
    per_subject_lines,
    severity_lines,
    title_lines,
    unknown_tissue_lines,
)
from hsiseg.evaluation.report_numbers import (
    NO_BOUNDARY,
    NO_CALIBRATION,
    boundary_note,
    boundary_summary,
    calibration_summary,
    leaf_calibration_bins,
    leaf_severity,
    level_scores,
    subject_means,
    unknown_tissue,
)
from hsiseg.evaluation.report_plots import plot_confusion, plot_dice, plot_reliability
from hsiseg.evaluation.report_tables import (
    write_calibration_table,
    write_class_table,
    write_per_image_table,
)
from hsiseg.io.atomic import atomic_path

__all__ = [
    "DENSE_COVERAGE",
    "NO_BOUNDARY",
    "NO_CALIBRATION",
    "Evaluation",
    "ImageBoundary",
    "_truth_at",
    "collect",
    "image_boundary",
    "unknown_tissue",
    "write_report",
]


def write_report(evaluation: Evaluation, output: Path) -> dict[str, Any]:
    """Write the report files (see module docstring); returns the summary numbers per level, ``calibration``
    and ``boundary``."""
    output.mkdir(parents=True, exist_ok=True)
    note = boundary_note(evaluation)
    summary: dict[str, Any] = {"boundary": boundary_summary(evaluation, note)}
    lines = title_lines(evaluation, note)
    lines += _write_levels(evaluation, output, summary)
    summary["calibration"] = calibration = _write_calibration(evaluation, output)
    lines += calibration_lines(calibration)
    summary["severity"] = severity = leaf_severity(evaluation)
    lines += severity_lines(severity)
    summary["unknown_tissue"] = ood = unknown_tissue(evaluation)
    lines += unknown_tissue_lines(ood)
    lines += per_image_lines(evaluation.per_image, evaluation.nsd_tolerance)
    lines += per_subject_lines(subject_means(evaluation.per_image))
    write_per_image_table(output / "per_image.csv", evaluation.per_image)
    _write_text(output / "report.md", "\n".join(lines) + "\n")
    _write_text(output / "summary.json", json.dumps(summary, indent=2))
    return summary


def _write_levels(evaluation: Evaluation, output: Path, summary: dict[str, Any]) -> list[str]:
    """Per tree level: its numbers into ``summary["level_<d>"]``, ``classes_level<d>.csv``,
    ``confusion_level<d>.png`` and ``dice_level<d>.png``; returns the levels' markdown sections."""
    tree, lines = evaluation.tree, []
    for depth in range(1, tree.depth + 1):
        level = level_scores(evaluation, depth)
        summary[f"level_{depth}"] = level.numbers
        lines += level_lines(level, nsd_title(evaluation.nsd_tolerance))
        write_class_table(output / f"classes_level{depth}.csv", level)
        plot_confusion(output / f"confusion_level{depth}.png", level.confusion, level.names, tree, depth)
        plot_dice(output / f"dice_level{depth}.png", level.classes["dice"], level.names, f"level {depth}")
    return lines


def _write_calibration(evaluation: Evaluation, output: Path) -> dict[str, Any]:
    """ECE over scored pixels with a leaf truth, ``calibration_bins.csv`` and ``reliability.png``; or why not.
    Returns the ``calibration`` entry of the summary."""
    bins = leaf_calibration_bins(evaluation)
    if bins is not None:
        write_calibration_table(output / "calibration_bins.csv", bins)
        plot_reliability(output / "reliability.png", bins)
    return calibration_summary(evaluation, bins)


def _write_text(path: Path, text: str) -> None:
    """``text`` into ``path``, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
