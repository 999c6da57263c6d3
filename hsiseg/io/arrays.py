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

Shapes and types are read from the file's headers first (the ``.npy`` header, each ``.npz`` member's ``.npy``
header inside the zip, ``scipy.io.whosmat`` for v5, h5py for v7.3), so the cube is chosen, checked against
``max_bytes`` (:func:`hsiseg.io.limits.check_cube_size`) and refused when it is not numeric (e.g. a pickled
object array) before any value is loaded; only the cube and its wavelengths are then read.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.io.cube import Cube, NoWavelengthsError
from hsiseg.io.formats import READERS
from hsiseg.io.hdf5 import check_axes, hwb_shape, reorder_axes
from hsiseg.io.limits import check_cube_size

CUBE_NAMES = ("cube", "data", "hsi", "reflectance")
WAVELENGTH_NAMES = ("wavelengths", "wavelength", "wl", "lambda")
MAT_CLASSES = {  # MATLAB class (as scipy.io.whosmat names it) -> NumPy type
    "double": "f8",
    "single": "f4",
    "int8": "i1",
    "uint8": "u1",
    "int16": "i2",
    "uint16": "u2",
    "int32": "i4",
    "uint32": "u4",
    "int64": "i8",
    "uint64": "u8",
}


@dataclass(frozen=True)
class Variable:
    """A stored array described from the file's headers, before any value is loaded."""

    shape: tuple[int, ...]
    stored: str  # the NumPy type name, or the MATLAB class of a non-numeric variable
    itemsize: int  # bytes per value; 0 for anything that is not an array of numbers

    @property
    def numeric(self) -> bool:
        return self.itemsize > 0


@READERS.register("npy", suffixes=(".npy",), listed=(".npy",), magic=b"\x93NUMPY")
def read_npy(
    path: Path, wavelengths: Any = None, axes: str = "HWB", image_shape: Any = None, max_bytes: int | None = None
) -> Cube:
    """Read a ``.npy`` cube (memory-mapped; ``max_bytes`` checked from its header before reading)."""
    if _npy_dtype(path).hasobject:
        raise HsisegError(f"{path}: holds Python objects (dtype object), which hsiseg never unpickles; save the "
                          "cube as a numeric array, e.g. numpy.save(path, cube.astype('float32'))")  # fmt: skip
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise HsisegError(f"{path}: not a readable .npy array ({error})".splitlines()[0]) from None
    stored = Variable(tuple(array.shape), str(array.dtype), array.dtype.itemsize)
    if array.dtype.kind not in "fiu":
        raise HsisegError(f"{path}: the array holds {array.dtype} values; a cube is an array of numbers")
    if wavelengths is None:
        raise NoWavelengthsError(
            f"{path}: a .npy file holds no wavelengths; pass wavelengths=... (a list of nm, or '@bands.txt')",
            num_bands=_band_count(path, stored.shape, axes, image_shape),
        )
    check_cube_size(path, stored.shape, max_bytes)
    return _to_cube(path, array, wavelengths, axes, image_shape, "npy", {"stored_dtype": stored.stored})


def _npy_dtype(path: Path) -> np.dtype:
    """The dtype in a ``.npy`` header (nothing else is read); a file without a valid header: float64 (the
    loader then says what is wrong)."""
    try:
        with path.open("rb") as handle:
            major, _ = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            return read_header(handle, max_header_size=1 << 20)[2]
    except (ValueError, OSError, EOFError):
        return np.dtype(np.float64)


@READERS.register("npz", suffixes=(".npz",), listed=(".npz",), magic=b"PK\x03\x04")
def read_npz(
    path: Path,
    variable: str | None = None,
    wavelengths: Any = None,
    axes: str = "HWB",
    image_shape: Any = None,
    max_bytes: int | None = None,
) -> Cube:
    """Read a cube and its wavelengths from a ``.npz`` archive (only those two members are loaded)."""
    variables = _npz_variables(path)

    def load(name: str) -> np.ndarray:
        try:
            with np.load(path, allow_pickle=False) as archive:
                return archive[name]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
            raise HsisegError(f"{path}: array {name!r} cannot be read ({error})".splitlines()[0]) from None

    return _from_variables(path, variables, load, variable, wavelengths, axes, image_shape, "npz", max_bytes)


@READERS.register("mat", suffixes=(".mat",), listed=(".mat",), magic=b"MATLAB")
def read_mat(
    path: Path,
    variable: str | None = None,
    wavelengths: Any = None,
    axes: str = "HWB",
    image_shape: Any = None,
    max_bytes: int | None = None,
) -> Cube:
    """Read a MATLAB v5 (scipy) or v7.3 (HDF5) file (only the cube and its wavelengths are loaded)."""
    if h5py.is_hdf5(path):
        variables, load, version = _mat73_variables(path), _mat73_loader(path), "mat-v7.3"
    else:
        variables, load, version = _mat5_variables(path), _mat5_loader(path), "mat-v5"
    return _from_variables(path, variables, load, variable, wavelengths, axes, image_shape, version, max_bytes)


def _npz_variables(path: Path) -> dict[str, Variable]:
    """Each ``.npz`` member's shape and type, from its ``.npy`` header inside the zip."""
    variables: dict[str, Variable] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith(".npy"):
                    with archive.open(member) as handle:
                        variables[member[: -len(".npy")]] = _npy_header(handle)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise HsisegError(f"{path}: not a readable .npz archive ({error})".splitlines()[0]) from None
    return variables


def _npy_header(handle: Any) -> Variable:
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    return Variable(tuple(shape), str(dtype), dtype.itemsize if dtype.kind in "fiu" else 0)


def _mat5_variables(path: Path) -> dict[str, Variable]:
    from scipy.io import whosmat

    with _mat5_errors(path):
        listing = whosmat(path)
    variables = {}
    for name, shape, matlab_class in listing:
        code = MAT_CLASSES.get(matlab_class)
        dtype = np.dtype(code) if code else None
        variables[name] = Variable(tuple(shape), dtype.name if dtype else matlab_class, dtype.itemsize if dtype else 0)
    return variables


def _mat5_loader(path: Path) -> Callable[[str], np.ndarray]:
    from scipy.io import loadmat

    def load(name: str) -> np.ndarray:
        with _mat5_errors(path):
            return np.asarray(loadmat(path, variable_names=[name])[name])

    return load


@contextmanager
def _mat5_errors(path: Path) -> Iterator[None]:
    """Turn scipy's errors on a damaged v5 file into one :class:`HsisegError` naming it."""
    from scipy.io.matlab import MatReadError

    try:
        yield
    except (MatReadError, ValueError, TypeError, OSError, EOFError) as error:
        raise HsisegError(f"{path}: not a readable MATLAB file ({error})".splitlines()[0]) from None


def _mat73_variables(path: Path) -> dict[str, Variable]:
    """Top-level datasets of a v7.3 file; h5py sees MATLAB's column-major arrays with axes reversed."""
    with h5py.File(path, "r") as handle:
        return {
            name: Variable(
                tuple(reversed(item.shape)), str(item.dtype), item.dtype.itemsize if item.dtype.kind in "fiu" else 0
            )
            for name, item in handle.items()
            if isinstance(item, h5py.Dataset)
        }


def _mat73_loader(path: Path) -> Callable[[str], np.ndarray]:
    def load(name: str) -> np.ndarray:
        try:
            with h5py.File(path, "r") as handle:
                return np.asarray(handle[name][()]).transpose()  # back to MATLAB's axis order
        except OSError as error:
            raise HsisegError(f"{path}: variable {name!r} cannot be read ({error})".splitlines()[0]) from None

    return load


def _from_variables(
    path: Path,
    variables: dict[str, Variable],
    load: Callable[[str], np.ndarray],
    variable: str | None,
    wavelengths: Any,
    axes: str,
    image_shape: Any,
    kind: str,
    max_bytes: int | None,
) -> Cube:
    """Choose the cube among ``variables``, check its size, then load it (and its wavelengths)."""
    name = _choose_variable(path, variables, variable, image_shape)
    stored = variables[name]
    check_cube_size(path, stored.shape, max_bytes, raw_itemsize=stored.itemsize)
    if wavelengths is None:
        found = [n for n, v in variables.items() if v.numeric and n.lower() in WAVELENGTH_NAMES]
        if not found:
            raise NoWavelengthsError(
                f"{path}: no wavelengths variable ({'/'.join(WAVELENGTH_NAMES)}); pass wavelengths=... (a list of "
                "nm, or '@bands.txt')",
                num_bands=_band_count(path, stored.shape, axes, image_shape),
            )
        wavelengths = load(found[0]).reshape(-1)
    extra = {"variable": name, "stored_dtype": stored.stored}
    return _to_cube(path, load(name), wavelengths, axes, image_shape, kind, extra)


def _choose_variable(path: Path, variables: dict[str, Variable], variable: str | None, image_shape: Any) -> str:
    numeric = {name: v for name, v in variables.items() if v.numeric}
    others = ", ".join(f"{name} ({v.stored})" for name, v in variables.items() if not v.numeric)
    not_read = f" (not arrays of numbers, so not read: {others})" if others else ""
    if variable is not None:
        if variable in variables and not variables[variable].numeric:
            raise HsisegError(
                f"{path}: variable {variable!r} holds {variables[variable].stored} values, not numbers (hsiseg "
                "never loads pickled Python objects); save the cube as a numeric array, e.g. float32"
            )
        if variable not in numeric:
            raise HsisegError(
                f"{path}: no numeric variable {variable!r}; numeric variables: {sorted(numeric)}{not_read}"
            )
        return variable
    wanted_ndim = 2 if image_shape is not None else 3
    candidates = [n for n, v in numeric.items() if len(v.shape) == wanted_ndim and n.lower() not in WAVELENGTH_NAMES]
    named = [n for n in candidates if n.lower() in CUBE_NAMES]
    if len(candidates) == 1:
        return candidates[0]
    if len(named) == 1:
        return named[0]
    unreadable = [n for n, v in variables.items() if not v.numeric and len(v.shape) == wanted_ndim]
    if not candidates and unreadable:
        name = unreadable[0]
        raise HsisegError(
            f"{path}: variable {name!r} holds {variables[name].stored} values, not numbers (hsiseg never loads "
            "pickled Python objects); save the cube as a numeric array, e.g. float32"
        )
    raise HsisegError(
        f"{path}: cannot tell which variable is the cube among {sorted(numeric)}{not_read}; pass variable=..."
    )


def _band_count(path: Path, shape: tuple[int, ...], axes: str, image_shape: Any) -> int | None:
    """Bands of a stored array (None where the layout options do not say)."""
    if image_shape is None:
        return hwb_shape(shape, axes, path)[2] if len(shape) == 3 else None
    height, width = _check_image_shape(path, image_shape)
    if len(shape) == 2 and height * width in shape:
        return int(shape[1] if shape[0] == height * width else shape[0])
    return None


def _check_image_shape(path: Path, image_shape: Any) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise HsisegError(
            f"{path}: option 'image_shape' must be (H, W), two whole numbers, got {image_shape!r}"
        ) from None
    if height <= 0 or width <= 0:
        raise HsisegError(f"{path}: option 'image_shape' must be (H, W) with H, W > 0, got {image_shape!r}")
    return height, width


def _to_cube(
    path: Path, array: np.ndarray, wavelengths: Any, axes: str, image_shape: Any, kind: str, extra: dict
) -> Cube:
    if image_shape is not None:
        array = _spectra_to_image(path, np.asarray(array), _check_image_shape(path, image_shape), np.size(wavelengths))
        axes = "HWB"
    if array.ndim != 3:
        raise HsisegError(f"{path}: array has shape {array.shape}; a cube needs 3 axes (or pass image_shape=(H, W))")
    data = np.ascontiguousarray(reorder_axes(array, check_axes(axes, path), path), dtype=np.float32)
    if not data.flags.writeable:
        data = data.copy()  # a read-only view of the memory-mapped file: never hand out the file itself
    return Cube(data, wavelengths, {"source": str(path), "format": kind, **extra})


def _spectra_to_image(path: Path, matrix: np.ndarray, image_shape: tuple[int, int], bands: int) -> np.ndarray:
    """(pixels, bands) or (bands, pixels) -> (H, W, B), pixels in column-major (MATLAB) order."""
    if matrix.ndim != 2 or len(image_shape) != 2:
        raise HsisegError(f"{path}: image_shape needs a 2-D matrix of spectra and (H, W), got {matrix.shape}")
    height, width = image_shape
    if matrix.shape == (height * width, bands):
        matrix = matrix.T
    elif matrix.shape != (bands, height * width):
        raise HsisegError(f"{path}: a {matrix.shape} matrix does not hold {height} x {width} pixels of {bands} bands")
    return matrix.reshape(bands, height, width, order="F").transpose(1, 2, 0)
