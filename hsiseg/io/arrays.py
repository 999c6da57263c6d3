"""Cubes kept as plain arrays: NumPy ``.npy``/``.npz`` and MATLAB ``.mat`` (v5 and v7.3).

- ``.npy``: the array itself; band centres from the ``wavelengths`` option.
- ``.npz``: arrays ``cube`` (or ``data``, or the only 3-D array; option ``variable``) and ``wavelengths``.
- ``.mat``: the variable named by ``variable`` (default: the only 3-D numeric variable, or a 2-D one
  with ``image_shape``), and a ``wavelengths``/``wavelength``/``wl`` variable when present. v5 files are
  read with ``scipy.io.loadmat``; v7.3 files are HDF5 and read with h5py, whose arrays come out in
  reversed axis order (MATLAB is column-major), so they are transposed back to MATLAB's order.
- 2-D matrices of spectra (pixels x bands, or bands x pixels) need ``image_shape=(H, W)``; pixels are
  taken in MATLAB's column-major order (``order='F'``), as ``reshape`` in MATLAB would.

Every layout option of :mod:`hsiseg.io.hdf5` applies: ``axes`` (default ``"HWB"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.io.cube import Cube
from hsiseg.io.hdf5 import reorder_axes

CUBE_NAMES = ("cube", "data", "hsi", "reflectance")
WAVELENGTH_NAMES = ("wavelengths", "wavelength", "wl", "lambda")


def read_npy(path: Path, wavelengths: Any = None, axes: str = "HWB", image_shape: Any = None) -> Cube:
    """Read a ``.npy`` cube (memory-mapped)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise HsisegError(f"{path}: not a readable .npy array ({error})") from None
    if wavelengths is None:
        raise HsisegError(f"{path}: a .npy file holds no wavelengths; pass wavelengths=...")
    return _to_cube(path, array, wavelengths, axes, image_shape, "npy", {})


def read_npz(
    path: Path,
    variable: str | None = None,
    wavelengths: Any = None,
    axes: str = "HWB",
    image_shape: Any = None,
) -> Cube:
    """Read a cube and its wavelengths from a ``.npz`` archive."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return _from_variables(path, arrays, variable, wavelengths, axes, image_shape, "npz")


def read_mat(
    path: Path,
    variable: str | None = None,
    wavelengths: Any = None,
    axes: str = "HWB",
    image_shape: Any = None,
) -> Cube:
    """Read a MATLAB v5 (scipy) or v7.3 (HDF5) file."""
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as handle:
            arrays = {
                name: np.asarray(item[()]).transpose()  # h5py sees MATLAB arrays with axes reversed
                for name, item in handle.items()
                if isinstance(item, h5py.Dataset) and item.dtype.kind in "fiu"
            }
        version = "mat-v7.3"
    else:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError

        try:
            loaded = loadmat(path)
        except (MatReadError, ValueError, TypeError) as error:
            raise HsisegError(f"{path}: not a readable MATLAB file ({error})") from None
        arrays = {
            name: value for name, value in loaded.items() if not name.startswith("__") and isinstance(value, np.ndarray)
        }
        version = "mat-v5"
    return _from_variables(path, arrays, variable, wavelengths, axes, image_shape, version)


def _from_variables(
    path: Path,
    arrays: dict[str, np.ndarray],
    variable: str | None,
    wavelengths: Any,
    axes: str,
    image_shape: Any,
    kind: str,
) -> Cube:
    numeric = {name: a for name, a in arrays.items() if a.dtype.kind in "fiu"}
    if variable is not None:
        if variable not in numeric:
            raise HsisegError(f"{path}: no numeric variable {variable!r}; variables: {sorted(numeric)}")
        name = variable
    else:
        wanted_ndim = 2 if image_shape is not None else 3
        candidates = [n for n, a in numeric.items() if a.ndim == wanted_ndim and n.lower() not in WAVELENGTH_NAMES]
        named = [n for n in candidates if n.lower() in CUBE_NAMES]
        if len(candidates) == 1:
            name = candidates[0]
        elif len(named) == 1:
            name = named[0]
        else:
            raise HsisegError(
                f"{path}: cannot tell which variable is the cube among {sorted(numeric)}; pass variable=..."
            )
    if wavelengths is None:
        found = [n for n in numeric if n.lower() in WAVELENGTH_NAMES]
        if not found:
            raise HsisegError(f"{path}: no wavelengths variable ({'/'.join(WAVELENGTH_NAMES)}); pass wavelengths=...")
        wavelengths = numeric[found[0]].reshape(-1)
    return _to_cube(path, numeric[name], wavelengths, axes, image_shape, kind, {"variable": name})


def _to_cube(
    path: Path, array: np.ndarray, wavelengths: Any, axes: str, image_shape: Any, kind: str, extra: dict
) -> Cube:
    if image_shape is not None:
        array = _spectra_to_image(path, np.asarray(array), tuple(int(v) for v in image_shape), np.size(wavelengths))
        axes = "HWB"
    if array.ndim != 3:
        raise HsisegError(f"{path}: array has shape {array.shape}; a cube needs 3 axes (or pass image_shape=(H, W))")
    data = np.ascontiguousarray(reorder_axes(array, axes, path), dtype=np.float32)
    return Cube(data, wavelengths, {"source": str(path), "format": kind, **extra})


def _spectra_to_image(path: Path, matrix: np.ndarray, image_shape: tuple[int, ...], bands: int) -> np.ndarray:
    """(pixels, bands) or (bands, pixels) -> (H, W, B), pixels in column-major (MATLAB) order."""
    if matrix.ndim != 2 or len(image_shape) != 2:
        raise HsisegError(f"{path}: image_shape needs a 2-D matrix of spectra and (H, W), got {matrix.shape}")
    height, width = image_shape
    if matrix.shape == (height * width, bands):
        matrix = matrix.T
    elif matrix.shape != (bands, height * width):
        raise HsisegError(f"{path}: a {matrix.shape} matrix does not hold {height} x {width} pixels of {bands} bands")
    return matrix.reshape(bands, height, width, order="F").transpose(1, 2, 0)
