"""``hsiseg predict MODEL RECORDING --camera CAMERA``: a snapshot-mosaic recording, streamed frame by frame."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from hsiseg.errors import HsisegError
from hsiseg.export import check_exports
from hsiseg.predict import PredictOptions
from hsiseg.predict.recording_run import RecordingRun, run_recording
from hsiseg.predict.stream import Selection

from .errors import USER_ERROR_EXIT_CODE, Interrupted
from .options import refuse_flags
from .progress import FrameBar


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
    refuse_flags(batch_only, "folders of cubes, not to a recording")
    run = RecordingRun(model, inputs[0], camera, output, settings, demosaic, selection, smooth, chosen, batch_frames)
    with FrameBar(Console(stderr=True)) as bar:

        def on_frame(index: int, status: str) -> None:
            bar.advance()
            if status not in ("done", "skipped"):
                bar.print(f"[red]failed[/]: frame {index}: {status}")

        try:
            outcome = run_recording(run, on_frame, bar.start)
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
