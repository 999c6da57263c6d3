"""Reading and writing hyperspectral cubes: ``read_cube(path, **options) -> Cube`` and ``write_cube``.

==============  ===================================  =============================================
format          files                                options
==============  ===================================  =============================================
``tivita``      ``*_SpecCube.dat``                   ``wavelengths``, ``wavelength_preset``
``envi``        ``.hdr`` + data (BIL/BIP/BSQ)        ``wavelengths``, ``drop_bad_bands``
``hdf5``        ``.h5``, ``.hdf5``, ``.hdf``         ``dataset``, ``wavelengths``, ``wavelengths_path``, ``axes``
``npy``         ``.npy``                             ``wavelengths`` (required), ``axes``, ``image_shape``
``npz``         ``.npz``                             ``variable``, ``wavelengths``, ``axes``, ``image_shape``
``mat``         ``.mat`` (v5 and v7.3)               ``variable``, ``wavelengths``, ``axes``, ``image_shape``
==============  ===================================  =============================================

The format is taken from the extension, then from the file's magic bytes; ``format=...`` overrides both.
Every format also takes these options, applied once by :func:`read_cube` (see
:mod:`hsiseg.io.reader_options` and :mod:`hsiseg.io.limits`):

- ``nonfinite``: ``"zero"`` (default: NaN/Inf values are set to 0 with a :class:`HsisegWarning` that counts
  them; zero pixels count as invalid downstream), ``"error"`` or ``"keep"``;
- ``wavelengths="@bands.txt"``: band centres (nm) from a text, one-column ``.csv`` or ``.npy`` file;
- ``scale``, ``offset``: values become ``value * scale + offset`` (e.g. counts -> reflectance) after the
  reader's own conversion (ENVI divides by its ``reflectance scale factor`` first); all-zero pixels stay 0;
  recorded in ``meta["scale"]`` and ``meta["offset"]``;
- ``max_bytes``: refuse, before allocating, a cube whose declared shape needs more memory than this (float32
  cube plus any raw copy held while reading); default: half of the machine's physical memory.

Inputs are only ever opened for reading.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.errors import HsisegError, HsisegWarning
from hsiseg.io.arrays import read_mat, read_npy, read_npz
from hsiseg.io.atomic import atomic_path
from hsiseg.io.cube import Cube, NoWavelengthsError, check_wavelengths, invalid_pixels
from hsiseg.io.envi import read_envi, write_envi
from hsiseg.io.hdf5 import read_hdf5, write_hdf5
from hsiseg.io.limits import GB, CubeTooLargeError, resolve_max_bytes
from hsiseg.io.reader_options import apply_scale_offset, check_scale_offset, resolve_wavelengths
from hsiseg.io.tivita import read_tivita, read_tivita_rgb, write_tivita

__all__ = [
    "CUBE_EXTENSIONS",
    "READERS",
    "SHARED_OPTIONS",
    "Cube",
    "CubeTooLargeError",
    "NoWavelengthsError",
    "invalid_pixels",
    "atomic_path",
    "check_wavelengths",
    "detect_format",
    "find_cubes",
    "read_cube",
    "read_tivita_rgb",
    "write_cube",
]

READERS: dict[str, Callable[..., Cube]] = {
    "tivita": read_tivita,
    "envi": read_envi,
    "hdf5": read_hdf5,
    "npy": read_npy,
    "npz": read_npz,
    "mat": read_mat,
}
EXTENSIONS = {
    ".hdr": "envi",
    ".img": "envi",
    ".raw": "envi",
    ".bsq": "envi",
    ".bil": "envi",
    ".bip": "envi",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".npy": "npy",
    ".npz": "npz",
    ".mat": "mat",
}
CUBE_EXTENSIONS = (
    ".dat",
    ".hdr",
    ".h5",
    ".hdf5",
    ".hdf",
    ".npy",
    ".npz",
    ".mat",
)  # what folders are searched for
NONFINITE_RULES = ("zero", "error", "keep")
SHARED_OPTIONS = ("nonfinite", "wavelengths", "scale", "offset", "max_bytes")  # read_cube's own, every format


def detect_format(path: Path) -> str:
    """The reader for ``path``: extension first (``.dat`` is ENVI data when a header sits beside it), then magic."""
    suffix = path.suffix.lower()
    if suffix == ".dat":
        has_header = path.with_suffix(".hdr").is_file() or Path(str(path) + ".hdr").is_file()
        return "envi" if has_header and not path.name.endswith("_SpecCube.dat") else "tivita"
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    with open(path, "rb") as handle:
        start = handle.read(1024)
    if start.startswith(b"\x93NUMPY"):
        return "npy"
    if start.startswith(b"PK\x03\x04"):
        return "npz"
    if start.startswith(b"MATLAB"):
        return "mat"
    if start.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if start.startswith(b"ENVI"):
        return "envi"
    raise HsisegError(
        f"{path}: unknown cube format (extension {suffix or '(none)'!r}); use one of "
        f"{sorted(set(EXTENSIONS) | {'.dat'})} or pass format=... ({sorted(READERS)})"
    )


def read_cube(
    path: str | Path,
    format: str | None = None,
    nonfinite: str = "zero",
    *,
    scale: float | None = None,
    offset: float | None = None,
    max_bytes: float | None = None,
    **options: Any,
) -> Cube:
    """Read a cube file as a :class:`Cube` with (H, W, B) float32 data and wavelengths in nm.

    Parameters
    ----------
    path: the cube file (for ENVI, the header or the data file).
    format: one of :data:`READERS`; default: detected from the file.
    nonfinite: what to do with NaN/Inf values: ``"zero"`` (warn and set to 0), ``"error"``, ``"keep"``.
    scale, offset: values become ``value * scale + offset`` (after the reader's own conversion); all-zero
        pixels stay 0. Default: unchanged.
    max_bytes: refuse (:class:`CubeTooLargeError`) a cube whose declared shape needs more memory than this,
        before allocating it; default: half of the machine's physical memory.
    options: reader options (see the module docstring), e.g. ``wavelengths=...`` (a list of nm, or
        ``"@bands.txt"``) or ``dataset="/cube"``.
    """
    path = Path(path)
    kind = _check_path_and_format(path, format)
    if nonfinite not in NONFINITE_RULES:
        raise HsisegError(f"option 'nonfinite' must be one of {NONFINITE_RULES}, got {nonfinite!r}")
    rescale = scale is not None or offset is not None
    scale_value, offset_value = check_scale_offset(scale, offset)
    limit = resolve_max_bytes(max_bytes)
    reader = READERS[kind]
    accepted = set(inspect.signature(reader).parameters) - {"path", "max_bytes"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise HsisegError(
            f"{path}: the {kind} reader has no option(s) {unknown}; its options: {sorted(accepted)}, and for "
            f"every format: {list(SHARED_OPTIONS)}"
        )
    if "wavelengths" in options:
        options["wavelengths"] = resolve_wavelengths(options["wavelengths"])
    try:
        cube = reader(path, max_bytes=limit, **options)
    except MemoryError:
        raise HsisegError(
            f"{path}: ran out of memory while reading (the read was allowed {limit / GB:.1f} GB, max_bytes); "
            "free memory or read it on a machine with more"
        ) from None
    _handle_nonfinite(cube, nonfinite, path)
    if rescale:
        apply_scale_offset(cube, scale_value, offset_value)
    return cube


def _check_path_and_format(path: Path, format: str | None) -> str:
    if not path.exists():
        raise HsisegError(f"{path}: file not found")
    if path.is_dir():
        raise HsisegError(f"{path}: is a folder; pass a cube file (hsiseg finds cubes in folders with find_cubes)")
    kind = format or detect_format(path)
    if kind not in READERS:
        raise HsisegError(f"{path}: unknown format {kind!r}; choose one of {sorted(READERS)}")
    return kind


def write_cube(path: str | Path, cube: Cube, format: str | None = None, **options: Any) -> Path:
    """Write a cube atomically: HDF5 (``.h5``/``.hdf5``; options ``dtype``, ``compression``), ENVI (``.hdr``;
    options ``interleave``, ``byte_order``) or Tivita (``*_SpecCube.dat``). Returns the written path.
    """
    path = Path(path)
    kind = format or {".h5": "hdf5", ".hdf5": "hdf5", ".hdr": "envi", ".dat": "tivita"}.get(path.suffix.lower())
    writers: dict[str, Callable[..., None]] = {"hdf5": write_hdf5, "envi": write_envi, "tivita": write_tivita}
    if kind not in writers:
        raise HsisegError(f"{path}: cannot write this format; use .h5/.hdf5 (HDF5), .hdr (ENVI) or _SpecCube.dat")
    writers[kind](path, cube, **options)
    return path


def find_cubes(folder: str | Path) -> list[Path]:
    """Cube files under ``folder`` (recursive, sorted); ENVI data files beside a header are not listed twice."""
    folder = Path(folder)
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in CUBE_EXTENSIONS or path.name.startswith("."):
            continue
        if path.suffix.lower() == ".dat" and detect_format(path) == "envi":
            continue  # its .hdr is listed
        found.append(path)
    return found


def _handle_nonfinite(cube: Cube, rule: str, path: Path) -> None:
    if rule == "keep":
        return
    bad = ~np.isfinite(cube.data)
    count = int(bad.sum())
    if not count:
        return
    if rule == "error":
        raise HsisegError(f"{path}: {count} NaN/Inf values; read with nonfinite='zero' to set them to 0")
    if not cube.data.flags.writeable:
        cube.data = np.array(cube.data)  # a read-only view of the file: never write through it
    cube.data[bad] = 0.0
    cube.repaired = bad.any(axis=-1) if cube.repaired is None else cube.repaired | bad.any(axis=-1)
    cube.meta["nonfinite_set_to_zero"] = count
    warnings.warn(f"{path}: {count} NaN/Inf values set to 0", HsisegWarning, stacklevel=2)
