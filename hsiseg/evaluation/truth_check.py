"""Predictions of a data-spec split against its dense truth: one score and truth | prediction panels.

Used by ``hsiseg demo`` to show, on the held-out surgery, how good the trained model is where every pixel
has truth (the scribbles it trained on cover a few percent of the training surgeries only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hsiseg.dataset.spec import DataSpec
from hsiseg.evaluation.report import collect
from hsiseg.evaluation.scores import level_confusion, summary_scores
from hsiseg.render.overlay import node_colours, save_panel

UNLABELLED_COLOUR = np.array([0.0, 0.0, 0.0])


def dense_truth_scores(predictions: Path, spec: DataSpec, split: str) -> dict[str, float]:
    """Leaf-level accuracy, balanced accuracy, mean Dice and IoU of every predicted frame of ``split`` against
    the spec's dense truth (pixels with truth only)."""
    evaluation = collect(predictions, spec, split, "truth")
    leaf = evaluation.truth < spec.tree.num_leaves
    confusion, _ = level_confusion(evaluation.prediction[leaf], evaluation.truth[leaf], spec.tree, spec.tree.depth)
    return {**summary_scores(confusion), "pixels": int(leaf.sum())}


def write_truth_panels(predictions: Path, spec: DataSpec, frames: dict[str, str]) -> list[Path]:
    """``<frame>/truth_vs_prediction.png`` for each ``frame -> sample id``: truth | prediction | legend, in the
    tree's colours (black: no truth). Returns the written paths."""
    colours = node_colours(spec.tree)
    written = []
    for frame, sample_id in frames.items():
        labels = np.load(predictions / frame / "labels.npy").astype(np.int64)
        truth = spec.read_truth(sample_id, labels.shape)
        if truth is None:
            continue
        truth_image = np.where((truth >= 0)[..., None], colours[np.clip(truth, 0, None)], UNLABELLED_COLOUR)
        predicted_image = colours[np.clip(labels, 0, None)]
        path = predictions / frame / "truth_vs_prediction.png"
        save_panel(
            path, _to_uint8(truth_image), _to_uint8(predicted_image), spec.tree, labels, colours,
            title="prediction", left_title="dense truth", opacity=None,
        )  # fmt: skip
        written.append(path)
    return written


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
