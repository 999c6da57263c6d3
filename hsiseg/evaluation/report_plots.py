"""The figures of an evaluation report: confusion matrices, per-class Dice bars, the reliability diagram."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from hsiseg.evaluation.calibration_metrics import CalibrationBins
from hsiseg.io.atomic import atomic_path
from hsiseg.render.text import plot_text
from hsiseg.tree import LabelTree

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Figure, path: Path) -> None:
    """Lay out, write as a 100 dpi PNG (atomically) and close ``figure``."""
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    _pyplot().close(figure)


def plot_confusion(path: Path, confusion: np.ndarray, names: list[str], tree: LabelTree, depth: int) -> None:
    """A (K, K) confusion matrix, rows (truth) normalised, with lines between the tree's families."""
    plt = _pyplot()
    rows = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    size = max(4.0, 0.35 * len(names) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    shown = axis.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    shown_names = [plot_text(name) for name in names]
    axis.set_xticks(range(len(names)), shown_names, rotation=90, fontsize=7)
    axis.set_yticks(range(len(names)), shown_names, fontsize=7)
    axis.set(xlabel="prediction", ylabel="truth", title=f"confusion (row-normalised), level {depth}")
    families = [tree.path(name)[0] for name in names]
    for index in range(1, len(names)):
        if families[index] != families[index - 1]:  # family boundaries of the tree
            axis.axhline(index - 0.5, color="black", linewidth=1)
            axis.axvline(index - 0.5, color="black", linewidth=1)
    figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04)
    _save(figure, path)


def plot_dice(path: Path, dice: np.ndarray, names: list[str], title: str) -> None:
    """Bars of the (K,) per-class Dice (NaN drawn as 0)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(5.0, 0.4 * len(names) + 2), 3.5))
    axis.bar(range(len(names)), np.nan_to_num(dice), color="#4c72b0")
    axis.set_xticks(range(len(names)), [plot_text(name) for name in names], rotation=90, fontsize=7)
    axis.set(ylim=(0, 1), ylabel="Dice", title=plot_text(f"per-class Dice, {title}"))
    _save(figure, path)


def plot_reliability(path: Path, bins: CalibrationBins) -> None:
    """Reliability diagram: accuracy per confidence bin (bars as wide as the bins) against the diagonal, the gap
    to each bin's mean confidence, and the pixels per bin in a small panel below (log scale)."""
    plt = _pyplot()
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
    _save(figure, path)
