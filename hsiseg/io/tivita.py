"""Tivita ``*_SpecCube.dat`` cubes (Diaspective Vision; the HeiPorSPECTRAL data set).

Layout: a 12-byte header of three big-endian int32 ``(width, height, bands)`` = (640, 480, 100), then
big-endian float32 reflectance with the band axis fastest. To get (H, W, B): reshape to the header
shape, flip axis 1, swap axes 0 and 1. The camera writes white/dark-corrected reflectance.

Beside a cube, when present: ``*_meta.log`` (INI; read into ``meta["tivita"]``) and the RGB preview
``*_RGB-Image.png`` (first generation, crop [30:-3, 3:-3]) or ``*_HSI-RGB-Image.png`` (Surgery 2.0, crop
[50:-20, 20:-20]); its path and crop go to ``meta["rgb_image"]`` (see :func:`read_tivita_rgb`).
"""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.io.atomic import atomic_path
from hsiseg.io.cube import Cube
from hsiseg.io.formats import READERS
from hsiseg.io.limits import check_cube_size

HEADER_DTYPE = np.dtype(">i4")
DATA_DTYPE = np.dtype(">f4")
HEADER_BYTES = 12
MAX_SIDE = 100_000  # sanity bound on header values: larger means this is not a Tivita file

# Band centres (nm). "tivita" follows the reference toolkit (htc): linspace(500, 1000, 100).
WAVELENGTH_PRESETS = {
    "tivita": lambda bands: np.linspace(500.0, 1000.0, bands),
    "tivita-vendor": lambda bands: 500.0 + 5.0 * np.arange(bands),
}

RGB_PREVIEWS = (  # (file suffix replacing "_SpecCube.dat", crop rows, crop columns)
    ("_RGB-Image.png", (30, -3), (3, -3)),
    ("_HSI-RGB-Image.png", (50, -20), (20, -20)),
)


def read_header(path: Path) -> tuple[int, int, int]:
    """(width, height, bands) from the 12-byte header, checked against the file size."""
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise HsisegError(f"{path}: {size} bytes is too short for a Tivita cube (12-byte header missing)")
    width, height, bands = (int(v) for v in np.fromfile(path, dtype=HEADER_DTYPE, count=3))
    if not all(0 < v < MAX_SIDE for v in (width, height, bands)):
        raise HsisegError(
            f"{path}: header says {width} x {height} x {bands} (width, height, bands); this is not a Tivita cube"
        )
    expected = HEADER_BYTES + DATA_DTYPE.itemsize * width * height * bands
    if size != expected:
        problem = "truncated" if size < expected else "oversized"
        raise HsisegError(
            f"{path}: file is {problem}: {size} bytes, but the header ({width} x {height} x {bands}) needs {expected}"
        )
    return width, height, bands


@READERS.register("tivita", suffixes=(), listed=(".dat",))
def read_tivita(
    path: Path, wavelengths: Any = None, wavelength_preset: str = "tivita", max_bytes: int | None = None
) -> Cube:
    """Read a Tivita cube as (H, W, B) float32 (memory-mapped, one reorder-and-convert pass).

    ``max_bytes``: see :func:`hsiseg.io.limits.check_cube_size` (checked from the header before reading).
    """
    width, height, bands = read_header(path)
    check_cube_size(path, (height, width, bands), max_bytes)
    raw = np.memmap(path, dtype=DATA_DTYPE, mode="r", offset=HEADER_BYTES, shape=(width, height, bands))
    data = np.empty((height, width, bands), dtype=np.float32)
    data[...] = np.flip(raw, axis=1).swapaxes(0, 1)  # byte swap and reorder in one pass
    del raw
    if wavelengths is None:
        if wavelength_preset not in WAVELENGTH_PRESETS:
            raise HsisegError(
                f"{path}: unknown wavelength preset {wavelength_preset!r}; choose {sorted(WAVELENGTH_PRESETS)}"
            )
        wavelengths = WAVELENGTH_PRESETS[wavelength_preset](bands)
    meta: dict[str, Any] = {
        "source": str(path),
        "format": "tivita",
        "stored_dtype": "big-endian float32",
        "wavelength_preset": wavelength_preset,
    }
    meta.update(_sidecars(path))
    return Cube(data, wavelengths, meta)


def write_tivita(path: Path, cube: Cube) -> None:
    """Write a cube in the Tivita layout (for tests and for tools that only read Tivita files)."""
    height, width, bands = cube.shape
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.array([width, height, bands], dtype=HEADER_DTYPE).tofile(handle)
        stored = np.flip(cube.data.swapaxes(0, 1), axis=1)  # (W, H, B), the inverse of the read reorder
        np.ascontiguousarray(stored, dtype=DATA_DTYPE).tofile(handle)


def read_tivita_rgb(path: Path) -> np.ndarray | None:
    """The camera's RGB preview beside a cube, cropped to the cube's field of view; None if absent."""
    from skimage.io import imread

    for suffix, rows, columns in RGB_PREVIEWS:
        preview = _sibling(path, suffix)
        if preview.is_file():
            image = imread(preview)[..., :3]
            return image[rows[0] : rows[1], columns[0] : columns[1]]
    return None


def _sibling(path: Path, suffix: str) -> Path:
    stem = path.name[: -len("_SpecCube.dat")] if path.name.endswith("_SpecCube.dat") else path.stem
    return path.with_name(stem + suffix)


def _sidecars(path: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    log = _sibling(path, "_meta.log")
    if log.is_file():
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(log.read_text(encoding="utf-8", errors="replace"))
            found["tivita"] = {section: dict(parser[section]) for section in parser.sections()}
        except configparser.Error as error:
            found["tivita_meta_error"] = f"{log.name}: {error}".splitlines()[0]
    for suffix, rows, columns in RGB_PREVIEWS:
        preview = _sibling(path, suffix)
        if preview.is_file():
            found["rgb_image"] = {
                "path": str(preview),
                "crop_rows": list(rows),
                "crop_columns": list(columns),
            }
            break
    return found
