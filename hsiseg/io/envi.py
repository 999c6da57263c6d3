"""ENVI cubes (``.hdr`` + ``.img``/``.raw``/``.dat``/no extension; BIL, BIP, BSQ) through Spectral Python.

The header is read and checked first so that the usual pitfalls become one clear message naming the field
and what to write: a missing ``byte order`` or one other than 0/1, ``lines``/``samples``/``bands`` that are
not whole numbers > 0, a negative ``header offset``, an ``interleave`` other than bsq/bil/bip, a
``reflectance scale factor`` that is not > 0, a data file that cannot be found or is shorter than the header
says (a longer one is read with a :class:`HsisegWarning`), frame offsets. Header fields with meaning:

- ``wavelength`` (with ``wavelength units``: micrometres are converted to nm) -> ``Cube.wavelengths``;
- ``reflectance scale factor`` -> data are divided by it (e.g. 10000 for integer reflectance);
- ``bbl`` (bad band list, 0 = bad) -> bad bands are dropped unless ``drop_bad_bands=False``;
- ``fwhm`` -> ``meta["fwhm"]``.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from spectral.io import envi

from hsiseg.errors import HsisegError, HsisegWarning
from hsiseg.io.atomic import atomic_path
from hsiseg.io.cube import Cube, NoWavelengthsError, wavelength_values
from hsiseg.io.formats import READERS
from hsiseg.io.limits import check_cube_size

DATA_EXTENSIONS = ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip", ".sli")
MANDATORY_KEYS = ("lines", "samples", "bands", "data type", "interleave")
MICROMETRE_UNITS = {"micrometers", "micrometres", "microns", "um", "µm"}
INTERLEAVES = ("bsq", "bil", "bip")
SIZE_FIELDS = {"lines": "image rows", "samples": "image columns", "bands": "bands"}


@dataclass(frozen=True)
class EnviLayout:
    """The checked numbers of an ENVI header: how the data file is laid out."""

    lines: int
    samples: int
    bands: int
    dtype: np.dtype
    interleave: str
    byte_order: int
    header_offset: int
    scale: float  # reflectance scale factor; 1.0 when absent

    @property
    def data_bytes(self) -> int:
        """Bytes the header says the data file holds (offset included)."""
        return self.header_offset + self.lines * self.samples * self.bands * self.dtype.itemsize


def header_path_for(path: Path) -> Path:
    """The ``.hdr`` of an ENVI cube given either its header or its data file."""
    if path.suffix.lower() == ".hdr":
        return path
    for candidate in (path.with_suffix(".hdr"), Path(str(path) + ".hdr")):
        if candidate.is_file():
            return candidate
    raise HsisegError(f"{path}: no ENVI header found beside it (looked for {path.with_suffix('.hdr').name})")


def data_path_for(header_path: Path, header: dict[str, Any]) -> Path:
    """The data file beside a header, as ENVI tools name it."""
    stem = header_path.with_suffix("")
    interleave = str(header.get("interleave", "")).lower()
    for extension in (*DATA_EXTENSIONS, f".{interleave}"):
        for candidate in (Path(str(stem) + extension), Path(str(stem) + extension.upper())):
            if candidate.is_file() and candidate != header_path:
                return candidate
    raise HsisegError(
        f"{header_path}: ENVI data file not found (looked for {stem.name} with extensions "
        f"{', '.join(e or '(none)' for e in DATA_EXTENSIONS)}); put it beside the header with the same name"
    )


def read_header(header_path: Path) -> dict[str, Any]:
    """Parse and check an ENVI header; raise one clear error for what Spectral would trip over."""
    if not header_path.is_file():
        raise HsisegError(f"{header_path}: ENVI header not found")
    try:
        header = envi.read_envi_header(str(header_path))
    except Exception as error:  # spectral raises several unrelated types for malformed headers
        raise HsisegError(f"{header_path}: not a readable ENVI header: {error}".splitlines()[0]) from None
    missing = [key for key in MANDATORY_KEYS if key not in header]
    if missing:
        raise HsisegError(f"{header_path}: ENVI header lacks {missing}")
    if "byte order" not in header:
        raise HsisegError(
            f"{header_path}: ENVI header lacks 'byte order'; add 'byte order = 0' (little-endian, most files "
            "written on PCs) or 'byte order = 1' (big-endian)"
        )
    if any(key in header for key in ("major frame offsets", "minor frame offsets")):
        raise HsisegError(f"{header_path}: ENVI frame offsets are not supported; rewrite the file without them")
    header_layout(header_path, header)  # every number checked, so info and read agree
    return header


def header_layout(header_path: Path, header: dict[str, Any]) -> EnviLayout:
    """The layout fields of a parsed header, each checked; one error naming the field and what to write."""
    lines, samples, bands = (_size_field(header_path, header, key) for key in SIZE_FIELDS)
    data_type = str(header["data type"]).strip()
    if data_type not in envi.envi_to_dtype:
        raise HsisegError(
            f"{header_path}: unknown ENVI 'data type' {data_type!r}; write one of "
            f"{', '.join(sorted(envi.envi_to_dtype, key=int))} (4 = float32, 2 = int16, 12 = uint16)"
        )
    interleave = str(header["interleave"]).strip().lower()
    if interleave not in INTERLEAVES:
        raise HsisegError(
            f"{header_path}: ENVI 'interleave' is {header['interleave']!r}; write 'interleave = bsq' (band "
            "sequential), 'bil' (band interleaved by line) or 'bip' (band interleaved by pixel)"
        )
    byte_order = str(header["byte order"]).strip()
    if byte_order not in ("0", "1"):
        raise HsisegError(
            f"{header_path}: ENVI 'byte order' is {header['byte order']!r}; write 'byte order = 0' "
            "(little-endian, most files written on PCs) or 'byte order = 1' (big-endian)"
        )
    offset = _whole_number(header.get("header offset", "0"))
    if offset is None or offset < 0:
        raise HsisegError(
            f"{header_path}: ENVI 'header offset' is {header.get('header offset')!r}; write the number of bytes "
            "before the data, a whole number >= 0 (usually 'header offset = 0')"
        )
    return EnviLayout(
        lines=lines,
        samples=samples,
        bands=bands,
        dtype=np.dtype(envi.envi_to_dtype[data_type]),
        interleave=interleave,
        byte_order=int(byte_order),
        header_offset=offset,
        scale=_scale_factor(header_path, header),
    )


def _whole_number(value: Any) -> int | None:
    """``value`` as an int, or None if it is not a whole number written in digits."""
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return None


def _size_field(header_path: Path, header: dict[str, Any], key: str) -> int:
    value = _whole_number(header[key])
    if value is None or value <= 0:
        raise HsisegError(
            f"{header_path}: ENVI {key!r} is {header[key]!r}; write the number of {SIZE_FIELDS[key]}, a whole "
            f"number > 0 in digits (e.g. '{key} = 480')"
        )
    return value


def _scale_factor(header_path: Path, header: dict[str, Any]) -> float:
    if "reflectance scale factor" not in header:
        return 1.0
    raw = header["reflectance scale factor"]
    try:
        scale = float(str(raw).strip())
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise HsisegError(
            f"{header_path}: ENVI 'reflectance scale factor' is {raw!r}; write the stored value that means "
            "reflectance 1, a number > 0 (e.g. 'reflectance scale factor = 10000'), or delete the line if the "
            "data are reflectance already"
        )
    return scale


@READERS.register("envi", suffixes=(".hdr", ".img", ".raw", ".bsq", ".bil", ".bip"), listed=(".hdr",), magic=b"ENVI")
def read_envi(path: Path, wavelengths: Any = None, drop_bad_bands: bool = True, max_bytes: int | None = None) -> Cube:
    """Read an ENVI cube (any interleave, byte order and numeric type) as (H, W, B) float32.

    ``max_bytes``: see :func:`hsiseg.io.limits.check_cube_size` (checked from the header before reading).
    """
    header_path = header_path_for(path)
    header = read_header(header_path)
    layout = header_layout(header_path, header)
    data_path = data_path_for(header_path, header)
    if layout.dtype.kind == "c":
        raise HsisegError(
            f"{header_path}: complex ENVI data ({layout.dtype.name}) is not a reflectance cube; convert it first"
        )
    _check_data_size(header_path, data_path, layout)
    wavelengths = _header_wavelengths(header_path, header, layout) if wavelengths is None else wavelengths
    check_cube_size(header_path, (layout.lines, layout.samples, layout.bands), max_bytes)
    image = envi.open(str(header_path), str(data_path))
    data = np.array(image.open_memmap(interleave="bip"), dtype=np.float32, order="C")  # a copy: never the file
    if layout.scale != 1.0:
        data /= np.float32(layout.scale)
    meta: dict[str, Any] = {
        "source": str(header_path),
        "format": "envi",
        "stored_dtype": f"{'big' if layout.byte_order else 'little'}-endian {layout.dtype.name}",
        "interleave": layout.interleave,
        "byte_order": layout.byte_order,
        "envi_data_type": int(header["data type"]),
    }
    if layout.scale != 1.0:
        meta["reflectance_scale_factor"] = layout.scale
    if "fwhm" in header:
        meta["fwhm"] = [float(value) for value in header["fwhm"]]
    wavelengths = wavelength_values(wavelengths, header_path)
    if "bbl" in header and drop_bad_bands:
        good = np.array([float(value) != 0 for value in header["bbl"]])
        if good.size != layout.bands:
            raise HsisegError(f"{header_path}: 'bbl' has {good.size} entries for {layout.bands} bands")
        if not good.all():
            meta["dropped_bad_bands"] = [int(i) for i in np.flatnonzero(~good)]
            data = np.ascontiguousarray(data[:, :, good])
            if wavelengths.size == layout.bands:
                wavelengths = wavelengths[good]
    return Cube(data, wavelengths, meta)


def _check_data_size(header_path: Path, data_path: Path, layout: EnviLayout) -> None:
    """Refuse a data file shorter than the header says; warn about one that is longer."""
    expected, size = layout.data_bytes, data_path.stat().st_size
    described = (
        f"the header ({layout.lines} lines x {layout.samples} samples x {layout.bands} bands of "
        f"{layout.dtype.name}, header offset {layout.header_offset})"
    )
    if size < expected:
        raise HsisegError(f"{data_path}: ENVI data file is truncated: {size} bytes, {described} needs {expected}")
    if size > expected:
        warnings.warn(
            f"{data_path}: ENVI data file has {size} bytes, {size - expected} more than {described} describes; "
            "the extra bytes at the end are ignored: check 'lines', 'samples', 'bands', 'data type' and "
            f"'header offset' in {header_path.name}",
            HsisegWarning,
            stacklevel=3,
        )


def _header_wavelengths(header_path: Path, header: dict[str, Any], layout: EnviLayout) -> np.ndarray:
    """(B,) band centres in nm from the header's ``wavelength`` (micrometres converted)."""
    if "wavelength" not in header:
        raise NoWavelengthsError(
            f"{header_path}: no 'wavelength' in the ENVI header; pass wavelengths=... (a list of nm, or "
            "'@bands.txt' naming a file of them)",
            num_bands=layout.bands,
        )
    try:
        wavelengths = np.array([float(value) for value in header["wavelength"]])
    except (TypeError, ValueError):
        raise HsisegError(
            f"{header_path}: ENVI 'wavelength' holds a value that is not a number; write "
            "'wavelength = { 500.0, 510.0, ... }' (one number per band)"
        ) from None
    if str(header.get("wavelength units", "nanometers")).lower() in MICROMETRE_UNITS:
        wavelengths = wavelengths * 1000.0
    return wavelengths


def write_envi(path: Path, cube: Cube, interleave: str = "bsq", byte_order: int = 0) -> None:
    """Write ``path`` (``.hdr``) and its ``.img`` data file atomically (data first, then the header)."""
    header_path = path if path.suffix.lower() == ".hdr" else path.with_suffix(".hdr")
    data_path = header_path.with_suffix(".img")
    metadata = {
        "wavelength": [repr(float(value)) for value in cube.wavelengths],
        "wavelength units": "Nanometers",
        "description": "written by hsiseg",
    }
    # the inner context (data) is renamed into place first, so a header never points at missing data
    with atomic_path(header_path) as temporary_header, atomic_path(data_path) as temporary_data:
        # spectral writes "<name>.hdr" + "<name>.img"; let it write into a private temporary pair
        scratch = temporary_header.with_name(temporary_header.name + ".hdr")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            envi.save_image(
                str(scratch),
                cube.data,
                dtype=np.float32,
                interleave=interleave,
                byteorder=byte_order,
                metadata=metadata,
                force=True,
                ext=".img",
            )
        os.replace(scratch.with_suffix(".img"), temporary_data)
        os.replace(scratch, temporary_header)
