"""Reader options every format shares, applied once by :func:`hsiseg.io.read_cube`.

- ``wavelengths="@path/to/bands.txt"``: band centres (nm) from a file: a text file of numbers separated by
  whitespace, commas, semicolons or newlines (``#`` starts a comment), a ``.csv`` with one column (a header
  line is allowed), or a ``.npy`` array. A relative path is relative to the working directory.
- ``scale`` and ``offset``: stored values (e.g. camera counts) become ``value * scale + offset`` after the
  reader's own conversion (ENVI: after dividing by its ``reflectance scale factor``). Pixels whose every
  band is 0 in the file carry no spectrum and stay 0, so they remain invalid. Recorded in
  ``meta["scale"]`` and ``meta["offset"]``.
"""

from __future__ import annotations

import math
import re
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.io.cube import Cube

WAVELENGTH_FILE_PREFIX = "@"
SEPARATORS = re.compile(r"[\s,;]+")


def resolve_wavelengths(value: Any) -> Any:
    """``"@file"`` -> the (B,) float64 band centres it holds; any other value unchanged."""
    if isinstance(value, str) and value.startswith(WAVELENGTH_FILE_PREFIX):
        return read_wavelengths_file(Path(value[len(WAVELENGTH_FILE_PREFIX) :].strip()))
    return value


def read_wavelengths_file(path: Path) -> np.ndarray:
    """(B,) float64 band centres from a ``.npy``, a one-column ``.csv`` or a text file of numbers."""
    if not path.is_file():
        raise HsisegError(f"{path}: wavelengths file not found (option 'wavelengths' = '@{path}')")
    if path.suffix.lower() == ".npy":
        values = _numbers_from_npy(path)
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise HsisegError(f"{path}: wavelengths file is not text; write one number (nm) per band") from None
        values = _numbers_from_csv(path, text) if path.suffix.lower() == ".csv" else _numbers_from_text(path, text)
    if values.size == 0:
        raise HsisegError(f"{path}: wavelengths file holds no numbers; write one number (nm) per band")
    return values


def _numbers_from_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise HsisegError(f"{path}: not a readable .npy wavelengths file ({error})".splitlines()[0]) from None
    if array.dtype.kind not in "fiu":
        raise HsisegError(f"{path}: wavelengths array has dtype {array.dtype}; save the band centres as numbers")
    return np.asarray(array, dtype=np.float64).reshape(-1)


def _numbers_from_text(path: Path, text: str) -> np.ndarray:
    values: list[float] = []
    for number, line in enumerate(text.splitlines(), start=1):
        for token in SEPARATORS.split(line.split("#", 1)[0].strip()):
            if token:
                values.append(_number(path, number, token))
    return np.array(values, dtype=np.float64)


def _numbers_from_csv(path: Path, text: str) -> np.ndarray:
    values: list[float] = []
    for number, line in enumerate(text.splitlines(), start=1):
        cells = [cell.strip().strip('"') for cell in line.split(",")]
        filled = [cell for cell in cells if cell]
        if not filled:
            continue
        if len(filled) > 1:
            raise HsisegError(f"{path}: line {number} has {len(filled)} columns; a wavelengths .csv has one column")
        cell = filled[0]
        if not values and number == 1 and not _is_number(cell):
            continue  # a column title
        values.append(_number(path, number, cell))
    return np.array(values, dtype=np.float64)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _number(path: Path, line: int, token: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise HsisegError(
            f"{path}: line {line}: {token[:40]!r} is not a number; a wavelengths file holds one number (nm) "
            "per band, separated by spaces, commas or newlines"
        ) from None


def check_scale_offset(scale: Any, offset: Any) -> tuple[float, float]:
    """Validated ``(scale, offset)``: scale finite and > 0 (default 1), offset finite (default 0)."""
    scale_value = _finite_number("scale", 1.0 if scale is None else scale)
    offset_value = _finite_number("offset", 0.0 if offset is None else offset)
    if scale_value <= 0:
        raise HsisegError(f"option 'scale' must be greater than 0 (e.g. 0.0001 for counts of 1/10000), got {scale!r}")
    return scale_value, offset_value


def _finite_number(name: str, value: Any) -> float:
    if isinstance(value, str) and _is_number(value):
        value = float(value)  # YAML reads 1e-4 (no dot) as text
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise HsisegError(f"option {name!r} must be a finite number, got {value!r}")
    return float(value)


def apply_scale_offset(cube: Cube, scale: float, offset: float) -> None:
    """In place: ``cube.data`` (H, W, B) float32 -> ``data * scale + offset``; all-zero pixels stay 0.

    Records ``meta["scale"]`` and ``meta["offset"]``, and maps ``meta["saturation"]`` the same way.
    """
    if not cube.data.flags.writeable:
        cube.data = np.array(cube.data)  # a read-only view of the file: never write through it
    empty = ~(cube.data != 0).any(axis=-1) if offset != 0 else None
    if scale != 1:
        cube.data *= np.float32(scale)
    if offset != 0:
        cube.data += np.float32(offset)
        cube.data[empty] = 0.0
    cube.meta["scale"] = scale
    cube.meta["offset"] = offset
    if cube.meta.get("saturation") is not None:
        cube.meta["saturation"] = float(cube.meta["saturation"]) * scale + offset
