"""ENVI cubes (``.hdr`` + ``.img``/``.raw``/``.dat``/no extension; BIL, BIP, BSQ) through Spectral Python.

The header is read and checked first so that the usual pitfalls become one clear message: a missing
``byte order``, a data file that cannot be found, a data file shorter than the header says, frame
offsets. Header fields with meaning:

- ``wavelength`` (with ``wavelength units``: micrometres are converted to nm) -> ``Cube.wavelengths``;
- ``reflectance scale factor`` -> data are divided by it (e.g. 10000 for integer reflectance);
- ``bbl`` (bad band list, 0 = bad) -> bad bands are dropped unless ``drop_bad_bands=False``;
- ``fwhm`` -> ``meta["fwhm"]``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from spectral.io import envi

from hsiseg.errors import HsisegError
from hsiseg.io.atomic import atomic_path
from hsiseg.io.cube import Cube

DATA_EXTENSIONS = ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip", ".sli")
MANDATORY_KEYS = ("lines", "samples", "bands", "data type", "interleave")
MICROMETRE_UNITS = {"micrometers", "micrometres", "microns", "um", "µm"}


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
    if str(header["data type"]) not in envi.envi_to_dtype:
        raise HsisegError(f"{header_path}: unknown ENVI data type {header['data type']}")
    return header


def read_envi(path: Path, wavelengths: Any = None, drop_bad_bands: bool = True) -> Cube:
    """Read an ENVI cube (any interleave, byte order and numeric type) as (H, W, B) float32."""
    header_path = header_path_for(path)
    header = read_header(header_path)
    data_path = data_path_for(header_path, header)
    lines, samples, bands = (int(header[key]) for key in ("lines", "samples", "bands"))
    dtype = np.dtype(envi.envi_to_dtype[str(header["data type"])])
    if dtype.kind == "c":
        raise HsisegError(
            f"{header_path}: complex ENVI data ({dtype.name}) is not a reflectance cube; convert it first"
        )
    offset = int(header.get("header offset", 0))
    expected = offset + lines * samples * bands * dtype.itemsize
    size = data_path.stat().st_size
    if size < expected:
        raise HsisegError(
            f"{data_path}: ENVI data file is truncated: {size} bytes, the header "
            f"({lines} lines x {samples} samples x {bands} bands of {dtype.name}) needs {expected}"
        )
    image = envi.open(str(header_path), str(data_path))
    data = np.ascontiguousarray(image.open_memmap(interleave="bip"), dtype=np.float32)
    scale = float(header.get("reflectance scale factor", 1.0))
    if scale not in (0.0, 1.0):
        data /= np.float32(scale)
    meta: dict[str, Any] = {
        "source": str(header_path),
        "format": "envi",
        "interleave": str(header["interleave"]).lower(),
        "byte_order": int(header["byte order"]),
        "envi_data_type": int(header["data type"]),
    }
    if scale not in (0.0, 1.0):
        meta["reflectance_scale_factor"] = scale
    if "fwhm" in header:
        meta["fwhm"] = [float(value) for value in header["fwhm"]]
    if wavelengths is None and "wavelength" in header:
        wavelengths = np.array([float(value) for value in header["wavelength"]])
        if str(header.get("wavelength units", "nanometers")).lower() in MICROMETRE_UNITS:
            wavelengths = wavelengths * 1000.0
    if wavelengths is None:
        raise HsisegError(
            f"{header_path}: no 'wavelength' in the ENVI header; pass wavelengths=... (reader option "
            "'wavelengths' in a data spec, --wavelengths on the command line)"
        )
    wavelengths = np.asarray(wavelengths, dtype=np.float64)
    if "bbl" in header and drop_bad_bands:
        good = np.array([float(value) != 0 for value in header["bbl"]])
        if good.size != bands:
            raise HsisegError(f"{header_path}: 'bbl' has {good.size} entries for {bands} bands")
        if not good.all():
            meta["dropped_bad_bands"] = [int(i) for i in np.flatnonzero(~good)]
            data = np.ascontiguousarray(data[:, :, good])
            if wavelengths.size == bands:
                wavelengths = wavelengths[good]
    return Cube(data, wavelengths, meta)


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
