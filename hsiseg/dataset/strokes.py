"""Validation that is not training data: hold out whole scribble strokes of an image.

When the training and validation splits share images (a single scene such as Indian Pines), validating on
the training scribbles fits checkpoint choice and the unknown-tissue threshold to training data. Instead, a
seeded share of each class's *strokes* (8-connected components of its annotated pixels) is held out: those
pixels are removed from the training target and form the validation target. A class with a single stroke
keeps it for training (it has nothing to spare); a class with n >= 2 strokes gives between 1 and n - 1.

Targets are (H, W) integer maps of tree codes, :data:`~hsiseg.annotations.UNLABELLED` (-100) for unlabelled.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from hsiseg.annotations import UNLABELLED

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Stroke:
    """One held-out stroke: its target code, pixel count and centre (row, column)."""

    code: int
    pixels: int
    row: float
    column: float


@dataclass
class StrokeSplit:
    """Training and validation targets of one image, (H, W) each, and the strokes moved to validation."""

    train: np.ndarray
    validation: np.ndarray
    held_out: list[Stroke]


def stroke_counts(target: np.ndarray) -> dict[int, int]:
    """Number of strokes (8-connected components) of each code in an (H, W) target."""
    return {
        int(code): ndimage.label(target == code, structure=EIGHT_CONNECTED)[1]
        for code in np.unique(target[target != UNLABELLED])
    }


def hold_out_strokes(target: np.ndarray, share: float, seed: int, key: str = "") -> StrokeSplit:
    """Move ``share`` of each class's strokes (at least 1, at most n - 1 of n) to a validation target.

    ``key`` (e.g. the sample id) makes the choice differ between images of one run; the same ``seed`` and
    ``key`` always give the same split.
    """
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share}")
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    train = target.copy()
    validation = np.full_like(target, UNLABELLED)
    held_out: list[Stroke] = []
    for code in np.unique(target[target != UNLABELLED]):
        components, count = ndimage.label(target == code, structure=EIGHT_CONNECTED)
        if count < 2:
            continue
        chosen = rng.choice(count, size=min(count - 1, max(1, round(share * count))), replace=False) + 1
        for component in sorted(chosen.tolist()):
            pixels = components == component
            rows, columns = np.nonzero(pixels)
            validation[pixels] = code
            train[pixels] = UNLABELLED
            held_out.append(Stroke(int(code), int(pixels.sum()), float(rows.mean()), float(columns.mean())))
    return StrokeSplit(train, validation, held_out)


def stroke_folds(targets: dict[str, np.ndarray], folds: int, seed: int) -> dict[str, np.ndarray]:
    """(H, W) fold in ``0..folds-1`` of every annotated pixel of each image's target (-1 where unlabelled), by
    whole strokes: each class's strokes, over every image, are dealt round-robin in a seeded order, so every
    fold holds strokes of as many classes as possible and no stroke is split between folds."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    rng = np.random.default_rng(seed)
    assigned = {key: np.full(target.shape, -1, dtype=np.int64) for key, target in targets.items()}
    codes = sorted({int(c) for target in targets.values() for c in np.unique(target[target != UNLABELLED])})
    for code in codes:
        strokes = []
        for key in sorted(targets):
            components, count = ndimage.label(targets[key] == code, structure=EIGHT_CONNECTED)
            strokes += [(key, components, component) for component in range(1, count + 1)]
        for position, index in enumerate(rng.permutation(len(strokes))):
            key, components, component = strokes[index]
            assigned[key][components == component] = position % folds
    return assigned


def subject_folds(targets: dict[str, np.ndarray], subjects: dict[str, str], folds: int,
                  seed: int) -> dict[str, np.ndarray]:  # fmt: skip
    """(H, W) fold of every annotated pixel of each image's target (-1 where unlabelled), by whole subjects
    (patients, surgeries): the subjects, in a seeded order, are dealt round-robin into ``min(folds, subjects)``
    folds, and every annotated pixel of a subject's images gets its subject's fold. With a single subject there
    is nothing to deal, and the folds hold whole strokes instead (:func:`stroke_folds`).

    ``subjects``: sample id -> subject, for every key of ``targets``."""
    names = sorted({subjects[key] for key in targets})
    if len(names) < 2:
        return stroke_folds(targets, folds, seed)
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of = {names[index]: position % folds for position, index in enumerate(order)}
    return {key: np.where(target != UNLABELLED, fold_of[subjects[key]], -1).astype(np.int64)
            for key, target in targets.items()}  # fmt: skip
