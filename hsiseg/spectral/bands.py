"""Band operations on (H, W, B) cubes with wavelength vectors (B,) in nm.

Each function returns ``(data, wavelengths)``: select a wavelength range, bin neighbouring bands, drop bad
bands, and resample onto another camera's wavelength grid (linear interpolation; a warning says when the
target grid reaches beyond the measured range, where the edge band values are repeated).
"""

from __future__ import annotations

import warnings

import numpy as np

from hsiseg.errors import HsisegError, HsisegWarning


def select_range(data: np.ndarray, wavelengths: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep the bands with ``low <= wavelength <= high``."""
    keep = (wavelengths >= low) & (wavelengths <= high)
    if not keep.any():
        raise HsisegError(
            f"band range {low:g}-{high:g} nm holds no band of this cube ({wavelengths[0]:g}-{wavelengths[-1]:g} nm)"
        )
    return np.ascontiguousarray(data[..., keep]), wavelengths[keep]


def bin_bands(data: np.ndarray, wavelengths: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Average groups of ``factor`` neighbouring bands; a last incomplete group is averaged on its own."""
    if factor < 1:
        raise HsisegError(f"band binning factor must be >= 1, got {factor}")
    if factor == 1:
        return data, wavelengths
    starts = np.arange(0, len(wavelengths), factor)
    counts = np.diff(np.append(starts, len(wavelengths)))
    summed = np.add.reduceat(data, starts, axis=-1, dtype=np.float64)
    binned = (summed / counts).astype(np.float32)
    return binned, np.add.reduceat(wavelengths, starts) / counts


def drop_bands(data: np.ndarray, wavelengths: np.ndarray, bad: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Remove the bands with these indices."""
    bad_set = set(int(i) for i in bad)
    out_of_range = sorted(i for i in bad_set if not 0 <= i < len(wavelengths))
    if out_of_range:
        raise HsisegError(f"bad bands {out_of_range} do not exist (the cube has {len(wavelengths)} bands)")
    keep = np.array([i not in bad_set for i in range(len(wavelengths))])
    return np.ascontiguousarray(data[..., keep]), wavelengths[keep]


def resample(
    data: np.ndarray, wavelengths: np.ndarray, target: np.ndarray, tolerance_nm: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of every spectrum onto the ``target`` band centres (nm).

    Target bands further than ``tolerance_nm`` outside the measured range are extrapolated by repeating the
    edge band, with a :class:`HsisegWarning`. Returns float32 (H, W, len(target)).
    """
    target = np.asarray(target, dtype=np.float64)
    if np.array_equal(target, wavelengths):
        return data, wavelengths
    outside = (target < wavelengths[0] - tolerance_nm) | (target > wavelengths[-1] + tolerance_nm)
    if outside.any():
        warnings.warn(
            f"resampling: {int(outside.sum())} target bands ({target[outside].min():g}-{target[outside].max():g} nm) "
            f"lie outside the measured {wavelengths[0]:g}-{wavelengths[-1]:g} nm; edge values are repeated there",
            HsisegWarning,
            stacklevel=2,
        )
    position = np.interp(target, wavelengths, np.arange(len(wavelengths), dtype=np.float64))
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, len(wavelengths) - 1)
    weight = (position - lower).astype(np.float32)
    out = data[..., lower] * (1 - weight) + data[..., upper] * weight
    return out.astype(np.float32, copy=False), target
