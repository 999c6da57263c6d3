"""``hsiseg predict MODEL RECORDING --camera CAMERA``: a snapshot-mosaic recording, streamed frame by frame."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from hsiseg.errors import HsisegError
from hsiseg.export import check_exports
from hsiseg.predict import PredictOptions
from hsiseg.predict.recording_run import RecordingRun, run_recording
from hsiseg.predict.stream import Selection

from .errors import USER_ERROR_EXIT_CODE, Interrupted
from .progress import frame_progress


def predict_recording_command(
    model: Path, inputs: list[Path], output: Path, settings: PredictOptions, camera: Path | None, demosaic: str,
    selection: Selection, smooth: float, exports: str, batch_frames: int = 1,
) -> None:  # fmt: skip
    if len(inputs) != 1:
        raise HsisegError(f"predict: give one recording at a time (got {len(inputs)} inputs)")
    if camera is None:
        raise HsisegError(f"{inputs[0]}: a snapshot-mosaic recording needs its camera description (--camera)")
    chosen = tuple(name.strip() for name in exports.split(",") if name.strip())
    try:
        check_exports(chosen)
    except HsisegError as error:
        raise HsisegError(f"--export: {error}") from None
    batch_only = {"--num-parts": settings.num_parts > 1, "--level": settings.level is not None,
                  "--confidence": settings.confidence is not None, "--probabilities": settings.save_probabilities,
                  "--animation": settings.animation, "--contours": settings.contours}  # fmt: skip
    asked = [flag for flag, given in batch_only.items() if given]
    if asked:
        raise HsisegError(f"predict: {', '.join(asked)} apply to folders of cubes, not to a recording; drop them")
    run = RecordingRun(model, inputs[0], camera, output, settings, demosaic, selection, smooth, chosen, batch_frames)
    console = Console(stderr=True)
    started = time.perf_counter()
    with frame_progress(console, 0) as progress:
        task = progress.add_task("frames", total=None, rate=0.0)

        def on_frame(index: int, status: str) -> None:
            done = progress.tasks[task].completed + 1
            progress.update(task, advance=1, rate=done / max(1e-9, time.perf_counter() - started))
            if status not in ("done", "skipped"):
                progress.console.print(f"[red]failed[/]: frame {index}: {status}", soft_wrap=True)

        try:
            outcome = run_recording(run, on_frame, lambda total: progress.update(task, total=total))
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted; finished frames are kept in {output / 'maps.h5'}; resume with the same "
                              "command and --continue") from None  # fmt: skip
    result, written = outcome.stream, outcome.written
    for note in result.notes:
        typer.echo(f"hsiseg: note: {note}", err=True)
    rate = result.done / max(1e-9, result.seconds)
    typer.echo(f"{result.done} frames predicted ({rate:.2f} frames/s), {result.skipped} skipped, "
               f"{len(result.failed)} failed; maps in {result.maps}")  # fmt: skip
    for path in written:
        typer.echo(f"wrote {path}")
    if result.failed:
        raise typer.Exit(USER_ERROR_EXIT_CODE)
