"""A simulated annotator for annotation-budget experiments: it draws strokes where it is told, and labels them
from a dense truth it may read only under the stroke it draws.

:class:`TruthOracle` keeps the truth behind a wall: it answers for given pixels and records every pixel it was
asked about (a test checks that nothing outside the strokes was read). The annotator starts from one stroke per
class (:func:`first_strokes`: it knows where each tissue is, as a clinician does; the only reading of the
truth outside a stroke, done before any round), then each round draws one stroke of ``length`` pixels inside
a suggested region (:func:`stroke_in`): from a random pixel of the region in a random direction, staying on the
tissue it started on and inside the region. A share of strokes (``coarse_share``) is labelled with the parent
node where the leaf has siblings, as an unsure clinician would.
"""

from __future__ import annotations

import numpy as np

from hsiseg.labels import UNLABELLED
from hsiseg.tree import LabelTree


class TruthOracle:
    """The dense truth (H, W) leaf codes (negative: no truth), readable pixel by pixel only."""

    def __init__(self, truth: np.ndarray) -> None:
        self._truth = truth
        self.asked = np.zeros(truth.shape, dtype=bool)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self._truth.shape[0]), int(self._truth.shape[1])

    def labels_at(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """The truth at the given pixels (recorded in :attr:`asked`)."""
        self.asked[rows, columns] = True
        return self._truth[rows, columns]

    def forget(self) -> None:
        """Clear :attr:`asked` (after the first strokes)."""
        self.asked[:] = False


def first_strokes(oracle: TruthOracle, length: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W) target codes: one stroke per class of the truth, each from a random pixel of the class."""
    rows, columns = np.indices(oracle.shape)
    truth = oracle.labels_at(rows.ravel(), columns.ravel()).reshape(oracle.shape)
    scribbles = np.full(oracle.shape, UNLABELLED, dtype=np.int32)
    for code in np.unique(truth[truth >= 0]):
        stroke = stroke_in(oracle, truth == code, length, rng)
        if stroke is not None:
            pixels, leaf = stroke
            scribbles[pixels] = leaf
    return scribbles


def stroke_in(oracle: TruthOracle, region: np.ndarray, length: int,
              rng: np.random.Generator) -> tuple[tuple[np.ndarray, np.ndarray], int] | None:  # fmt: skip
    """A stroke inside ``region`` ((H, W) bool): its pixels (rows, columns) and leaf; None where the start pixel
    has no truth. From a random pixel of the region along a random direction, both ways, one pixel at a time,
    until ``length`` pixels, the region's edge or another tissue: the truth is read at the stroke's pixels and
    at most the two pixels where the tissue changes (what an annotator sees at a boundary)."""
    inside = np.argwhere(region)
    if not len(inside):
        return None
    row, column = (int(v) for v in inside[rng.integers(len(inside))])
    leaf = int(oracle.labels_at(np.array([row]), np.array([column]))[0])
    if leaf < 0:
        return None
    angle = rng.uniform(0, np.pi)
    pixels = [(row, column)]
    for direction in (1, -1):
        for step in range(1, length):
            if len(pixels) >= length:
                break
            r = int(round(row + direction * step * np.sin(angle)))
            c = int(round(column + direction * step * np.cos(angle)))
            if (r, c) in pixels:
                continue
            if not (0 <= r < region.shape[0] and 0 <= c < region.shape[1]) or not region[r, c]:
                break
            if int(oracle.labels_at(np.array([r]), np.array([c]))[0]) != leaf:
                break
            pixels.append((r, c))
    rows, columns = (np.array(values) for values in zip(*pixels, strict=True))
    return (rows, columns), leaf


def coarse(leaf: int, tree: LabelTree, share: float, rng: np.random.Generator) -> int:
    """The leaf, or with probability ``share`` its parent where it has siblings (an unsure annotator)."""
    parent = tree.node(leaf).parent
    if parent is None or len(tree.node(parent).children) < 2 or rng.random() >= share:
        return leaf
    return parent
