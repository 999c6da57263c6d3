"""Per-frame outputs of batch prediction: one small writer each, registered by name, chosen by the options.

Each writer gets a :class:`FrameOutput` (the frame's prediction and what the writers share: its RGB image,
the labels with unknown and invalid marked, the palette, the options) and writes its files atomically into the
frame's folder. Adding an output is one function with :func:`frame_writer` here.

=================  =====================================================================  ===================
writer             files                                                                  when
=================  =====================================================================  ===================
``maps``           ``labels.png`` (indexed, code + 1; 0 unknown/invalid), ``labels.npy``  always
                   (raw leaf codes), ``unknown.png``, ``invalid.png``, ``ood_score.npy``
``areas``          ``areas.csv``: pixels, percent, mean confidence per class, unknown,    always
                   invalid
``panel``          ``overlay.png``, ``panel.png`` (image | overlay | legend)               always
``level``          ``labels_level<d>.png``, ``panel_level<d>.png``                         ``level``
``confident``      ``confident.npy/.png``, ``panel_confident.png`` (deepest node >= T)      ``confidence``
``probabilities``  ``probabilities.h5`` (float16 probabilities, every OOD score's map)      ``save_probabilities``
=================  =====================================================================  ===================
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from hsiseg.areas import area_name, column_code, count_areas
from hsiseg.io.atomic import atomic_path
from hsiseg.labels import INVALID, UNKNOWN
from hsiseg.predict.inference import Prediction, confident_nodes, level_labels
from hsiseg.predict.options import FrameFileOptions
from hsiseg.registry import Registry
from hsiseg.render import overlay, save_indexed_png, save_panel, save_png
from hsiseg.tree import LabelTree


@dataclass
class FrameOutput:
    """One predicted frame on its way to files. ``image``: (H, W, 3) uint8 RGB; ``options``: the run's
    :class:`~hsiseg.predict.options.FrameFileOptions`."""

    folder: Path
    name: str
    prediction: Prediction
    tree: LabelTree
    colours: np.ndarray
    options: FrameFileOptions
    image: np.ndarray

    @cached_property
    def labels(self) -> np.ndarray:
        """(H, W) leaf codes with UNKNOWN and INVALID."""
        return self.prediction.labels_with_unknown()

    @cached_property
    def overlaid(self) -> np.ndarray:
        return overlay(self.image, self.labels, self.colours, self.options.opacity, self.options.contours)

    @property
    def swatch_opacity(self) -> float | None:
        """How the legend swatches blend: like the overlay, or plain colours for opaque outlines."""
        return None if self.options.contours else self.options.opacity


FrameWriter = Callable[[FrameOutput], None]
FRAME_WRITERS: Registry[FrameWriter] = Registry("frame writer")


def frame_writer(
    name: str, wanted: Callable[[FrameFileOptions], bool] = lambda options: True
) -> Callable[[FrameWriter], FrameWriter]:
    """Decorator: ``function(output)`` as the per-frame writer ``name``, run when ``wanted(options)``."""
    return FRAME_WRITERS.register(name, wanted=wanted)


def write_frame_outputs(output: FrameOutput) -> None:
    """Every writer the options ask for, in registration order."""
    for name, write in FRAME_WRITERS.items():
        if FRAME_WRITERS.meta(name)["wanted"](output.options):
            write(output)


def save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.save(handle, array)


@frame_writer("maps")
def write_maps(output: FrameOutput) -> None:
    prediction, folder = output.prediction, output.folder
    save_indexed_png(folder / "labels.png", output.labels, output.colours[: output.tree.num_leaves])
    save_npy(folder / "labels.npy", prediction.labels.astype(np.int16))  # raw codes; unknown.png says which
    save_png(folder / "unknown.png", (prediction.unknown * 255).astype(np.uint8))
    save_png(folder / "invalid.png", (prediction.invalid * 255).astype(np.uint8))
    save_npy(folder / "ood_score.npy", prediction.score.astype(np.float32))


@frame_writer("areas")
def write_areas(output: FrameOutput) -> None:
    labels, tree = output.labels, output.tree
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["class", "pixels", "percent", "mean_confidence"])
    counts = count_areas(labels, tree.num_leaves)  # one pass for all classes (hsiseg.areas)
    sums = count_areas(labels, tree.num_leaves, weights=output.prediction.confidence)
    for column, count in enumerate(counts):
        if count:
            name = area_name(tree, column_code(column))
            writer.writerow([name, int(count), f"{100 * count / labels.size:.3f}", f"{sums[column] / count:.4f}"])
    with atomic_path(output.folder / "areas.csv") as temporary:
        temporary.write_text(buffer.getvalue())


@frame_writer("panel")
def write_panel(output: FrameOutput) -> None:
    save_png(output.folder / "overlay.png", output.overlaid)
    save_panel(output.folder / "panel.png", output.image, output.overlaid, output.tree, output.labels,
               output.colours, title=output.name, opacity=output.swatch_opacity)  # fmt: skip


@frame_writer("level", wanted=lambda options: options.level is not None)
def write_level(output: FrameOutput) -> None:
    depth, options = output.options.level, output.options
    if depth is None:  # (only run when a level is asked for)
        return
    level = level_labels(output.labels, output.tree, depth)
    save_png(output.folder / f"labels_level{depth}.png", overlay(output.image, level, output.colours, 1.0))
    drawn = overlay(output.image, level, output.colours, options.opacity, options.contours)
    save_panel(output.folder / f"panel_level{depth}.png", output.image, drawn, output.tree, level, output.colours,
               f"{output.name}, level {depth}", opacity=output.swatch_opacity)  # fmt: skip


@frame_writer("confident", wanted=lambda options: options.confidence is not None)
def write_confident(output: FrameOutput) -> None:
    prediction, threshold = output.prediction, output.options.confidence
    if threshold is None:  # (only run when a threshold is asked for)
        return
    confident = confident_nodes(prediction.probabilities, output.tree, threshold)
    confident = np.where(prediction.unknown, UNKNOWN, confident)
    confident = np.where(prediction.invalid, INVALID, confident)
    save_npy(output.folder / "confident.npy", confident.astype(np.int16))
    drawn = overlay(output.image, confident, output.colours, output.options.opacity)
    save_png(output.folder / "confident.png", drawn)
    title = f"{output.name}, deepest node with probability >= {threshold:g}"
    save_panel(output.folder / "panel_confident.png", output.image, drawn, output.tree, confident, output.colours,
               title, opacity=output.options.opacity)  # fmt: skip


@frame_writer("probabilities", wanted=lambda options: options.save_probabilities)
def write_probabilities(output: FrameOutput) -> None:
    import h5py

    prediction = output.prediction
    with atomic_path(output.folder / "probabilities.h5") as temporary, h5py.File(temporary, "w") as handle:
        handle.create_dataset("probabilities", data=prediction.probabilities.astype(np.float16), compression="gzip")
        for score_name, values in prediction.scores.items():
            handle.create_dataset(f"scores/{score_name}", data=values.astype(np.float32), compression="gzip")
        handle.attrs["classes"] = json.dumps(list(output.tree.leaves))
