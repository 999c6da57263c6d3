"""``hsiseg demo``: the whole job on synthetic data, from generated surgeries to overlays and a recording."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import h5py
import typer
from rich.console import Console

from hsiseg.errors import HsisegError
from hsiseg.io.ownership import clear_owned, record_owned
from hsiseg.labels import INVALID, UNKNOWN
from hsiseg.predict import PredictOptions

from .errors import reports_errors
from .progress import RichReporter, run_prediction

if TYPE_CHECKING:
    from hsiseg.training import TrainConfig


@reports_errors
def demo(
    output: Annotated[Path, typer.Argument(help="Folder for the demo (data, run, predictions).")] = Path("hsiseg-demo"),
    steps: Annotated[int | None, typer.Option(help="Training steps (default: hsiseg train's).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Reuse an existing demo folder.")] = False,
) -> None:
    """The whole job on synthetic data: generate surgeries, train with hsiseg train's defaults, predict the
    held-out surgery, score it against its dense truth, render overlays, print where they are."""
    from hsiseg.training import TrainConfig

    console = Console(stderr=True)
    config = TrainConfig() if steps is None else TrainConfig(steps=steps, validate_every=max(1, min(steps, 100)))
    config.check()  # every option before anything on disk changes
    if output.exists() and any(output.iterdir()):
        if not overwrite:
            raise HsisegError(f"{output} is not empty; choose another folder or pass --overwrite")
        clear_owned(output, "--overwrite")  # what an earlier demo wrote; refused if anything else is there
    output.mkdir(parents=True, exist_ok=True)
    main = threading.current_thread() is threading.main_thread()  # (signal handlers live in the main thread)
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None  # a `kill` still lists the files
    try:
        _run_demo(output, config, console, lambda: record_owned(output))
    finally:
        record_owned(output)  # everything below it was written by this demo: --overwrite may remove it
        if main:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _run_demo(output: Path, config: TrainConfig, console: Console, stage_done: Callable[[], None]) -> None:
    """The five stages; ``stage_done`` after each (the manifest of what was written so far)."""
    from hsiseg.dataset.spec import DataSpec
    from hsiseg.evaluation.truth_check import dense_truth_scores, write_truth_panels
    from hsiseg.synthetic.dataset import demo_tree, generate_demo_data
    from hsiseg.synthetic.recording import write_demo_recording
    from hsiseg.training import final_checkpoint, train

    console.print("[bold]1/5[/] generating 4 synthetic surgeries (Tivita and ENVI cubes, scribbles, dense truth) "
                  f"and a {DEMO_RECORDING_FRAMES}-frame snapshot-mosaic recording")  # fmt: skip
    spec_path = generate_demo_data(output / "data")
    recording, camera = write_demo_recording(output / "data" / "recording", demo_tree(), DEMO_RECORDING_FRAMES)
    stage_done()
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
    stage_done()
    console.print(f"[bold]3/5[/] predicting the held-out surgery ({len(test_cubes)} frames)")
    results = run_prediction(
        final_checkpoint(output / "run"), test_cubes, output / "predictions",
        PredictOptions(level=1, confidence=0.7, animation=True), console,
    )  # fmt: skip
    stage_done()
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
    stage_done()
    console.print(f"[bold]5/5[/] predicting the snapshot-mosaic recording ({DEMO_RECORDING_FRAMES} frames, streamed)")
    streamed = demo_recording(final_checkpoint(output / "run"), recording, camera, output / "recording")
    done = [r for r in results if r.status == "done"]
    unknown = sum(r.unknown_percent or 0.0 for r in done) / max(1, len(done))
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
