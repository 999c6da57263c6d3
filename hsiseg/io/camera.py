"""Camera descriptions of snapshot-mosaic cameras: an open YAML file a user fills from the vendor's calibration.

A snapshot-mosaic sensor carries a repeating ``m_rows x m_cols`` tile of narrow-band filters: every raw frame
(H x W sensor pixels) holds ``m_rows * m_cols`` bands, each sampled once per tile. Example (a 4 x 4 VIS
camera; every key but ``mosaic`` and ``wavelengths`` is optional)::

    name: xiSpec MQ022HG-IM-SM4X4-VIS
    mosaic: [4, 4]                  # tile rows, tile columns
    offset: [3, 0]                  # sensor row and column of the first full tile (default [0, 0])
    size: [1080, 2048]              # active region from the offset (default: as many whole tiles as fit)
    wavelengths: [465, 546, ...]    # nm of each filter position, row by row within the tile (16 values)
    fwhm: [12, 14, ...]             # optional, nm, one per position
    saturation: 1023                # raw value at which the sensor saturates (10-bit)
    correction:                     # optional spectral correction (crosstalk, second-order leakage)
      wavelengths: [470, 480, ...]  # nm of each corrected band
      matrix: [[...], ...]          # corrected bands x filter positions
    white: white.b2nd               # optional white / dark references: a recording or a frame file, averaged
    dark: dark.b2nd                 # over its frames; relative to this file

Paths are relative to the camera file. Errors name the file, the line and the field.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hsiseg.errors import HsisegError
from hsiseg.structured_files import load_structured


class SpectralCorrection(BaseModel):
    """``matrix`` (bands out x filter positions) maps a tile's calibrated values to corrected bands."""

    model_config = ConfigDict(extra="forbid")
    wavelengths: list[float] = Field(min_length=1)
    matrix: list[list[float]] = Field(min_length=1)

    @model_validator(mode="after")
    def _rows(self) -> SpectralCorrection:
        if len(self.matrix) != len(self.wavelengths):
            raise ValueError(f"correction.matrix has {len(self.matrix)} rows for {len(self.wavelengths)} wavelengths")
        if len({len(row) for row in self.matrix}) != 1:
            raise ValueError("correction.matrix rows differ in length")
        return self


class CameraDescription(BaseModel):
    """A snapshot-mosaic camera (see module docstring); ``source`` is the file it came from."""

    model_config = ConfigDict(extra="forbid")
    name: str = "snapshot-mosaic camera"
    mosaic: tuple[int, int]
    offset: tuple[int, int] = (0, 0)
    size: tuple[int, int] | None = None
    wavelengths: list[float]
    fwhm: list[float] | None = None
    saturation: float | None = None
    correction: SpectralCorrection | None = None
    white: str | None = None
    dark: str | None = None
    source: str = Field(default="camera description", exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> CameraDescription:
        rows, columns = self.mosaic
        if rows < 1 or columns < 1:
            raise ValueError(f"mosaic must be two positive numbers, got {list(self.mosaic)}")
        if min(self.offset) < 0:
            raise ValueError(f"offset must not be negative, got {list(self.offset)}")
        if self.saturation is not None and not self.saturation > 0:
            raise ValueError(f"saturation must be a positive raw value, got {self.saturation}")
        if self.fwhm is not None and not all(value > 0 for value in self.fwhm):
            raise ValueError("fwhm values must be positive band widths in nm")
        if self.size is not None and (self.size[0] < rows or self.size[1] < columns):
            raise ValueError(f"size {list(self.size)} holds no whole {rows} x {columns} tile")
        for field, values in (("wavelengths", self.wavelengths), ("fwhm", self.fwhm)):
            if values is not None and len(values) != self.positions:
                raise ValueError(f"{field} has {len(values)} values; the {rows} x {columns} mosaic has "
                                 f"{self.positions} filter positions (one value each, row by row)")  # fmt: skip
        if self.correction is not None and len(self.correction.matrix[0]) != self.positions:
            raise ValueError(f"correction.matrix has {len(self.correction.matrix[0])} columns; the mosaic has "
                             f"{self.positions} filter positions")  # fmt: skip
        return self

    @property
    def positions(self) -> int:
        """Filter positions per tile (m_rows * m_cols)."""
        return self.mosaic[0] * self.mosaic[1]

    @cached_property
    def correction_matrix(self) -> np.ndarray | None:
        """(bands out, positions) float32, or None."""
        return None if self.correction is None else np.asarray(self.correction.matrix, dtype=np.float32)

    def tiles(self, frame_shape: tuple[int, int]) -> tuple[int, int]:
        """Whole tiles (rows, columns) in the active region of a raw frame of ``frame_shape`` (H, W)."""
        height, width = frame_shape
        top, left = self.offset
        active_height, active_width = self.size or (height - top, width - left)
        if top + active_height > height or left + active_width > width:
            raise HsisegError(
                f"{self.source}: offset {list(self.offset)} + size {[active_height, active_width]} exceeds the "
                f"raw frame of {height} x {width} pixels; check 'offset' and 'size'"
            )
        tile_rows, tile_columns = active_height // self.mosaic[0], active_width // self.mosaic[1]
        if tile_rows < 1 or tile_columns < 1:
            raise HsisegError(f"{self.source}: a {height} x {width} frame holds no whole tile after offset "
                              f"{list(self.offset)}")  # fmt: skip
        return tile_rows, tile_columns

    def resolve(self, written: str) -> Path:
        """A reference path as written in the file: relative to the camera file's folder."""
        path = Path(written)
        return path if path.is_absolute() else Path(self.source).parent / path

    @classmethod
    def from_file(cls, path: str | Path) -> CameraDescription:
        """Read and validate a camera YAML file; one :class:`HsisegError` naming the line and field."""
        path = Path(path)
        data, locate = load_structured(path, "camera description", "the camera description")
        if not isinstance(data, dict):
            raise HsisegError(f"{path}: a camera description is a mapping (mosaic, wavelengths, ...)")
        try:
            return cls(**data, source=str(path))
        except ValidationError as error:
            first = error.errors()[0]
            raise HsisegError(f"{path}: {locate(first['loc'])}: {first['msg']}") from None
