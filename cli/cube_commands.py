"""``hsiseg info`` and ``hsiseg convert``: look at cube files, and convert them (e.g. to an HDF5 cache)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hsiseg.errors import HsisegError
from hsiseg.io.batch import convert_cubes, plan_conversion, summarize_cubes

from .errors import USER_ERROR_EXIT_CODE, reports_errors
from .options import MAX_CUBE_HINT, MaxCubeGB, ReaderOptions, reader_options_with_limit


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


@reports_errors
def info(
    cubes: Annotated[list[Path], typer.Argument(help="Cube files, folders (searched recursively) or recordings.")],
    options: ReaderOptions = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per cube on stdout.")] = False,
    max_cube_gb: MaxCubeGB = None,
    camera: Annotated[
        Path | None, typer.Option(help="Recordings: the camera file, to show the decoded tiles, bands, references.")
    ] = None,
) -> None:
    """Shape, stored type, wavelength and value ranges, NaN/Inf and zero-pixel counts, file size. For a
    recording (.b2nd ...): frames, frame size, duration and frame rate, exposure, dropped frames, temperatures,
    metadata keys and what is missing; with --camera, the tiles and bands it decodes to.

    A file that cannot be read is reported in one line and the others are still listed; the exit code is 2
    when any file failed. Wavelengths show as "?" when the file has none and none are given.
    """
    from hsiseg.io.recording import is_recording

    recordings = [path for path in cubes if is_recording(path)]
    cubes = [path for path in cubes if not is_recording(path)]
    failures = _recordings_info(recordings, camera, as_json)
    if not cubes:
        if failures:
            raise typer.Exit(USER_ERROR_EXIT_CODE)
        return
    reader_options = reader_options_with_limit(options, max_cube_gb)
    table = Table(title="hsiseg info")
    for column in ("file", "format, stored as", "H x W x B", "nm", "values", "NaN/Inf", "zero px", "size"):
        if column == "file":
            table.add_column(column, overflow="fold")
        else:
            table.add_column(column, justify="left" if column.startswith("format") else "right", no_wrap=True)
    for item in summarize_cubes(cubes, **reader_options):
        if item.summary is None:
            failures += 1
            typer.echo(f"hsiseg: error: {item.error}{MAX_CUBE_HINT if item.too_large else ''}", err=True)
            continue
        summary = item.summary
        if as_json:
            typer.echo(json.dumps(summary))
            continue
        low, high = summary["value_min"], summary["value_max"]
        first, last = summary["wavelength_min_nm"], summary["wavelength_max_nm"]
        table.add_row(
            str(item.path.relative_to(item.root)) if item.root in cubes else str(item.path),
            f"{summary['format']}, {summary['stored_dtype']}",
            " x ".join(map(str, summary["shape"])),
            "?" if first is None else f"{first:g}-{last:g}",
            "-" if low is None else f"{low:.4g} .. {high:.4g}",
            f"{summary['nan_count']}/{summary['inf_count']}",
            str(summary["zero_pixels"]),
            _size(summary["file_bytes"]),
        )
    if not as_json and table.row_count:
        console = Console()
        console.width = max(console.width, 150)  # a wide table reads better than a wrapped one
        console.print(table)
    if failures:
        raise typer.Exit(USER_ERROR_EXIT_CODE)


@reports_errors
def convert(
    inputs: Annotated[list[Path], typer.Argument(help="Cube files or folders (searched recursively).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (folder layout is kept).")],
    to: Annotated[str, typer.Option(help="Output format: hdf5 (chunked, compressed cache) or envi.")] = "hdf5",
    dtype: Annotated[
        str, typer.Option(help="HDF5 storage type: float32 (exact) or float16 (half the size).")
    ] = "float32",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    options: ReaderOptions = None,
    max_cube_gb: MaxCubeGB = None,
) -> None:
    """Convert cubes, e.g. a folder of Tivita recordings to an HDF5 cache; inputs are never modified.

    Existing outputs are skipped (so an interrupted conversion resumes) unless --overwrite is given. A file
    that cannot be read is reported and the batch goes on; the exit code is 2 when any file failed.
    """
    reader_options = reader_options_with_limit(options, max_cube_gb)
    plan = plan_conversion(inputs, output, to)
    if not plan:
        raise HsisegError(f"convert: no cube files in {', '.join(map(str, inputs))}")
    console = Console(stderr=True)
    failed = skipped = 0
    columns = (
        TextColumn("converting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = progress.add_task("convert", total=len(plan))
        for item in convert_cubes(plan, to, dtype, overwrite, reader_options):
            progress.advance(task)
            if item.error:
                skipped += item.skipped
                failed += not item.skipped
                hint = MAX_CUBE_HINT if item.too_large else ""
                progress.console.print(
                    f"[yellow]{'skipped' if item.skipped else 'failed'}[/]: {escape(item.error + hint)}", soft_wrap=True
                )
    for warning in caught:
        console.print(f"[yellow]warning[/]: {escape(str(warning.message))}", soft_wrap=True)
    done = len(plan) - failed - skipped
    typer.echo(f"converted {done} of {len(plan)} cubes into {output} ({skipped} skipped, {failed} failed)")
    if failed:
        raise typer.Exit(USER_ERROR_EXIT_CODE)


def _recordings_info(recordings: list[Path], camera: Path | None, as_json: bool) -> int:
    """Describe each recording (one table, or one JSON object per recording); returns the failures."""
    from hsiseg.io.recording_summary import describe_recording

    failures = 0
    for path in recordings:
        try:
            summary = describe_recording(path, camera)
        except HsisegError as error:
            typer.echo(f"hsiseg: error: {error}", err=True)
            failures += 1
            continue
        if as_json:
            typer.echo(json.dumps(summary))
            continue
        table = Table(title=f"hsiseg info: {escape(str(path))}", show_header=False)
        for key, value in summary.items():
            if key not in ("path", "notes", "camera"):
                table.add_row(key.replace("_", " "), escape("-" if value is None else str(value)))
        for key, value in (summary.get("camera") or {}).items():
            if key != "notes":
                table.add_row(f"camera: {key.replace('_', ' ')}", escape(str(value)))
        Console().print(table)
        for note in [*summary["notes"], *(summary.get("camera") or {}).get("notes", [])]:
            typer.echo(f"hsiseg: note: {note}", err=True)
    return failures
