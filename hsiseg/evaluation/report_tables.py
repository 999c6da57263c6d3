"""The CSV files of an evaluation report: per-class scores per level, calibration bins, per-image scores."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from hsiseg.evaluation.calibration_metrics import CalibrationBins
from hsiseg.evaluation.report_numbers import LevelScores, class_rows
from hsiseg.io.atomic import atomic_path

CLASS_HEADER = ["class", "pixels", "dice", "iou", "precision", "recall", "nsd", "asd", "asd_inf_images"]
CALIBRATION_HEADER = ["lower", "upper", "pixels", "mean_confidence", "accuracy"]


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    """``header`` then ``rows`` as CSV, written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    with atomic_path(path) as temporary:
        temporary.write_text(buffer.getvalue())


def write_class_table(path: Path, level: LevelScores) -> None:
    """``classes_level<d>.csv``: one row per class; ``asd_inf_images`` empty without dense truth."""
    rows = [row[:-1] + [row[-1] if row[-1] >= 0 else ""] for row in class_rows(level)]
    write_csv(path, CLASS_HEADER, rows)


def write_calibration_table(path: Path, bins: CalibrationBins) -> None:
    """``calibration_bins.csv``: per bin its edges, pixels, mean confidence and accuracy (NaN when empty)."""
    edges = bins.edges
    rows = [[f"{edges[b]:.6f}", f"{edges[b + 1]:.6f}", int(bins.counts[b]), bins.mean_confidence[b], bins.accuracy[b]]
            for b in range(bins.bins)]  # fmt: skip
    write_csv(path, CALIBRATION_HEADER, rows)


def write_per_image_table(path: Path, per_image: list[dict[str, Any]]) -> None:
    """``per_image.csv``: the per-image records, columns in the first record's order."""
    write_csv(path, list(per_image[0]), [list(r.values()) for r in per_image])
