"""From a raw snapshot-mosaic frame to a calibrated :class:`~hsiseg.io.cube.Cube`.

Steps, per frame (``MosaicDecoder.cube``):

1. the active region (the camera's ``offset`` and ``size``, whole tiles only) as float32;
2. white/dark calibration per sensor pixel, ``(raw - dark) / (white - dark)``, with the references averaged
   over their frames (values where ``white - dark`` is not positive become 0 and count as invalid);
3. demosaicking: ``subsample`` gives one spectrum per tile, (H/m_r, W/m_c, m_r * m_c) with the bands in filter
   position order (the fast default); ``bilinear`` interpolates each band's samples to every sensor pixel of
   the active region (H, W, m_r * m_c), position (r, c) of a tile sitting at its true place in the tile;
4. the camera's spectral correction matrix, ``bands_out x positions``, applied to every spectrum;
5. bands sorted by wavelength.

A pixel is invalid (never tissue, never unknown) where any raw value it was made from is at or above the
camera's ``saturation``, or where the white reference gives no signal; ``Cube.repaired`` carries that mask
(with ``bilinear``, a bad tile also marks its neighbours' pixels, which interpolate from it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation

from hsiseg.errors import HsisegError
from hsiseg.io.camera import CameraDescription
from hsiseg.io.cube import Cube

DEMOSAICKING = ("subsample", "bilinear")


def active_region(frame: np.ndarray, camera: CameraDescription) -> np.ndarray:
    """(H, W) raw frame -> its active region of whole tiles (rows_t * m_r, cols_t * m_c), a view."""
    tile_rows, tile_columns = camera.tiles(frame.shape)
    top, left = camera.offset
    return frame[top : top + tile_rows * camera.mosaic[0], left : left + tile_columns * camera.mosaic[1]]


def subsample(region: np.ndarray, mosaic: tuple[int, int]) -> np.ndarray:
    """(T_r * m_r, T_c * m_c) -> (T_r, T_c, m_r * m_c): one spectrum per tile, positions row by row."""
    rows, columns = mosaic
    tile_rows, tile_columns = region.shape[0] // rows, region.shape[1] // columns
    tiles = region.reshape(tile_rows, rows, tile_columns, columns).transpose(0, 2, 1, 3)
    return tiles.reshape(tile_rows, tile_columns, rows * columns)


def bilinear(region: np.ndarray, mosaic: tuple[int, int]) -> np.ndarray:
    """(T_r * m_r, T_c * m_c) -> (T_r * m_r, T_c * m_c, m_r * m_c) float32 (a view of band-major planes): each
    band's samples (one per tile, at its filter position) linearly interpolated to every pixel, edges held
    constant."""
    rows, columns = mosaic
    samples = subsample(region, mosaic).astype(np.float32, copy=False)  # (T_r, T_c, P)
    height, width = region.shape
    planes = np.empty((rows * columns, height, width), dtype=np.float32)  # band-major: contiguous writes
    for row in range(rows):
        top, bottom, vertical = _neighbours(height, row, rows)
        for column in range(columns):
            left, right, horizontal = _neighbours(width, column, columns)
            band = samples[..., row * columns + column]
            along = band[top] * (1 - vertical)[:, None] + band[bottom] * vertical[:, None]  # (H, T_c): rows first
            planes[row * columns + column] = along[:, left] * (1 - horizontal) + along[:, right] * horizontal
    return planes.transpose(1, 2, 0)


def _neighbours(length: int, position: int, period: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every pixel 0..length-1: the sample indices before and after it along one axis and the weight of
    the one after, for samples at ``position + k * period``."""
    samples = length // period
    where = (np.arange(length) - position) / period
    before = np.clip(np.floor(where), 0, samples - 1).astype(np.int64)
    after = np.minimum(before + 1, samples - 1)
    weight = np.clip(where - before, 0.0, 1.0).astype(np.float32)
    weight[after == before] = 0.0
    return before, after, weight


@dataclass
class MosaicDecoder:
    """Turns raw frames of one camera into calibrated cubes (see module docstring).

    ``white`` and ``dark``: (H, W) float32 averaged reference frames of the full sensor, or None (the raw values
    are used as they are, and flagged in the cube's meta).
    """

    camera: CameraDescription
    method: str = "subsample"
    white: np.ndarray | None = None
    dark: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.method not in DEMOSAICKING:
            raise HsisegError(f"demosaicking method {self.method!r} is unknown; choose one of {list(DEMOSAICKING)}")
        self._order = np.argsort(self._band_wavelengths(), kind="stable")
        matrix = self.camera.correction_matrix
        # planes are made in output order, unless a correction matrix mixes them (its rows are sorted instead)
        self._plane_positions = np.arange(self.camera.positions) if matrix is not None else self._order
        self._matrix = None if matrix is None else matrix[self._order]
        self._tile_gains: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _band_wavelengths(self) -> np.ndarray:
        correction = self.camera.correction
        return np.asarray(correction.wavelengths if correction else self.camera.wavelengths, dtype=np.float64)

    @property
    def wavelengths(self) -> np.ndarray:
        """(B,) nm of the output bands, increasing."""
        return self._band_wavelengths()[self._order]

    def _gains(self, region_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per tile and plane (P, T_r, T_c): dark and gain 1 / (white - dark) (0 where the white gives no
        signal), and the (T_r, T_c) tiles with such a dead position; computed once per frame geometry."""
        if region_shape not in self._tile_gains:
            reference = np.zeros(region_shape, np.float32)
            dark = active_region(self.dark, self.camera) if self.dark is not None else reference
            span = active_region(self.white, self.camera) - dark if self.white is not None else reference + 1
            usable = span > 0
            gain = np.divide(1.0, span, out=np.zeros(region_shape, np.float32), where=usable)
            dead = np.asarray(subsample(~usable, self.camera.mosaic).any(axis=-1))
            self._tile_gains[region_shape] = (self._planes(dark), self._planes(gain), dead)
        return self._tile_gains[region_shape]

    def _planes(self, region: np.ndarray) -> np.ndarray:
        """(T_r * m_r, T_c * m_c) -> (P, T_r, T_c) float32, one plane per filter position in plane order."""
        columns = self.camera.mosaic[1]
        return np.stack([region[p // columns :: self.camera.mosaic[0], p % columns :: columns]
                         for p in self._plane_positions]).astype(np.float32)  # fmt: skip

    def _subsample(self, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fast default: (B, T_r, T_c) calibrated planes and (T_r, T_c) invalid tiles. Gathering the raw
        planes first and converting contiguous memory is faster than converting while subtracting (measured)."""
        dark, gain, dead = self._gains(region.shape)
        rows, columns = self.camera.mosaic
        planes = np.empty(dark.shape, np.float32)
        for plane, position in enumerate(self._plane_positions):
            row, column = divmod(int(position), columns)
            np.copyto(planes[plane], region[row::rows, column::columns], casting="unsafe")
        planes -= dark
        planes *= gain
        invalid = dead
        saturation = self.camera.saturation
        if saturation is not None and region.max() >= saturation:  # one cheap pass; tiles only when needed
            invalid = dead | subsample(region >= saturation, self.camera.mosaic).any(axis=-1)
        return planes, invalid

    def calibrate(self, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Active region (raw) -> (reflectance float32, unusable bool) per sensor pixel."""
        raw = region.astype(np.float32)
        unusable = np.zeros(raw.shape, dtype=bool)
        if self.camera.saturation is not None:
            unusable |= raw >= self.camera.saturation
        if self.white is None:
            return raw, unusable
        dark = active_region(self.dark, self.camera) if self.dark is not None else np.float32(0)
        span = active_region(self.white, self.camera) - dark
        usable = span > 0
        reflectance = np.zeros_like(raw)
        np.divide(raw - dark, span, out=reflectance, where=usable)
        return reflectance, unusable | ~usable

    def cube(self, frame: np.ndarray, meta: dict | None = None, exposure_gain: float = 1.0) -> Cube:
        """One raw (H, W) frame -> Cube (h, w, B) with wavelengths, invalid pixels in ``repaired``. With
        ``subsample`` the data is a band-major buffer seen as (h, w, B) (no copy to pixel-major order).
        ``exposure_gain``: the white reference's exposure over the frame's (calibrated values scale by it)."""
        if frame.ndim != 2:
            raise HsisegError(f"{self.camera.source}: a raw mosaic frame is 2-D (H, W), got shape {frame.shape}")
        for name, reference in (("white", self.white), ("dark", self.dark)):
            if reference is not None and reference.shape != frame.shape:
                raise HsisegError(f"{self.camera.source}: the {name} reference has {reference.shape[0]} x "
                                  f"{reference.shape[1]} pixels, the frame {frame.shape[0]} x {frame.shape[1]}; "
                                  "record the references with the same camera settings")  # fmt: skip
        region = active_region(frame, self.camera)
        if self.method == "subsample":
            planes, invalid = self._subsample(region)
            if exposure_gain != 1.0 and self.white is not None:
                planes *= np.float32(exposure_gain)
            if self._matrix is not None:
                planes = np.tensordot(self._matrix, planes, axes=1)
            spectra = planes.transpose(1, 2, 0)
        else:
            reflectance, unusable = self.calibrate(region)
            if exposure_gain != 1.0 and self.white is not None:
                reflectance *= np.float32(exposure_gain)
            planes = bilinear(reflectance, self.camera.mosaic).transpose(2, 0, 1)  # (P, H, W), position order
            tile_invalid = subsample(unusable, self.camera.mosaic).any(axis=-1)
            tile_invalid = binary_dilation(tile_invalid, np.ones((3, 3), bool))  # neighbours interpolate from it
            invalid = np.repeat(np.repeat(tile_invalid, self.camera.mosaic[0], 0), self.camera.mosaic[1], 1)
            planes = np.tensordot(self._matrix, planes, axes=1) if self._matrix is not None else planes[self._order]
            spectra = planes.transpose(1, 2, 0)
        details = {"camera": self.camera.name, "demosaicking": self.method, "calibrated": self.white is not None}
        return Cube(spectra, self.wavelengths, {**(meta or {}), **details}, repaired=invalid)
