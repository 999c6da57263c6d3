"""Reading the files ``hsiseg predict`` leaves in one frame folder (masks, OOD scores, probabilities) and its
``args.json``; every reader tolerates older outputs that lack a file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.io.images import load_image
from hsiseg.labels import INVALID, UNKNOWN

SUMMARY_FIELDS = ("frame", "source", "status")  # what evaluation reads of each summary.json row


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; empty when the file is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def read_summary(path: Path) -> list[dict]:
    """The rows of a prediction folder's ``summary.json`` (a list of objects with string ``frame``, ``source``
    and ``status``); an unreadable or malformed file is one clear error."""
    advice = "rerun hsiseg predict with --continue on this folder to rewrite it"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise HsisegError(f"{path}: not a readable prediction summary ({detail}); {advice}") from None
    if not isinstance(rows, list):
        raise HsisegError(f"{path}: not a prediction summary (expected a list of frames); {advice}")
    for number, row in enumerate(rows):
        if not isinstance(row, dict) or not all(isinstance(row.get(key), str) for key in SUMMARY_FIELDS):
            fields = ", ".join(SUMMARY_FIELDS)
            raise HsisegError(f"{path}: entry {number} is not a frame with text {fields}; {advice}")
    return rows


def read_labels(path: Path, leaves: int) -> np.ndarray:
    """A frame's (H, W) int64 ``labels.npy``: leaf codes ``0..leaves-1``, :data:`UNKNOWN` or :data:`INVALID`;
    anything else (an unreadable file, not a 2-D integer map, another value) is one error naming the file."""
    advice = "predict the frame again (hsiseg predict --overwrite)"
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise HsisegError(f"{path}: not a readable label map ({detail}); {advice}") from None
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise HsisegError(f"{path}: not a label map (a {labels.ndim}-D {labels.dtype} array, expected 2-D integer "
                          f"codes); {advice}")  # fmt: skip
    labels = labels.astype(np.int64)
    bad = ((labels < 0) | (labels >= leaves)) & (labels != UNKNOWN) & (labels != INVALID)
    if bad.any():
        raise HsisegError(f"{path}: label {int(labels[bad][0])} is not a code of the spec's tree (0..{leaves - 1}, "
                          f"{UNKNOWN} unknown, {INVALID} invalid); was it predicted with a model of another "
                          f"tree? {advice}")  # fmt: skip
    return labels


def read_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A saved 0/255 mask PNG as (H, W) bool (all False when the frame has none: older outputs)."""
    if not path.is_file():
        return np.zeros(shape, dtype=bool)
    mask = load_image(path) > 0  # an unreadable file is one clear error
    if mask.shape != shape:
        raise HsisegError(f"{path}: shape {mask.shape} differs from the frame's labels {shape}")
    return mask


def read_scores(frame: Path, used: str | None) -> dict[str, np.ndarray]:
    """Every (H, W) OOD score map a frame kept: ``probabilities.h5`` (``scores/<name>``), else ``ood_score.npy``
    under the name of the score in use (``used``; nothing without it)."""
    probabilities = frame / "probabilities.h5"
    if probabilities.is_file():
        import h5py

        with h5py.File(probabilities, "r") as handle:
            if "scores" in handle:
                return {name: handle["scores"][name][()] for name in handle["scores"]}
    score = frame / "ood_score.npy"
    if used and score.is_file():
        return {used: np.load(score, allow_pickle=False)}
    return {}


def read_confidence(path: Path, shape: tuple[int, ...], classes: int) -> np.ndarray | None:
    """(H, W) float32 top-label probability from a frame's ``probabilities.h5`` holding (classes, H, W)
    ``probabilities`` (None when it has none)."""
    if not path.is_file():
        return None
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            if "probabilities" not in handle:
                return None
            probabilities = handle["probabilities"][()]
    except OSError as error:
        raise HsisegError(f"{path}: unreadable ({error}); rerun hsiseg predict --probabilities --overwrite") from None
    if probabilities.shape != (classes, *shape):
        raise HsisegError(f"{path}: probabilities of shape {probabilities.shape}, expected {(classes, *shape)}")
    return probabilities.max(0).astype(np.float32)
