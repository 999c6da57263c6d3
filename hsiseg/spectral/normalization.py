"""Spectral normalisation, and the one notion of a valid pixel used everywhere.

A pixel is *valid* when its spectrum is finite and not all zero (cameras write zeros where they saw
nothing, e.g. saturated highlights). Every normalisation maps invalid pixels to all-zero spectra and never
produces NaN: that is the documented rule, and :func:`valid_pixels` gives the mask.

Per-pixel methods (each spectrum on its own): ``l1`` (divide by sum |x|), ``l2`` (divide by the Euclidean
norm), ``snv`` (standard normal variate: subtract the spectrum's mean, divide by its standard deviation;
constant spectra become 0), ``minmax`` (scale each spectrum to [0, 1]). Dataset method: ``zscore`` (per band,
with :class:`BandStatistics` accumulated over many cubes in one streaming pass).

Per-pixel methods work block by block, so the extra memory is the output plus one small block (or only
the block with ``out=data``, in place).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from hsiseg.errors import HsisegError

BLOCK_VALUES = 1 << 18  # values per block: about 1 MiB of float32, stays in cache
PER_PIXEL_METHODS = ("l1", "l2", "snv", "minmax")
METHODS = ("none", *PER_PIXEL_METHODS, "zscore")


def valid_pixels(data: np.ndarray) -> np.ndarray:
    """(H, W) bool: spectra that are finite everywhere and not all zero. ``data``: (H, W, B)."""
    finite = np.isfinite(data).all(axis=-1)
    nonzero = (data != 0).any(axis=-1)
    return finite & nonzero


def normalize(data: np.ndarray, method: str, out: np.ndarray | None = None) -> np.ndarray:
    """Normalise every spectrum of ``data`` (H, W, B) float32 with a per-pixel method.

    ``out`` may be ``data`` itself (in place). Invalid pixels become all-zero spectra.
    """
    if method == "none":
        return data if out is None else _copy_into(data, out)
    kernels: dict[str, Callable[[np.ndarray, np.ndarray], None]] = {
        "l1": _l1,
        "l2": _l2,
        "snv": _snv,
        "minmax": _minmax,
    }
    if method not in kernels:
        raise HsisegError(f"normalisation: unknown method {method!r}; per-pixel methods are {PER_PIXEL_METHODS}")
    data = np.asarray(data)
    if data.dtype != np.float32:
        data = data.astype(np.float32)
    out = np.empty_like(data) if out is None else out
    if out.shape != data.shape or out.dtype != np.float32:
        raise HsisegError(f"normalisation: out must be float32 of shape {data.shape}, got {out.dtype} {out.shape}")
    pixels = data.reshape(-1, data.shape[-1])
    targets = out.reshape(-1, data.shape[-1])
    step = max(1, BLOCK_VALUES // max(1, data.shape[-1]))
    with np.errstate(invalid="ignore", divide="ignore"):  # invalid pixels are zeroed by the kernels
        for start in range(0, len(pixels), step):
            kernels[method](pixels[start : start + step], targets[start : start + step])
    return out


def _scale_rows(block: np.ndarray, target: np.ndarray, offset: np.ndarray | None, scale: np.ndarray) -> None:
    """target = (block - offset) / scale row-wise; rows with a zero or non-finite scale become 0."""
    usable = np.isfinite(scale) & (scale > 0)
    divisor = np.where(usable, scale, np.float32(1))[:, None]  # a plain divide: a masked one is several times slower
    if offset is not None:
        usable &= np.isfinite(offset)
        np.subtract(block, offset[:, None], out=target)
        np.divide(target, divisor, out=target)
    else:
        np.divide(block, divisor, out=target)
    target[~usable] = 0.0


def _l1(block: np.ndarray, target: np.ndarray) -> None:
    _scale_rows(block, target, None, np.abs(block).sum(axis=1))


def _l2(block: np.ndarray, target: np.ndarray) -> None:
    _scale_rows(block, target, None, np.sqrt(np.einsum("ij,ij->i", block, block)))


def _snv(block: np.ndarray, target: np.ndarray) -> None:
    _scale_rows(block, target, block.mean(axis=1), block.std(axis=1))
    target[~(block != 0).any(axis=1)] = 0.0


def _minmax(block: np.ndarray, target: np.ndarray) -> None:
    low = block.min(axis=1)
    _scale_rows(block, target, low, block.max(axis=1) - low)
    target[~(block != 0).any(axis=1)] = 0.0


def _copy_into(data: np.ndarray, out: np.ndarray) -> np.ndarray:
    out[...] = data
    return out


@dataclass
class BandStatistics:
    """Per-band mean and standard deviation over the valid pixels of many cubes, in one streaming pass.

    Uses Chan et al.'s pairwise update in float64, so cubes can be added one at a time (never all in
    memory) and the result matches a two-pass computation.
    """

    count: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = field(default=None, repr=False)

    def update(self, data: np.ndarray) -> BandStatistics:
        """Add the valid pixels of one cube (H, W, B)."""
        pixels = data[valid_pixels(data)].astype(np.float64)
        if not len(pixels):
            return self
        count, mean = len(pixels), pixels.mean(axis=0)
        m2 = ((pixels - mean) ** 2).sum(axis=0)
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = count, mean, m2
            return self
        if mean.shape != self.mean.shape:
            raise HsisegError(f"band statistics: a cube with {mean.size} bands after {self.mean.size}-band cubes")
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * count / total
        self.m2 = self.m2 + m2 + delta**2 * self.count * count / total
        self.count = total
        return self

    @classmethod
    def from_cubes(cls, cubes: Iterable[np.ndarray]) -> BandStatistics:
        """Statistics of an iterable of (H, W, B) arrays (e.g. a generator that reads files one by one)."""
        statistics = cls()
        for data in cubes:
            statistics.update(data)
        return statistics

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per band (B,)."""
        if self.m2 is None or not self.count:
            raise HsisegError("band statistics: no valid pixel was added")
        return np.sqrt(self.m2 / self.count)


def zscore(data: np.ndarray, mean: np.ndarray, std: np.ndarray, min_std: float = 1e-6) -> np.ndarray:
    """(x - mean) / std per band; ``std`` below ``min_std`` is raised to it; invalid pixels become 0."""
    mean = np.asarray(mean, dtype=np.float32)
    std = np.maximum(np.asarray(std, dtype=np.float32), np.float32(min_std))
    if mean.shape != (data.shape[-1],) or std.shape != (data.shape[-1],):
        raise HsisegError(f"zscore: statistics have {mean.size} bands, the cube has {data.shape[-1]}")
    out = (np.asarray(data, dtype=np.float32) - mean) / std
    out[~valid_pixels(data)] = 0.0
    return out
