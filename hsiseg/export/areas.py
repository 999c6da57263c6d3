"""``areas``: the share of each class, unknown and invalid per frame, as ``areas.csv`` and ``areas.png``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from hsiseg.areas import area_name
from hsiseg.export.base import EXPORTERS
from hsiseg.export.maps import StreamMaps
from hsiseg.io.atomic import atomic_path
from hsiseg.labels import INVALID, UNKNOWN
from hsiseg.render.overlay import node_colours
from hsiseg.render.text import plot_text


@EXPORTERS.register("areas", files=("areas.csv", "areas.png"))
def write_areas(maps: StreamMaps, output: Path) -> Path:
    """``areas.csv``: frame, timestamp, then percent per class present in the run (names as in a frame's
    ``areas.csv``, :mod:`hsiseg.areas`); ``areas.png``: the same over time (seconds when the recording has time
    stamps, else frame index)."""
    codes = maps.present_codes()
    percent = 100 * maps.pixels / np.maximum(1, maps.pixels.sum(axis=1, keepdims=True))
    columns = [code - INVALID for code in codes]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["frame", "timestamp", *(area_name(maps.tree, code) for code in codes)])
    for frame, stamp, row in zip(maps.frames, maps.timestamps, percent[:, columns], strict=True):
        writer.writerow([int(frame), f"{stamp:.3f}" if np.isfinite(stamp) else "", *(f"{v:.3f}" for v in row)])
    with atomic_path(output / "areas.csv") as temporary:
        temporary.write_text(buffer.getvalue())
    _plot(maps, codes, percent[:, columns], output / "areas.png")
    return output / "areas.csv"


def _plot(maps: StreamMaps, codes: list[int], percent: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = bool(np.isfinite(maps.timestamps).all())
    x = maps.timestamps if timed else maps.frames
    colours = node_colours(maps.tree)
    palette = [(0.1, 0.1, 0.1) if c == UNKNOWN else (0.6, 0.6, 0.6) if c == INVALID else colours[c] for c in codes]
    figure, axes = plt.subplots(figsize=(10, 4))
    names = [plot_text(area_name(maps.tree, code, legend=True)) for code in codes]
    axes.stackplot(x, percent.T, colors=palette, labels=names, step="mid")
    axes.set(xlabel="time (s)" if timed else "frame", ylabel="share of pixels (%)", ylim=(0, 100),
             xlim=(x.min(), x.max()) if len(x) > 1 else None, title="tissue areas over the recording")  # fmt: skip
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
