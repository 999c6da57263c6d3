"""``hsiseg predict``, ``hsiseg render`` and ``hsiseg demo``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import h5py
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hsiseg.errors import HsisegError, HsisegWarning
from hsiseg.io.recording import is_recording
from hsiseg.labels import INVALID, UNKNOWN
from hsiseg.ood import DEFAULT_SCORES
from hsiseg.predict import FrameResult, PredictOptions, predict_batch
from hsiseg.predict.batch import recorded_promise
from hsiseg.predict.stream import Selection

from .cube_commands import MAX_CUBE_HINT, MaxCubeGB, ReaderOptions, parse_options, reader_options_with_limit
from .errors import USER_ERROR_EXIT_CODE, Interrupted, reports_errors


def frame_progress(console: Console, total: int, label: str = "frames") -> Progress:
    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]:.2f} frames/s"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
    )  # fmt: skip


def run_prediction(
    model: Path, inputs: list[Path], output: Path, options: PredictOptions, console: Console
) -> list[FrameResult]:
    """Predict with a progress bar; failed frames are printed as they happen."""
    import time

    started = time.perf_counter()
    with frame_progress(console, 0) as progress:
        task = progress.add_task("frames", total=None, rate=0.0)

        def on_frame(result: FrameResult) -> None:
            done = progress.tasks[task].completed + 1
            progress.update(task, advance=1, rate=done / max(1e-9, time.perf_counter() - started))
            if result.status == "failed":
                hint = MAX_CUBE_HINT if "max_bytes" in result.error else ""
                progress.console.print(f"[red]failed[/]: {result.frame}: {result.error}{hint}", soft_wrap=True)
            if result.status in ("done", "failed"):
                for text in result.warnings:
                    progress.console.print(f"[yellow]warning[/]: {result.frame}: {text}", soft_wrap=True)

        return predict_batch(model, inputs, output, options, on_frame, lambda total: progress.update(task, total=total))


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
    options: ReaderOptions = None,
    max_cube_gb: MaxCubeGB = None,
    camera: Annotated[
        Path | None, typer.Option(help="Camera description (YAML) of a snapshot-mosaic recording (.b2nd ...).")
    ] = None,
    demosaic: Annotated[str, typer.Option(help="Recordings: subsample (one spectrum per tile) or bilinear.")] = (
        "subsample"
    ),
    every: Annotated[int, typer.Option(help="Recordings: predict every N-th frame.")] = 1,
    start: Annotated[int, typer.Option(help="Recordings: first frame (0-based).")] = 0,
    stop: Annotated[int | None, typer.Option(help="Recordings: stop before this frame.")] = None,
    smooth: Annotated[
        float, typer.Option(help="Recordings: temporal smoothing of probabilities, 0 (off) up to (not including) 1.")
    ] = 0.0,
    export: Annotated[
        str, typer.Option(help="Recordings: outputs to write from the maps: areas, mp4, html (comma-separated).")
    ] = "areas,mp4,html",
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
        reader_options=reader_options_with_limit(options, max_cube_gb),
    )  # fmt: skip
    if spec is not None:
        from hsiseg.spec import DataSpec

        data_spec = DataSpec.from_file(spec)
        inputs = [data_spec.resolve(data_spec.samples[i].cube) for i in data_spec.split(split)]
        settings.reader_options = {**data_spec.reader_options, **settings.reader_options}
    if not inputs:
        raise HsisegError("predict: give cube files/folders, or --spec SPEC --split NAME")
    if camera is not None or any(is_recording(path) for path in inputs):
        from .recording_command import predict_recording_command

        return predict_recording_command(model, inputs, output, settings, camera, demosaic,
                                         Selection(start, stop, every), smooth, export, batch_frames)  # fmt: skip
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


@reports_errors
def demo(
    output: Annotated[Path, typer.Argument(help="Folder for the demo (data, run, predictions).")] = Path("hsiseg-demo"),
    steps: Annotated[int | None, typer.Option(help="Training steps (default: hsiseg train's).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Reuse an existing demo folder.")] = False,
) -> None:
    """The whole job on synthetic data: generate surgeries, train with hsiseg train's defaults, predict the
    held-out surgery, score it against its dense truth, render overlays, print where they are."""
    from hsiseg.evaluation.truth_check import dense_truth_scores, write_truth_panels
    from hsiseg.spec import DataSpec
    from hsiseg.synthetic.dataset import demo_tree, generate_demo_data
    from hsiseg.synthetic.recording import write_demo_recording
    from hsiseg.training import TrainConfig, final_checkpoint, train

    from .train_command import RichReporter

    console = Console(stderr=True)
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise HsisegError(f"{output} is not empty; choose another folder or pass --overwrite")
    if overwrite and output.exists():
        import shutil

        for sub in ("data", "run", "predictions", "recording"):
            shutil.rmtree(output / sub, ignore_errors=True)
    console.print("[bold]1/5[/] generating 4 synthetic surgeries (Tivita and ENVI cubes, scribbles, dense truth) "
                  f"and a {DEMO_RECORDING_FRAMES}-frame snapshot-mosaic recording")  # fmt: skip
    spec_path = generate_demo_data(output / "data")
    recording, camera = write_demo_recording(output / "data" / "recording", demo_tree(), DEMO_RECORDING_FRAMES)
    config = TrainConfig() if steps is None else TrainConfig(steps=steps, validate_every=min(steps, 100))
    console.print(
        f"[bold]2/5[/] training the default network ({config.model}: the spatial context chosen on held-out "
        f"scribbles; loss {config.loss}) for {config.steps} "
        "steps on the scribbles of 2 surgeries, validating on a third, then refitting on all 3"
    )
    reporter = RichReporter()
    try:
        train(spec_path, output / "run", config, reporter=reporter)
    finally:
        reporter.stop()
    spec = DataSpec.from_file(spec_path)
    test_cubes = [spec.resolve(spec.samples[i].cube) for i in spec.split("test")]
    console.print(f"[bold]3/5[/] predicting the held-out surgery ({len(test_cubes)} frames)")
    results = run_prediction(
        final_checkpoint(output / "run"), test_cubes, output / "predictions",
        PredictOptions(level=1, confidence=0.7, animation=True), console,
    )  # fmt: skip
    console.print("[bold]4/5[/] scoring the held-out surgery against its dense truth (every pixel)")
    scores = dense_truth_scores(output / "predictions", spec, "test")
    by_cube = {str(spec.resolve(spec.samples[i].cube)): i for i in spec.split("test")}
    write_truth_panels(
        output / "predictions", spec, {r.frame: by_cube[r.source] for r in results if r.source in by_cube}
    )
    typer.echo(f"training curves: {output / 'run' / 'curves.png'}")
    for result in results:
        folder = output / "predictions" / result.frame
        typer.echo(f"{result.frame}: {result.status}; panel {folder / 'panel.png'}, truth | prediction "
                   f"{folder / 'truth_vs_prediction.png'}")  # fmt: skip
    typer.echo(f"animated overview: {output / 'predictions' / 'overview.gif'} (and overview.mp4)")
    typer.echo(f"summary: {output / 'predictions' / 'summary.csv'}")
    console.print(f"[bold]5/5[/] predicting the snapshot-mosaic recording ({DEMO_RECORDING_FRAMES} frames, streamed)")
    streamed = demo_recording(final_checkpoint(output / "run"), recording, camera, output / "recording")
    done = [r for r in results if r.status == "done"]
    unknown = sum(r.unknown_percent for r in done) / max(1, len(done))
    typer.echo(
        f"held-out surgery, dense truth ({scores['pixels']} pixels): leaf accuracy {scores['accuracy']:.3f}, "
        f"mean Dice {scores['mean_dice']:.3f}; flagged unknown {unknown:.1f}% (every tissue of this scene was "
        "scribbled in training, so these are false alarms)"
    )
    accuracy, unknown = streamed
    typer.echo(f"recording (another camera: 25 mosaic bands resampled to the model's 100): leaf accuracy "
               f"{accuracy:.3f} against its dense truth, {unknown:.1%} flagged unknown by the '{RECORDING_SCORE}' "
               "score (the feature-space scores flag nearly every pixel of a camera the model never saw; train on "
               "the camera's own frames for real use)")  # fmt: skip
    typer.echo(f"overlay video {output / 'recording' / 'overlay.mp4'}, report {output / 'recording' / 'report.html'}")


DEMO_RECORDING_FRAMES = 24
RECORDING_SCORE = "energy"  # a logit score: the recording is a domain shift that feature-space scores flag entirely


def demo_recording(model: Path, recording: Path, camera: Path, output: Path) -> tuple[float, float]:
    """Stream the demo recording through the model, export areas/MP4/HTML; (leaf accuracy, unknown share) on
    valid pixels."""
    import numpy as np

    from hsiseg.predict.recording_run import RecordingRun, run_recording

    options = PredictOptions(overwrite=True, ood_score=RECORDING_SCORE)
    result = run_recording(RecordingRun(model, recording, camera, output, options)).stream
    truth = np.load(recording.parent / "truth.npy")
    with h5py.File(result.maps) as handle:
        labels = handle["labels"][()]
    valid = labels != INVALID
    known = valid & (labels != UNKNOWN)
    return float((labels[known] == truth[known]).mean()), float((labels[valid] == UNKNOWN).mean())


@reports_errors
def evaluate(
    predictions: Annotated[Path, typer.Argument(help="Output folder of hsiseg predict.")],
    spec: Annotated[Path, typer.Option("--spec", "-s", help="Data spec holding the truth.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder.")] = Path("evaluation"),
    split: Annotated[
        str | None, typer.Option(help="Only samples of this split (default: every matching frame).")
    ] = None,
    against: Annotated[
        str, typer.Option(help="truth (dense ground truth) or annotations (sparse scribbles).")
    ] = "truth",
    nsd_tolerance: Annotated[
        float,
        typer.Option(
            "--nsd-tolerance",
            help="Normalised surface Dice: boundary pixels within this many pixels of the other boundary count.",
        ),
    ] = 2.0,
) -> None:
    """Score predictions on annotated pixels at every tree level; write report.md, CSVs, confusion matrices,
    calibration (ECE, reliability.png; needs predict --probabilities) and boundary metrics (NSD, ASD; dense truth)."""
    import math

    from hsiseg.evaluation.report import NO_BOUNDARY, collect, write_report
    from hsiseg.spec import DataSpec

    if against not in ("truth", "annotations"):
        raise HsisegError(f"--against must be truth or annotations, got {against!r}")
    if not (math.isfinite(nsd_tolerance) and nsd_tolerance >= 0):
        raise HsisegError(f"--nsd-tolerance must be a finite number of pixels >= 0, got {nsd_tolerance:g}")
    evaluation = collect(predictions, DataSpec.from_file(spec), split, against, nsd_tolerance)
    summary = write_report(evaluation, output)
    for level in range(1, evaluation.tree.depth + 1):
        numbers = summary[f"level_{level}"]
        typer.echo(
            f"level {level}: accuracy {numbers['accuracy']:.3f}, balanced {numbers['balanced_accuracy']:.3f}, "
            f"mean Dice {numbers['mean_dice']:.3f}"
        )
    boundary = summary["boundary"]
    if boundary["images"]:
        for level in range(1, evaluation.tree.depth + 1):
            numbers = summary[f"level_{level}"]
            typer.echo(
                f"level {level} boundaries ({boundary['images']} images): mean NSD "
                f"({nsd_tolerance:g} px) {numbers['mean_nsd']:.3f}, mean ASD {numbers['mean_asd']:.3f} px, "
                f"{numbers['asd_inf']} classes missed (ASD inf)"
            )
    else:
        typer.echo(f"{NO_BOUNDARY} (use --against truth with a spec that has it); no NSD or ASD")
    calibration = summary["calibration"]
    if calibration["available"]:
        typer.echo(
            f"calibration: ECE {calibration['ece']:.4f} over {calibration['pixels']} pixels "
            f"({calibration['bins']} bins); reliability diagram: {output / 'reliability.png'}"
        )
    else:
        typer.echo(calibration["note"])
    ood = summary["unknown_tissue"]
    typer.echo(f"predicted unknown {ood['unknown_share']:.1%}, invalid {ood['invalid_share']:.1%} of scored pixels")
    for name, numbers in ood.get("scores", {}).items():
        figures = f"AUROC {numbers['auroc']:.3f}, AUPR {numbers['aupr']:.3f}, FPR@95%TPR {numbers['fpr_at_95_tpr']:.3f}"
        typer.echo(f"unknown tissue ({', '.join(ood['held_out_classes'])} never trained on), {name}: {figures}")
    typer.echo(f"mistake severity {summary['severity']['mean_distance']:.3f}; report: {output / 'report.md'}")
