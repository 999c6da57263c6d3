"""Image files read safely (label images, white and dark reference frames): the file is checked before it is
decoded, so a decompression bomb, a pickled NPY or an undecodable file is one :class:`HsisegError`."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from hsiseg.errors import HsisegError

MAX_IMAGE_PIXELS = 2**26  # 67,108,864 pixels (e.g. 8192 x 8192); larger annotation images are refused undecoded
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def load_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An annotation image file (PNG/TIFF via scikit-image, or NPY) as an array: (H, W) or (H, W, C).

    The file is checked before it is decoded: an image of more than ``max_pixels`` pixels (a decompression bomb,
    or the wrong file) is refused with its pixel count, an NPY file holding Python objects is refused without
    unpickling it, and a file no decoder understands is one :class:`HsisegError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise HsisegError(f"{path}: annotation file not found")
    if path.suffix.lower() == ".npy":
        return load_npy(path, max_pixels)
    check_pixel_count(path, stored_shape(path), max_pixels)
    from skimage.io import imread

    try:
        return imread(path)
    except Exception as error:  # decoders of hostile files raise anything: OSError, SyntaxError, struct.error ...
        raise HsisegError(
            f"{path}: not a readable image ({reason(error)}); annotations are PNG, TIFF or NPY label images"
        ) from None


def load_npy(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An NPY array, never unpickled: object arrays and oversized arrays are refused from the header alone."""
    shape, dtype = npy_header(path)
    if dtype.hasobject:
        raise HsisegError(
            f"{path}: holds Python objects (dtype {dtype}), which hsiseg never unpickles; "
            "save the labels as an integer array (numpy.save(path, labels.astype('int32')))"
        )
    check_pixel_count(path, shape[:2], max_pixels)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise HsisegError(f"{path}: not a readable NPY file ({reason(error)})") from None


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from an NPY file's header, without reading its data."""
    from numpy.lib import format as npy_format

    with path.open("rb") as handle:
        try:
            version = npy_format.read_magic(handle)
            read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, _, dtype = read(handle)
        except (ValueError, OSError, EOFError, SyntaxError) as error:
            raise HsisegError(f"{path}: not an NPY file ({reason(error)})") from None
    return tuple(shape), dtype


def stored_shape(path: Path) -> tuple[int, int, int] | None:
    """(H, W, frames) of a PNG or TIFF, read from the file's header without decoding pixels; None for other
    files (the decoder then reports what it finds)."""
    with path.open("rb") as handle:
        head = handle.read(24)
    if head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return height, width, 1
    if head[:4] in TIFF_SIGNATURES:
        try:
            import tifffile

            with tifffile.TiffFile(path) as tiff:
                page = tiff.pages.first
                return int(page.imagelength), int(page.imagewidth), len(tiff.pages)
        except Exception:  # a broken TIFF: the decoder reports it
            return None
    return None


def check_pixel_count(path: Path, shape: tuple[int, ...] | None, max_pixels: int) -> None:
    """Refuse an image of ``shape`` (H, W) or (H, W, frames) with more than ``max_pixels`` pixels in all, before
    decoding it."""
    if shape is None or len(shape) < 2:
        return
    pixels = math.prod(shape)
    if pixels > max_pixels:
        raise HsisegError(
            f"{path}: {shape[0]} x {shape[1]} image with {pixels:,} pixels, more than the {max_pixels:,} an annotation "
            "image may have (a decompression bomb or the wrong file); crop or downsample it"
        )


def reason(error: BaseException) -> str:
    """``Type: first line of the message`` (at most 120 characters), for one-line error messages."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."
