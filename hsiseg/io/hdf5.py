"""HDF5 cubes: any layout on reading, and hsiseg's own cache format on writing.

Reading (options ``dataset``, ``wavelengths_path``, ``axes``): without ``dataset`` the reader takes the
only 3-D dataset in the file, or one named ``cube``, ``data``, ``hsi`` or ``reflectance``. Band centres
come from the ``wavelengths`` option, else the dataset's ``wavelengths``/``wavelength`` attribute, else a
dataset at ``wavelengths_path`` (default: ``wavelengths`` beside the cube). ``axes`` says how the stored
axes map to height, width and bands, e.g. ``"BHW"`` for band-first storage (default ``"HWB"``).

Writing (hsiseg's cache): dataset ``cube`` (H, W, B), chunked one 64 x 64 tile with all bands per chunk,
gzip-compressed with byte shuffling, float32 or float16; dataset ``wavelengths`` (B,) float64; the cube's
meta as a JSON string attribute ``meta_json``. Float32 round trips are exact.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hsiseg.errors import HsisegError, HsisegWarning
from hsiseg.io.atomic import atomic_path
from hsiseg.io.cube import Cube, NoWavelengthsError
from hsiseg.io.formats import READERS
from hsiseg.io.limits import check_cube_size

CUBE_NAMES = ("cube", "data", "hsi", "reflectance")
WAVELENGTH_ATTRIBUTES = ("wavelengths", "wavelength")
STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16}


def check_axes(axes: Any, source: str | Path) -> str:
    """The ``axes`` option upper-cased, checked to be a permutation of "HWB"."""
    if not isinstance(axes, str) or sorted(axes.upper()) != ["B", "H", "W"]:
        raise HsisegError(f"{source}: option 'axes' must be a permutation of 'HWB', got {axes!r}")
    return axes.upper()


def hwb_shape(shape: tuple[int, ...], axes: str, source: str | Path) -> tuple[int, int, int]:
    """(H, W, B) of a 3-D array of ``shape`` stored in ``axes`` order."""
    axes = check_axes(axes, source)
    height, width, bands = (int(shape[axes.index(axis)]) for axis in "HWB")
    return height, width, bands


def reorder_axes(data: np.ndarray, axes: str, source: str | Path) -> np.ndarray:
    """(..) stored in ``axes`` order (a permutation of "HWB") -> (H, W, B)."""
    axes = check_axes(axes, source)
    return np.transpose(data, [axes.index(axis) for axis in "HWB"])


HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


@READERS.register("hdf5", suffixes=HDF5_SUFFIXES, listed=HDF5_SUFFIXES, magic=b"\x89HDF\r\n\x1a\n")
def read_hdf5(
    path: Path,
    dataset: str | None = None,
    wavelengths: Any = None,
    wavelengths_path: str | None = None,
    axes: str = "HWB",
    max_bytes: int | None = None,
) -> Cube:
    """Read a cube stored in an HDF5 file as (H, W, B) float32.

    ``max_bytes``: see :func:`hsiseg.io.limits.check_cube_size` (checked from the dataset's shape before
    reading; the stored values count too unless they are float32 in (H, W, B) order).
    """
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise HsisegError(f"{path}: not a readable HDF5 file ({error})") from None
    with handle:
        node = _find_cube(handle, dataset, path)
        if node.dtype.kind not in "fiu":
            raise HsisegError(f"{path}: dataset {node.name} holds {node.dtype} values; a cube holds numbers")
        height, width, bands = hwb_shape(node.shape, axes, path)
        if wavelengths is None:
            wavelengths = _find_wavelengths(handle, node, wavelengths_path)
        if wavelengths is None:
            raise NoWavelengthsError(
                f"{path}: no wavelengths found (attribute 'wavelengths' on {node.name} or a dataset "
                f"'{wavelengths_path or 'wavelengths'}'); pass wavelengths=... or wavelengths_path=...",
                num_bands=bands,
            )
        in_place = node.dtype == np.dtype(np.float32) and axes.upper() == "HWB"
        check_cube_size(path, (height, width, bands), max_bytes, raw_itemsize=0 if in_place else node.dtype.itemsize)
        data = reorder_axes(_read_dataset(node, path), axes, path)
        meta = _stored_meta(handle, path)
        meta.update({"source": str(path), "format": "hdf5", "dataset": node.name, "stored_dtype": str(node.dtype)})
    return Cube(np.ascontiguousarray(data, dtype=np.float32), wavelengths, meta)


def _read_dataset(node: h5py.Dataset, path: Path) -> np.ndarray:
    try:
        return node[()]
    except OSError as error:  # damaged chunks, a missing filter plugin
        raise HsisegError(f"{path}: dataset {node.name} cannot be read ({error})".splitlines()[0]) from None


def _stored_meta(handle: h5py.File, path: Path) -> dict[str, Any]:
    """The ``meta_json`` attribute hsiseg writes (empty if absent or unreadable)."""
    if "meta_json" not in handle.attrs:
        return {}
    try:
        stored = json.loads(handle.attrs["meta_json"])
    except (TypeError, ValueError):
        stored = None
    if not isinstance(stored, dict):
        warnings.warn(f"{path}: attribute 'meta_json' is not a JSON object; it is ignored", HsisegWarning, stacklevel=4)
        return {}
    return stored


def write_hdf5(path: Path, cube: Cube, dtype: str = "float32", compression: int = 4) -> None:
    """Write the hsiseg HDF5 cache format (see module docstring) atomically."""
    if dtype not in STORAGE_DTYPES:
        raise HsisegError(f"{path}: storage dtype must be one of {sorted(STORAGE_DTYPES)}, got {dtype!r}")
    height, width, bands = cube.shape
    chunks = (min(height, 64), min(width, 64), bands)
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as handle:
        handle.create_dataset(
            "cube",
            data=cube.data.astype(STORAGE_DTYPES[dtype], copy=False),
            chunks=chunks,
            compression="gzip",
            compression_opts=compression,
            shuffle=True,
        )
        handle.create_dataset("wavelengths", data=cube.wavelengths.astype(np.float64))
        handle.attrs["meta_json"] = json.dumps(cube.meta, sort_keys=True, default=str)
        handle.attrs["format"] = "hsiseg-cube-1"


def _find_cube(handle: h5py.File, dataset: str | None, path: Path) -> h5py.Dataset:
    if dataset is not None:
        if dataset not in handle or not isinstance(handle[dataset], h5py.Dataset):
            raise HsisegError(f"{path}: no dataset {dataset!r}; datasets: {_datasets(handle)}")
        node = handle[dataset]
    else:
        cubes = [name for name in _datasets(handle) if handle[name].ndim == 3]
        named = [name for name in cubes if name.rsplit("/", 1)[-1].lower() in CUBE_NAMES]
        if len(cubes) == 1:
            node = handle[cubes[0]]
        elif len(named) == 1:
            node = handle[named[0]]
        else:
            raise HsisegError(
                f"{path}: cannot tell which dataset is the cube ({cubes or 'no 3-D dataset'}); pass dataset=..."
            )
    if node.ndim != 3:
        raise HsisegError(f"{path}: dataset {node.name} has shape {node.shape}; a cube needs 3 axes")
    return node


def _find_wavelengths(handle: h5py.File, node: h5py.Dataset, wavelengths_path: str | None) -> np.ndarray | None:
    if wavelengths_path is None:
        for key in WAVELENGTH_ATTRIBUTES:
            if key in node.attrs:
                return np.asarray(node.attrs[key], dtype=np.float64)
    candidates = (
        [wavelengths_path]
        if wavelengths_path
        else [f"{node.parent.name.rstrip('/')}/{k}" for k in WAVELENGTH_ATTRIBUTES]
    )
    for candidate in candidates:
        if candidate in handle:
            return np.asarray(handle[candidate][()], dtype=np.float64)
    return None


def _datasets(handle: h5py.File) -> list[str]:
    names: list[str] = []
    handle.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return names
