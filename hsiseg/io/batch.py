"""Whole folders of cubes: summaries (``hsiseg info``) and format conversion (``hsiseg convert``)."""

from __future__ import annotations

import glob
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.io import CubeTooLargeError, NoWavelengthsError, detect_format, find_cubes, read_cube, write_cube
from hsiseg.io.atomic import check_output_folder
from hsiseg.spectral.normalization import valid_pixels

OUTPUT_SUFFIXES = {"hdf5": ".h5", "envi": ".hdr"}


def expand_inputs(inputs: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """(cube file, folder it was found under) for every input file, and every cube inside input folders."""
    found: list[tuple[Path, Path]] = []
    for entry in map(Path, inputs):
        if entry.is_dir():
            found.extend((path, entry) for path in find_cubes(entry))
        elif entry.exists():
            found.append((entry, entry.parent))
        elif any(character in str(entry) for character in "*?["):  # a quoted glob the shell did not expand
            matches = sorted(Path(match) for match in glob.glob(str(entry), recursive=True))
            if not matches:
                raise HsisegError(f"{entry}: the pattern matches no file")
            found.extend((path, path.parent) for path in matches if path.is_file())
        else:
            raise HsisegError(f"{entry}: no such file or folder")
    return found


def cube_files_size(path: Path) -> int:
    """Bytes on disk of a cube, counting an ENVI header and its data file together."""
    size = path.stat().st_size
    if detect_format(path) == "envi":
        from hsiseg.io.envi import data_path_for, header_path_for, read_header

        header = header_path_for(path)
        data = data_path_for(header, read_header(header))
        size = header.stat().st_size + data.stat().st_size
    return size


def summarize_cube(path: Path, **options: Any) -> dict[str, Any]:
    """Shape, stored type, wavelength range, value range and problem counts of one cube file.

    A file without band centres is still summarised: its wavelength fields are None.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cube = read_cube(path, nonfinite="keep", **options)
            known = True
        except NoWavelengthsError as error:
            if error.num_bands is None:
                raise
            cube = read_cube(path, nonfinite="keep", **{**options, "wavelengths": np.arange(1.0, error.num_bands + 1)})
            known = False
    data = cube.data
    finite = np.isfinite(data)
    values = data[finite]
    height, width, bands = cube.shape
    return {
        "path": str(path),
        "format": cube.meta.get("format", "?"),
        "shape": [height, width, bands],
        "stored_dtype": str(cube.meta.get("stored_dtype", "?")),
        "wavelength_min_nm": float(cube.wavelengths[0]) if known else None,
        "wavelength_max_nm": float(cube.wavelengths[-1]) if known else None,
        "value_min": float(values.min()) if values.size else None,
        "value_max": float(values.max()) if values.size else None,
        "nan_count": int(np.isnan(data).sum()),
        "inf_count": int(np.isinf(data).sum()),
        "zero_pixels": int((~(data != 0).any(axis=-1)).sum()),
        "invalid_pixels": int((~valid_pixels(data)).sum()),
        "file_bytes": cube_files_size(path),
    }


@dataclass
class Summary:
    """One file of ``hsiseg info``: its summary, or the one-line reason it could not be read."""

    path: Path
    root: Path
    summary: dict[str, Any] | None = None
    error: str | None = None
    too_large: bool = False  # the error is the memory limit (max_bytes)


def summarize_cubes(inputs: Iterable[str | Path], **options: Any) -> Iterator[Summary]:
    """Summarise every cube of ``inputs`` (files or folders); a failing file is recorded and the batch goes on."""
    for path, root in expand_inputs(inputs):
        item = Summary(path, root)
        try:
            item.summary = summarize_cube(path, **options)
        except Exception as error:  # noqa: BLE001 - one bad file must not stop a folder; reported in one line
            item.error, item.too_large = describe_failure(path, error), isinstance(error, CubeTooLargeError)
        yield item


def describe_failure(path: Path, error: Exception) -> str:
    """One line saying why ``path`` failed: the message of a user error, else the unexpected error's type."""
    if isinstance(error, HsisegError):
        return str(error).splitlines()[0] if str(error) else f"{path}: {type(error).__name__}"
    text = str(error).splitlines()[0] if str(error) else ""
    if isinstance(error, OSError):
        return f"{path}: {text or type(error).__name__}"
    if isinstance(error, MemoryError):
        return f"{path}: out of memory while reading it; free memory or lower max_bytes to refuse such files"
    return (
        f"{path}: cannot be read ({type(error).__name__}{': ' + text[:200] if text else ''}); the file is damaged "
        "or a variant hsiseg does not know: check it with the tool that wrote it"
    )


@dataclass
class Conversion:
    """One file of a conversion: where it came from, where it went, and what went wrong (if anything)."""

    source: Path
    target: Path
    error: str | None = None
    skipped: bool = False
    too_large: bool = False  # the error is the memory limit (max_bytes)


def plan_conversion(inputs: Iterable[str | Path], output: Path, to: str = "hdf5") -> list[Conversion]:
    """Target paths under ``output``: folder inputs keep their relative layout, files go to its top. Files
    already inside ``output`` are not inputs (``convert DIR -o DIR/cache`` run twice converts DIR once)."""
    if to not in OUTPUT_SUFFIXES:
        raise HsisegError(f"convert: unknown output format {to!r}; choose one of {sorted(OUTPUT_SUFFIXES)}")
    check_output_folder(output)
    plan = []
    inside = output.resolve()
    for source, root in expand_inputs(inputs):
        if source.resolve().is_relative_to(inside):
            continue  # converted by an earlier run into an output folder below the input folder
        relative = source.relative_to(root) if source.is_relative_to(root) else Path(source.name)
        plan.append(Conversion(source, output / relative.with_suffix(OUTPUT_SUFFIXES[to])))
    targets = [item.target for item in plan]
    clashes = sorted({str(t) for t in targets if targets.count(t) > 1})
    if clashes:
        raise HsisegError(f"convert: several inputs would be written to {clashes[0]}; convert them separately")
    return plan


def convert_cubes(
    plan: list[Conversion],
    to: str = "hdf5",
    dtype: str = "float32",
    overwrite: bool = False,
    reader_options: dict[str, Any] | None = None,
    on_done: Callable[[Conversion], None] | None = None,
) -> Iterator[Conversion]:
    """Convert every planned file; a failing file is recorded and the batch goes on."""
    writer_options = {"dtype": dtype} if to == "hdf5" else {}
    for item in plan:
        try:
            if item.target.exists() and not overwrite:
                item.skipped = True
                item.error = f"{item.target} exists (use --overwrite to replace it)"
            else:
                cube = read_cube(item.source, **(reader_options or {}))
                write_cube(item.target, cube, format=to, **writer_options)
        except Exception as error:  # noqa: BLE001 - one bad file must not stop a folder; reported in one line
            item.error, item.too_large = describe_failure(item.source, error), isinstance(error, CubeTooLargeError)
        if on_done is not None:
            on_done(item)
        yield item
