"""``read_cube`` and ``write_cube``: any registered cube format, with the options every format shares
(see :mod:`hsiseg.io`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.errors import HsisegError, HsisegWarning
from hsiseg.io.cube import Cube
from hsiseg.io.envi import write_envi
from hsiseg.io.formats import READERS, detect_format
from hsiseg.io.hdf5 import write_hdf5
from hsiseg.io.limits import GB, resolve_max_bytes
from hsiseg.io.reader_options import apply_scale_offset, check_scale_offset, resolve_wavelengths
from hsiseg.io.tivita import write_tivita
from hsiseg.registry import Registry

NONFINITE_RULES = ("zero", "error", "keep")
SHARED_OPTIONS = ("nonfinite", "wavelengths", "scale", "offset", "max_bytes")  # read_cube's own, every format
WRITERS: Registry = Registry("cube writer")
WRITERS.add("hdf5", write_hdf5, suffixes=(".h5", ".hdf5"))
WRITERS.add("envi", write_envi, suffixes=(".hdr",))
WRITERS.add("tivita", write_tivita, suffixes=(".dat",))


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
    accepted = set(READERS.options(kind))
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
    kind = format or next((name for name in WRITERS if path.suffix.lower() in WRITERS.meta(name)["suffixes"]), None)
    if kind is None or kind not in WRITERS:
        raise HsisegError(f"{path}: cannot write this format; use .h5/.hdf5 (HDF5), .hdr (ENVI) or _SpecCube.dat")
    WRITERS[kind](path, cube, **options)
    return path


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
