"""``hsiseg predict`` (folders of cubes; recordings in :mod:`.recording_command`) and ``hsiseg render``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hsiseg.errors import HsisegError, HsisegWarning
from hsiseg.io.recording import is_recording
from hsiseg.ood import DEFAULT_SCORES
from hsiseg.option_checks import in_range
from hsiseg.predict import PredictOptions
from hsiseg.predict.batch import recorded_promise
from hsiseg.predict.stream import Selection

from .errors import USER_ERROR_EXIT_CODE, Interrupted, reports_errors
from .options import MaxCubeGB, ReaderOptions, parse_options, reader_options_with_limit, refuse_flags
from .progress import run_prediction
from .recording_command import predict_recording_command

DEMOSAIC, EXPORTS = "subsample", "areas,mp4,html"  # recordings' defaults; given with files of cubes, refused


@reports_errors
def predict(
    model: Annotated[
        Path,
        typer.Argument(help="Model checkpoint: RUN/checkpoints/final.json (refit on all scribbles), else best.json."),
    ],
    inputs: Annotated[
        list[Path] | None, typer.Argument(help="Cube files, folders (recursive) or quoted globs.")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (one sub-folder per frame).")] = Path(
        "predictions"
    ),
    spec: Annotated[Path | None, typer.Option(help="Predict the cubes of a data-spec split instead of INPUTS.")] = None,
    split: Annotated[str, typer.Option(help="With --spec: train, val or test.")] = "test",
    tile: Annotated[int, typer.Option(help="Sliding-window size in pixels.")] = 256,
    overlap: Annotated[float, typer.Option(help="Window overlap (0-0.9).")] = 0.25,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 4,
    tta: Annotated[bool, typer.Option("--tta", help="Average 4 flips (test-time augmentation).")] = False,
    ood_score: Annotated[
        str | None, typer.Option(help=f"Unknown-tissue score: {', '.join(DEFAULT_SCORES)} (default: the card's).")
    ] = None,
    ood_threshold: Annotated[
        float | None, typer.Option(help="Override the calibrated unknown-tissue threshold.")
    ] = None,
    level: Annotated[int | None, typer.Option(help="Also write the map at this tree depth.")] = None,
    confidence: Annotated[float | None, typer.Option(help="Also write the deepest node with marginal >= T.")] = None,
    probabilities: Annotated[bool, typer.Option("--probabilities", help="Write probabilities.h5 (float16).")] = False,
    opacity: Annotated[float, typer.Option(help="Overlay opacity.")] = 0.5,
    contours: Annotated[bool, typer.Option("--contours", help="Overlay outlines only.")] = False,
    animation: Annotated[
        bool, typer.Option("--animation", help="Also write overview.gif and overview.mp4 of all frames.")
    ] = False,
    resume: Annotated[bool, typer.Option("--continue", help="Skip frames whose outputs are complete.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    num_parts: Annotated[int, typer.Option(help="Split the frames into this many parts (machines).")] = 1,
    part_id: Annotated[int, typer.Option(help="Which part this machine does (0-based).")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ...")] = "cpu",
    workers: Annotated[
        int | None, typer.Option(help="Frames read and written side by side (default: 1 on a CPU; on a GPU half the "
                                 "cores, up to 8).")
    ] = None,
    options: ReaderOptions = None,
    max_cube_gb: MaxCubeGB = None,
    camera: Annotated[
        Path | None, typer.Option(help="Camera description (YAML) of a snapshot-mosaic recording (.b2nd ...).")
    ] = None,
    demosaic: Annotated[str, typer.Option(help="Recordings: subsample (one spectrum per tile) or bilinear.")] = (
        DEMOSAIC
    ),
    every: Annotated[int, typer.Option(help="Recordings: predict every N-th frame.")] = 1,
    start: Annotated[int, typer.Option(help="Recordings: first frame (0-based).")] = 0,
    stop: Annotated[int | None, typer.Option(help="Recordings: stop before this frame.")] = None,
    smooth: Annotated[
        float, typer.Option(help="Recordings: temporal smoothing of probabilities, 0 (off) up to (not including) 1.")
    ] = 0.0,
    export: Annotated[
        str, typer.Option(help="Recordings: outputs to write from the maps: areas, mp4, html (comma-separated).")
    ] = EXPORTS,
    batch_frames: Annotated[
        int, typer.Option(help="Recordings: frames per forward pass (4-8 on a GPU; 1 on a CPU is as fast).")
    ] = 1,
) -> None:
    """Predict tissue maps, unknown-tissue masks, area tables and overlays for cubes or whole recordings."""
    settings = PredictOptions(
        tile=tile, overlap=overlap, batch_size=batch_size, flip_tta=tta, ood_score=ood_score,
        ood_threshold=ood_threshold, level=level, confidence=confidence, save_probabilities=probabilities,
        opacity=opacity, contours=contours, animation=animation,
        overwrite=overwrite, resume=resume, num_parts=num_parts, part_id=part_id, device=device,
        reader_options=reader_options_with_limit(options, max_cube_gb), workers=workers,
    )  # fmt: skip
    settings.check()  # every option, before any file is read or progress shown
    if spec is not None:
        from hsiseg.dataset.spec import DataSpec

        data_spec = DataSpec.from_file(spec)
        inputs = [data_spec.resolve(data_spec.samples[i].cube) for i in data_spec.split(split)]
        settings.reader_options = {**data_spec.reader_options, **settings.reader_options}
    if not inputs:
        raise HsisegError("predict: give cube files/folders, or --spec SPEC --split NAME")
    if camera is not None or any(is_recording(path) for path in inputs):
        return predict_recording_command(model, inputs, output, settings, camera, demosaic,
                                         Selection(start, stop, every), smooth, export, batch_frames)  # fmt: skip
    recording_only = {"--demosaic": demosaic != DEMOSAIC, "--every": every != 1, "--start": start != 0,
                      "--stop": stop is not None, "--smooth": smooth != 0.0, "--export": export != EXPORTS,
                      "--batch-frames": batch_frames != 1}  # fmt: skip
    refuse_flags(recording_only, "recordings (with --camera), not to files of cubes")
    try:
        results = run_prediction(model, inputs, output, settings, Console(stderr=True))
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; finished frames are kept and listed in {output / 'summary.csv'}; "
                          "resume with the same command and --continue") from None  # fmt: skip
    count = {status: sum(r.status == status for r in results) for status in ("done", "skipped", "busy", "failed")}
    busy = f", {count['busy']} left to another run sharing the folder" if count["busy"] else ""
    typer.echo(f"{count['done']} frames predicted, {count['skipped']} skipped{busy}, {count['failed']} failed; "
               f"outputs in {output} (summary.csv)")  # fmt: skip
    promised = recorded_promise(output)
    if promised:
        typer.echo(promised)
    if count["failed"]:
        raise typer.Exit(USER_ERROR_EXIT_CODE)


@reports_errors
def render(
    cube: Annotated[Path, typer.Argument(help="Cube file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG to write.")],
    bands: Annotated[str | None, typer.Option(help="False colour from three wavelengths, e.g. 800,650,550.")] = None,
    band: Annotated[float | None, typer.Option(help="Single-wavelength map (nm) with a colour bar.")] = None,
    ratio: Annotated[
        str | None, typer.Option(help="Band-ratio map NUM/DEN in nm, e.g. 560/760, with a colour bar.")
    ] = None,
    method: Annotated[str, typer.Option(help="RGB method: auto, cie or window.")] = "auto",
    options: ReaderOptions = None,
) -> None:
    """Render a cube as RGB (CIE 1931 + D65, or band windows), a false-colour composite, or a single-band or
    band-ratio map with a colour bar."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HsisegWarning)
        _render(cube, output, bands, band, ratio, method, parse_options(options))
    for warning in caught:
        typer.echo(f"hsiseg: warning: {warning.message}", err=True)
    typer.echo(f"wrote {output}")


def _render(cube: Path, output: Path, bands, band, ratio, method: str, options: dict) -> None:
    from hsiseg.io import read_cube
    from hsiseg.render import false_colour, rgb, save_png
    from hsiseg.render.colour import band_map, ratio_map, save_scalar_map

    if output.suffix.lower() != ".png" and not output.is_dir():  # (a folder: the OS error names it)
        raise HsisegError(f"-o {output}: render writes a PNG; give a file name ending in .png")
    if sum(choice is not None for choice in (band, ratio, bands)) > 1:
        raise HsisegError("render: give one of --band, --bands and --ratio")
    wavelengths = [band] if band is not None else _numbers(ratio, "/", "--ratio") if ratio else []
    wavelengths += _numbers(bands, ",", "--bands") if bands else []
    for wavelength in wavelengths:
        in_range(wavelength, "--band/--bands/--ratio wavelength (nm)", 0, low_open=True)
    loaded = read_cube(cube, **options)
    if band is not None:
        save_scalar_map(output, band_map(loaded.data, loaded.wavelengths, band), f"reflectance at {band:g} nm")
        return
    if ratio is not None:
        try:
            numerator, denominator = (float(v) for v in ratio.split("/"))
        except ValueError:
            raise HsisegError(f"--ratio {ratio!r}: expected NUM/DEN in nm, e.g. 560/760") from None
        values = ratio_map(loaded.data, loaded.wavelengths, numerator, denominator)
        save_scalar_map(output, values, f"{numerator:g} nm / {denominator:g} nm", colour_map="magma")
        return
    if bands:
        try:
            triple = tuple(float(v) for v in bands.split(","))
        except ValueError:
            raise HsisegError(f"--bands {bands!r}: expected three wavelengths like 800,650,550") from None
        if len(triple) != 3:
            raise HsisegError(f"--bands {bands!r}: expected three wavelengths")
        image = false_colour(loaded.data, loaded.wavelengths, triple)
    else:
        image = rgb(loaded.data, loaded.wavelengths, method)
    save_png(output, image)




def _numbers(text: str, separator: str, flag: str) -> list[float]:
    try:
        return [float(value) for value in text.split(separator)]
    except ValueError:
        raise HsisegError(f"{flag} {text!r}: expected wavelengths in nm separated by {separator!r}") from None
