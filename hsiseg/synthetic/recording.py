"""A short synthetic snapshot-mosaic recording: a metal instrument moving over the synthetic surgical scene,
seen by a made-up 5 x 5 camera whose 25 filters cover 500-1000 nm (so a model trained on the demo's 500-1000 nm
cubes can read it), written as XiLens would: raw 10-bit frames in a Blosc2 ``.b2nd`` file with time stamps,
white and dark reference recordings, and the camera description (:mod:`hsiseg.io.camera`).

Per frame: the scene's truth with the instrument shifted along its shaft, rendered by
:func:`hsiseg.synthetic.scene.render` (the same random fields every frame, so only the instrument moves);
each filter position integrates the 100-band spectrum with a Gaussian response (FWHM 10 nm); raw counts are
``dark + (white - dark) * reflectance`` with shot-like noise, clipped at the sensor's saturation (1023:
strong glare saturates, and those pixels are invalid after demosaicking). ``truth.npy`` holds each frame's
dense leaf codes (N, H, W) for scoring.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from hsiseg.synthetic.scene import _bar, layout, render
from hsiseg.synthetic.tissues import wavelengths
from hsiseg.tree import LabelTree

MOSAIC = (5, 5)
SATURATION = 1023
WHITE_LEVEL, DARK_LEVEL = 900.0, 40.0
FWHM = 10.0


def camera_wavelengths() -> np.ndarray:
    """(25,) nm of the filter positions, row by row; deliberately not in increasing order across the tile."""
    centres = np.linspace(500.0, 1000.0, MOSAIC[0] * MOSAIC[1])
    return centres.reshape(MOSAIC).T.ravel()  # column-major placement, as real mosaics interleave their filters


def filter_responses(grid: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(bands of ``grid``, positions) Gaussian responses, each column summing to 1."""
    sigma = FWHM / (2 * np.sqrt(2 * np.log(2)))
    weights = np.exp(-0.5 * ((grid[:, None] - centres[None, :]) / sigma) ** 2)
    return weights / weights.sum(axis=0, keepdims=True)


def to_mosaic(values: np.ndarray) -> np.ndarray:
    """(H, W, positions) per-position values -> (H * m_r, W * m_c) raw sensor layout."""
    height, width, _ = values.shape
    rows, columns = MOSAIC
    return values.reshape(height, width, rows, columns).transpose(0, 2, 1, 3).reshape(height * rows, width * columns)


EXPOSURE_US = 10_000  # every frame and both references, as a recorder stores it


def write_demo_recording(folder: str | Path, tree: LabelTree, frames: int = 12, shape: tuple[int, int] = (96, 128),
                         seed: int = 7) -> tuple[Path, Path]:  # fmt: skip
    """Write ``recording.b2nd``, ``white.b2nd``, ``dark.b2nd``, ``camera.yaml`` and ``truth.npy`` into
    ``folder``; returns (recording, camera)."""
    import blosc2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = layout(tree, shape, rng)
    responses = filter_responses(wavelengths(), camera_wavelengths())
    metal = tree.leaf_index("metal instrument")
    raw, truths = [], []
    for index in range(frames):
        truth = base.copy()
        shift = 0.25 + 0.5 * index / max(1, frames - 1)  # the tip travels across the scene
        truth[_bar(shape, (-5, shape[1] * 0.1), (shape[0] * shift, shape[1] * (0.2 + shift)), 6)] = metal
        reflectance = render(truth, tree, np.random.default_rng(seed + 1), np.array([1.0, 0.0])) @ responses
        raw.append(_counts(to_mosaic(reflectance), rng))
        truths.append(truth.astype(np.int16))
    sensor = (shape[0] * MOSAIC[0], shape[1] * MOSAIC[1])
    references = {
        "white": [_counts(np.ones(sensor), rng) for _ in range(3)],
        "dark": [_counts(np.zeros(sensor), rng) for _ in range(3)],
    }
    recording = folder / "recording.b2nd"
    array = blosc2.asarray(np.stack(raw), urlpath=str(recording), mode="w", chunks=(1, *sensor))
    array.schunk.vlmeta["timestamps"] = [round(0.04 * i, 3) for i in range(frames)]  # 25 frames/s
    array.schunk.vlmeta["exposure_us"] = [EXPOSURE_US] * frames
    array.schunk.vlmeta["camera"] = "hsiseg synthetic 5x5 500-1000 nm"
    for name, stack in references.items():
        stored = blosc2.asarray(np.stack(stack), urlpath=str(folder / f"{name}.b2nd"), mode="w", chunks=(1, *sensor))
        stored.schunk.vlmeta["exposure_us"] = [EXPOSURE_US] * len(stack)
    np.save(folder / "truth.npy", np.stack(truths))
    camera = folder / "camera.yaml"
    camera.write_text(_camera_text())
    return recording, camera


def _counts(reflectance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    signal = DARK_LEVEL + (WHITE_LEVEL - DARK_LEVEL) * reflectance
    noisy = signal + rng.normal(0, 1, signal.shape) * np.sqrt(np.clip(signal, 1, None)) * 0.5
    return np.clip(np.round(noisy), 0, SATURATION).astype(np.uint16)


def _camera_text() -> str:
    description = {
        "name": "hsiseg synthetic 5x5 camera (500-1000 nm)",
        "mosaic": list(MOSAIC),
        "offset": [0, 0],
        "wavelengths": [round(float(v), 2) for v in camera_wavelengths()],
        "fwhm": [FWHM] * (MOSAIC[0] * MOSAIC[1]),
        "saturation": SATURATION,
        "white": "white.b2nd",
        "dark": "dark.b2nd",
    }
    header = (
        "# Camera description of the synthetic demo recording (hsiseg.io.camera): 5 x 5 filters, 25 bands\n"
        "# 500-1000 nm placed column by column in the tile, 10-bit sensor; white/dark reference recordings.\n"
    )
    return header + yaml.safe_dump(description, sort_keys=False)
