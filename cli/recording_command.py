"""``hsiseg predict MODEL RECORDING --camera CAMERA``: a snapshot-mosaic recording, streamed frame by frame."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from hsiseg.errors import HsisegError
from hsiseg.export import DEFAULT_EXPORTS, StreamMaps, export
from hsiseg.io.camera import CameraDescription
from hsiseg.io.recording import MosaicVideo, open_recording
from hsiseg.predict import PredictOptions
from hsiseg.predict.stream import Selection, predict_recording, write_stream_args

from .errors import USER_ERROR_EXIT_CODE, Interrupted
from .predict_commands import frame_progress


def predict_recording_command(
    model: Path, inputs: list[Path], output: Path, settings: PredictOptions, camera: Path | None, demosaic: str,
    selection: Selection, smooth: float, exports: str, batch_frames: int = 1,
) -> None:  # fmt: skip
    if len(inputs) != 1:
        raise HsisegError(f"predict: give one recording at a time (got {len(inputs)} inputs)")
    if camera is None:
        raise HsisegError(f"{inputs[0]}: a snapshot-mosaic recording needs its camera description (--camera)")
    chosen = [name.strip() for name in exports.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(DEFAULT_EXPORTS))
    if unknown:
        raise HsisegError(f"--export: unknown {unknown}; choose from {list(DEFAULT_EXPORTS)}")
    batch_only = {"--num-parts": settings.num_parts > 1, "--level": settings.level is not None,
                  "--confidence": settings.confidence is not None, "--probabilities": settings.save_probabilities,
                  "--animation": settings.animation, "--contours": settings.contours}  # fmt: skip
    asked = [flag for flag, given in batch_only.items() if given]
    if asked:
        raise HsisegError(f"predict: {', '.join(asked)} apply to folders of cubes, not to a recording; drop them")
    reader_options = {k: v for k, v in settings.reader_options.items() if k != "max_bytes"}  # frames are small
    video = MosaicVideo(open_recording(inputs[0], **reader_options), CameraDescription.from_file(camera), demosaic)
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
            result = predict_recording(model, video, output, settings, selection, smooth, on_frame,
                                       lambda total: progress.update(task, total=total), batch_frames)  # fmt: skip
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted; finished frames are kept in {output / 'maps.h5'}; resume with the same "
                              "command and --continue") from None  # fmt: skip
    maps = StreamMaps(result.maps)
    write_stream_args(output, {"model": str(model), "model_sha256": maps.model_sha256,
                               "recording": str(inputs[0]), "camera": str(camera), "demosaicking": demosaic,
                               "selection": vars(selection), "smoothing": smooth, "exports": chosen})  # fmt: skip
    written = [export(name, maps, output) for name in ("areas", *[c for c in chosen if c != "areas"])]
    rate = result.done / max(1e-9, result.seconds)
    typer.echo(f"{result.done} frames predicted ({rate:.2f} frames/s), {result.skipped} skipped, "
               f"{len(result.failed)} failed; maps in {result.maps}")  # fmt: skip
    for path in written:
        typer.echo(f"wrote {path}")
    if result.failed:
        raise typer.Exit(USER_ERROR_EXIT_CODE)
