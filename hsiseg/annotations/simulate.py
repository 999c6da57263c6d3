"""Simulated scribbles: short strokes drawn inside class regions of a dense truth map (reproducible).

Used by the synthetic demo scenes and to turn fully labelled benchmarks (Indian Pines) into the sparse,
scribble-annotated setting hsiseg is for.
"""

from __future__ import annotations

import numpy as np

from hsiseg.annotations.readers import UNLABELLED

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


def simulate_scribbles(
    truth: np.ndarray, fraction: float, stroke_length: int = 8, seed: int = 0, min_strokes_per_class: int = 1
) -> np.ndarray:
    """Scribbles (H, W) int32 covering about ``fraction`` of the labelled pixels of ``truth`` (H, W).

    Every class present gets at least ``min_strokes_per_class`` strokes; further strokes start at random
    labelled pixels (so classes are scribbled in proportion to their area) until the budget is spent.
    """
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

    for code in np.unique(truth[truth != UNLABELLED]):
        members = np.argwhere(truth == code)
        for _ in range(min_strokes_per_class):
            used += draw(members[rng.integers(len(members))])
    attempts = 0
    while used < budget and attempts < 100 * budget:
        used += draw(labelled[rng.integers(len(labelled))])
        attempts += 1
    return scribbles
