"""Reflectance from raw camera counts: ``(raw - dark) / (white - dark)``."""

from __future__ import annotations

import warnings

import numpy as np

from hsiseg.errors import HsisegError, HsisegWarning


def calibrate(raw: np.ndarray, white: np.ndarray, dark: np.ndarray | float = 0.0, epsilon: float = 1e-6) -> np.ndarray:
    """Reflectance = (raw - dark) / (white - dark), as float32.

    Parameters
    ----------
    raw: (H, W, B) raw counts.
    white, dark: white and dark references broadcastable to (H, W, B): whole cubes, per-column line
        references (W, B), or per-band vectors (B,); ``dark`` may be a scalar.
    epsilon: where ``white - dark <= epsilon`` (a dead or saturated reference) the result is 0, and a
        :class:`HsisegWarning` counts those values, instead of dividing by zero.

    Returns
    -------
    (H, W, B) float32 reflectance.
    """
    raw = np.asarray(raw, dtype=np.float32)
    white = np.asarray(white, dtype=np.float32)
    dark = np.asarray(dark, dtype=np.float32)
    for name, reference in (("white", white), ("dark", dark)):
        try:
            np.broadcast_shapes(reference.shape, raw.shape)
        except ValueError:
            raise HsisegError(
                f"calibration: {name} reference of shape {reference.shape} does not fit a cube of shape {raw.shape}"
            ) from None
    span = white - dark
    usable = span > epsilon
    reflectance = np.zeros(np.broadcast_shapes(raw.shape, span.shape), dtype=np.float32)
    np.divide(raw - dark, span, out=reflectance, where=np.broadcast_to(usable, reflectance.shape))
    unusable = int(np.broadcast_to(~usable, reflectance.shape).sum())
    if unusable:
        warnings.warn(
            f"calibration: {unusable} values have white - dark <= {epsilon:g}; set to 0", HsisegWarning, stacklevel=2
        )
    return reflectance
