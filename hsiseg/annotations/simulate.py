"""Simulated scribbles: short strokes drawn inside class regions of a dense truth map (reproducible).

Used by the synthetic demo scenes and to turn fully labelled benchmarks (Indian Pines) into the sparse,
scribble-annotated setting hsiseg is for.

:func:`write_simulated_scribbles` (``hsiseg scribbles TRUTH -o OUT``) does it for a label image file. Value
conventions: the truth is an integer label image (PNG, TIFF or NPY) whose ``ignore_value`` (default 0) marks
unlabelled pixels; both outputs keep the truth's own values and use the same ``ignore_value`` for unlabelled.
The scribbles hold a truth value on each scribbled pixel; the held-out truth holds it on every other labelled
pixel. The two are disjoint and together give back the truth, so a model trained on the scribbles is scored on
pixels it never saw. In memory (label maps of :mod:`hsiseg.annotations`), unlabelled is
:data:`hsiseg.labels.UNLABELLED` (-100).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hsiseg.annotations.readers import UNLABELLED, read_label_values
from hsiseg.annotations.writers import write_label_values
from hsiseg.errors import HsisegError, OutputExistsError

STEPS = np.array([(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)])


def random_walk_stroke(region: np.ndarray, start: tuple[int, int], length: int, rng: np.random.Generator) -> np.ndarray:
    """Pixels (K, 2) of a stroke: a random walk with momentum from ``start`` that stays inside ``region`` (H, W)."""
    path = [tuple(start)]
    visited = {tuple(start)}
    direction = rng.normal(size=2)
    for _ in range(length - 1):
        direction = direction / (np.linalg.norm(direction) + 1e-9) + 0.6 * rng.normal(size=2)
        for step in STEPS[np.argsort(-(STEPS @ direction))]:  # best-aligned step that stays inside
            row, column = path[-1][0] + step[0], path[-1][1] + step[1]
            inside = 0 <= row < region.shape[0] and 0 <= column < region.shape[1] and region[row, column]
            if inside and (row, column) not in visited:
                path.append((row, column))
                visited.add((row, column))
                direction = step.astype(float)
                break
        else:
            break  # boxed in
    return np.array(path)


PLACEMENTS = ("area", "class")


def simulate_scribbles(
    truth: np.ndarray,
    fraction: float,
    stroke_length: int = 8,
    seed: int = 0,
    min_strokes_per_class: int = 1,
    placement: str = "area",
) -> np.ndarray:
    """Scribbles (H, W) int32 covering about ``fraction`` of the labelled pixels of ``truth`` (H, W).

    Every class present gets at least ``min_strokes_per_class`` strokes; further strokes start, until the budget
    is spent, at random labelled pixels (``placement="area"``: classes scribbled in proportion to their area) or
    at a random pixel of each class in turn (``"class"``: every class gets about as many strokes, as an
    annotator who draws each tissue a few times would).
    """
    if placement not in PLACEMENTS:
        raise HsisegError(f"scribbles: placement must be one of {PLACEMENTS}, got {placement!r}")
    rng = np.random.default_rng(seed)
    scribbles = np.full(truth.shape, UNLABELLED, dtype=np.int32)
    labelled = np.argwhere(truth != UNLABELLED)
    if not len(labelled):
        return scribbles
    budget = max(1, int(round(fraction * len(labelled))))
    used = 0

    def draw(start: np.ndarray) -> int:
        code = truth[tuple(start)]
        stroke = random_walk_stroke(truth == code, tuple(start), stroke_length, rng)
        fresh = scribbles[stroke[:, 0], stroke[:, 1]] == UNLABELLED
        scribbles[stroke[:, 0], stroke[:, 1]] = code
        return int(fresh.sum())

    members = [np.argwhere(truth == code) for code in np.unique(truth[truth != UNLABELLED])]
    for pixels in members:
        for _ in range(min_strokes_per_class):
            used += draw(pixels[rng.integers(len(pixels))])
    attempts = 0
    while used < budget and attempts < 100 * budget:
        pool = labelled if placement == "area" else members[attempts % len(members)]
        used += draw(pool[rng.integers(len(pool))])
        attempts += 1
    return scribbles


@dataclass
class ScribbleFiles:
    """What :func:`write_simulated_scribbles` wrote: the two files and their pixel counts."""

    scribbles: Path
    held_out: Path
    scribbled_pixels: int
    labelled_pixels: int


def write_simulated_scribbles(
    truth: str | Path,
    output: str | Path,
    fraction: float,
    held_out: str | Path | None = None,
    stroke_length: int = 8,
    seed: int = 0,
    min_strokes_per_class: int = 1,
    ignore_value: int = 0,
    overwrite: bool = False,
) -> ScribbleFiles:
    """Simulate scribbles on a dense label image and write them, and the held-out rest of the truth, atomically.

    Parameters
    ----------
    truth: dense integer label image (PNG, TIFF or NPY), (H, W); ``ignore_value`` marks unlabelled pixels.
    output: the scribble image to write (``.png`` or ``.npy``).
    fraction: share of the labelled pixels to scribble, in (0, 1).
    held_out: the held-out truth to write; default ``<output stem>_heldout<suffix>`` beside ``output``.
    stroke_length, seed, min_strokes_per_class: as in :func:`simulate_scribbles`.
    overwrite: replace existing output files (never the truth itself).

    Returns
    -------
    The written paths and the numbers of scribbled and labelled pixels. Value conventions: module docstring.
    """
    truth, output = Path(truth), Path(output)
    held_out = Path(held_out) if held_out is not None else output.with_name(f"{output.stem}_heldout{output.suffix}")
    check_scribble_options(fraction, stroke_length, min_strokes_per_class)
    check_outputs(truth, (output, held_out), overwrite)
    values = read_label_values(truth)
    labelled = values != ignore_value
    classes, indices = np.unique(values[labelled], return_inverse=True)
    dense = np.full(values.shape, UNLABELLED, dtype=np.int32)
    dense[labelled] = indices  # class indices 0..K-1: any file value, even -100, is safe to simulate on
    drawn = simulate_scribbles(dense, fraction, stroke_length, seed, min_strokes_per_class) != UNLABELLED
    dtype = values.dtype if values.dtype.kind != "b" else np.dtype(np.uint8)
    blank = np.full(values.shape, ignore_value, dtype=np.int64)
    scribbles = np.where(drawn, values, blank)
    rest = np.where(drawn, blank, values)
    for path, result in ((output, scribbles), (held_out, rest)):
        write_label_values(path, fitted(result, dtype))
    return ScribbleFiles(output, held_out, int(drawn.sum()), int(labelled.sum()))


def check_scribble_options(fraction: float, stroke_length: int, min_strokes_per_class: int) -> None:
    """One clear error for an option out of range, naming the parameter."""
    if not 0 < fraction < 1:
        raise HsisegError(
            f"scribbles: fraction must be between 0 and 1 (a share of the labelled pixels), got {fraction}"
        )
    if stroke_length < 1:
        raise HsisegError(f"scribbles: stroke_length must be at least 1 pixel, got {stroke_length}")
    if min_strokes_per_class < 0:
        raise HsisegError(f"scribbles: min_strokes_per_class must be 0 or more, got {min_strokes_per_class}")


def check_outputs(truth: Path, outputs: tuple[Path, ...], overwrite: bool) -> None:
    """Outputs are distinct, never the truth itself, and exist only when ``overwrite`` allows replacing them."""
    if len({path.resolve() for path in outputs}) != len(outputs):
        raise HsisegError(f"{outputs[0]}: the scribbles and the held-out truth need two different files")
    for path in outputs:
        if path.resolve() == truth.resolve() or (path.exists() and truth.exists() and path.samefile(truth)):
            raise HsisegError(f"{path}: is the truth file itself; write to another file (inputs are never replaced)")
        if path.suffix.lower() not in (".png", ".npy"):
            raise HsisegError(f"{path}: label images are written as .png or .npy")
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path} exists; choose another file or allow overwriting it")


def fitted(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` in ``dtype`` when they all fit it (the truth's own dtype), else in int64."""
    info = np.iinfo(dtype)
    fits = values.size == 0 or (info.min <= values.min() and values.max() <= info.max)
    return values.astype(dtype if fits else np.int64)
