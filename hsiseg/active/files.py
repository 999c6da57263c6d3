"""``hsiseg suggest``: the suggestions of a trained model for the samples of a data spec, as files.

For each sample: ``OUT/<sample>.json`` (the ranked regions: rank, score, centre, pixel count, reasons, the two
most likely leaves, the labels a stroke there may carry, and the region's outline polygons in [x, y] pixels)
and ``OUT/<sample>.png`` (the image with the regions outlined and numbered by rank); ``OUT/suggestions.json``
lists every sample's file. Written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hsiseg.active.suggest import Suggestion, check_seed, outline, suggest
from hsiseg.dataset.spec import DataSpec
from hsiseg.errors import HsisegError
from hsiseg.io.atomic import atomic_path
from hsiseg.labels import UNLABELLED
from hsiseg.predict.inference import Predictor
from hsiseg.render import rgb


def suggest_for_spec(model: str | Path, spec_path: str | Path, output: str | Path, sample_ids: list[str] | None = None,
                     count: int = 10, strategy: str = "mix", seed: int = 0,
                     on_sample: Callable[[str], None] | None = None) -> list[Path]:  # fmt: skip
    """Suggestions for ``sample_ids`` (default: every sample of the spec); the per-sample JSON files."""
    check_seed(seed)
    spec = DataSpec.from_file(spec_path)
    missing = [sample_id for sample_id in sample_ids or () if sample_id not in spec.samples]
    if missing:
        raise HsisegError(f"{spec_path}: no sample {missing[0]!r}; its samples are {', '.join(list(spec.samples)[:5])}"
                          f"{', ...' if len(spec.samples) > 5 else ''}")  # fmt: skip
    predictor = Predictor.from_checkpoint(model)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for sample_id in sample_ids or list(spec.samples):
        cube = spec.read_cube(sample_id)
        prepared = predictor.prepare(cube)
        prediction = predictor.predict(cube, prepared)
        scribbles = spec.read_annotation(sample_id) if spec.samples[sample_id].annotations else None
        if scribbles is None:
            scribbles = np.full(prediction.labels.shape, UNLABELLED, dtype=np.int32)
        found = suggest(prediction, scribbles, predictor.tree, count, strategy, seed, prepared.image.numpy())
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in sample_id)
        written.append(_write_json(output / f"{safe}.json", sample_id, strategy, found))
        save_picture(output / f"{safe}.png", rgb(cube.data, cube.wavelengths), found)
        if on_sample is not None:
            on_sample(sample_id)
    index = {"model": str(model), "spec": str(spec_path), "strategy": strategy, "files": [p.name for p in written]}
    with atomic_path(output / "suggestions.json") as temporary:
        temporary.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return written


def _write_json(path: Path, sample_id: str, strategy: str, found: list[Suggestion]) -> Path:
    document = {"sample": sample_id, "strategy": strategy, "suggestions": [s.as_json() for s in found]}
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def save_picture(path: Path, image: np.ndarray, found: list[Suggestion]) -> None:
    """The (H, W, 3) uint8 image with every suggestion outlined and numbered by rank, as PNG (atomic)."""
    from matplotlib.figure import Figure

    height, width = image.shape[:2]
    scale = max(1.0, 640 / max(height, width))
    figure = Figure(figsize=(width * scale / 100, height * scale / 100), dpi=100)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(image, interpolation="nearest")
    for suggestion in found:
        for polygon in outline(suggestion.mask):
            points = np.asarray(polygon)
            axes.plot(points[:, 0], points[:, 1], color="yellow", linewidth=1.5)
        x, y = suggestion.centre
        axes.text(x, y, str(suggestion.rank), color="black", fontsize=9, ha="center", va="center",
                  bbox={"boxstyle": "circle,pad=0.2", "facecolor": "yellow", "edgecolor": "none"})  # fmt: skip
    axes.set_xlim(-0.5, width - 0.5)
    axes.set_ylim(height - 0.5, -0.5)
    axes.axis("off")
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
