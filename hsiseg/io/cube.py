"""The in-memory hyperspectral cube every reader returns and every writer takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.errors import HsisegError


@dataclass
class Cube:
    """A hyperspectral image.

    Attributes
    ----------
    data: (H, W, B) float32 array (reflectance unless ``meta`` says otherwise).
    wavelengths: (B,) float64 band centres in nm, strictly increasing.
    meta: JSON-serialisable metadata (reader, source file, camera fields, ...; ``saturation``: the value at
        or above which the sensor was saturated, when the reader knows it).
    repaired: (H, W) bool or None: pixels whose spectrum the reader had to repair (non-finite values set to 0);
        they carry no usable spectrum (see :func:`invalid_pixels`).
    """

    data: np.ndarray
    wavelengths: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    repaired: np.ndarray | None = None

    def __post_init__(self) -> None:
        source = self.meta.get("source", "cube")
        self.data = np.asarray(self.data)
        if self.data.ndim != 3:
            raise HsisegError(f"{source}: a cube must be (H, W, B), got shape {self.data.shape}")
        if self.data.dtype != np.float32:
            self.data = self.data.astype(np.float32)
        self.wavelengths = check_wavelengths(self.wavelengths, self.data.shape[2], source)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, B)."""
        height, width, bands = self.data.shape
        return height, width, bands

    @property
    def num_bands(self) -> int:
        return self.data.shape[2]

    def __repr__(self) -> str:
        h, w, b = self.shape
        return (
            f"Cube({h} x {w} x {b} bands, {self.wavelengths[0]:g}-{self.wavelengths[-1]:g} nm, "
            f"source={self.meta.get('source', '?')!r})"
        )


def invalid_pixels(cube: Cube) -> np.ndarray:
    """(H, W) bool: pixels without a usable spectrum: a non-finite value in any band (also when the reader
    repaired it), every band zero, or (where the reader knows the sensor's ``saturation`` value) any band at or
    above saturation."""
    data = cube.data
    invalid = ~np.isfinite(data).all(axis=-1) | ~(data != 0).any(axis=-1)
    if cube.repaired is not None:
        invalid |= cube.repaired
    saturation = cube.meta.get("saturation")
    if saturation is not None:
        invalid |= (data >= float(saturation)).any(axis=-1)
    return invalid


class NoWavelengthsError(HsisegError):
    """A cube file without band centres (and none passed); ``num_bands`` is its band count where known."""

    def __init__(self, message: str, num_bands: int | None = None) -> None:
        super().__init__(message)
        self.num_bands = num_bands


def wavelength_values(wavelengths: Any, source: str | Path) -> np.ndarray:
    """Band centres as given (a list of numbers, an array) -> float64 (B,); one clear error for anything else
    (text, nested lists)."""
    try:
        values = np.asarray(wavelengths, dtype=np.float64)
        if sum(size > 1 for size in values.shape) > 1:  # a table, not a list; (1, B) or (B, 1) is a list
            raise ValueError("nested")
        return values.reshape(-1)
    except (TypeError, ValueError):
        shown = repr(wavelengths)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise HsisegError(
            f"{source}: wavelengths must be numbers in nm (one per band, or '@file' naming a file of them), got {shown}"
        ) from None


def check_wavelengths(wavelengths: Any, num_bands: int, source: str | Path) -> np.ndarray:
    """Validate band centres: (B,) finite, strictly increasing, one per band. Returns float64 (B,)."""
    values = wavelength_values(wavelengths, source)
    if values.size != num_bands:
        raise HsisegError(f"{source}: {values.size} wavelengths for {num_bands} bands; give one per band")
    if not np.isfinite(values).all():
        raise HsisegError(f"{source}: wavelengths contain NaN or Inf")
    steps = np.diff(values)
    if (steps <= 0).any():
        at = int(np.flatnonzero(steps <= 0)[0])
        raise HsisegError(
            f"{source}: wavelengths must increase strictly; band {at + 1} ({values[at + 1]:g} nm) "
            f"follows {values[at]:g} nm"
        )
    return values
