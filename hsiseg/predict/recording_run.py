"""A recording run end to end: stream a snapshot-mosaic recording through a model, then write ``args.json``
and the exports (areas, MP4, HTML report), as ``hsiseg predict MODEL RECORDING --camera CAMERA`` and the demo
do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hsiseg.errors import HsisegError
from hsiseg.export import DEFAULT_EXPORTS, StreamMaps, check_exports, export_all, exported_files
from hsiseg.io.camera import CameraDescription
from hsiseg.io.recording import MosaicVideo, open_recording
from hsiseg.predict.maps_store import JOURNAL, MAPS
from hsiseg.predict.options import RunOptions
from hsiseg.predict.stream import Selection, StreamResult, predict_recording, write_stream_args


@dataclass
class RecordingRun:
    """What to run: the recording, its camera file, and how to predict and export it."""

    model: Path
    recording: Path
    camera: Path
    output: Path
    options: RunOptions = field(default_factory=RunOptions)
    demosaic: str = "subsample"
    selection: Selection = field(default_factory=Selection)
    smoothing: float = 0.0
    exports: tuple[str, ...] = DEFAULT_EXPORTS
    batch_frames: int = 1


@dataclass
class RecordingOutcome:
    """What a recording run did: the streaming result and the files the exporters wrote (in order)."""

    stream: StreamResult
    written: list[Path]


def run_recording(
    run: RecordingRun,
    on_frame: Callable[[int, str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> RecordingOutcome:
    """Stream ``run.recording`` into ``run.output/maps.h5`` (:func:`~hsiseg.predict.stream.predict_recording`),
    then write ``args.json`` and the exports (``areas``, the run's summary, always; those an exporter needs
    before it). Export names are checked before any frame is read."""
    exports = check_exports(("areas", *run.exports))
    refuse_foreign_files(run.output, ["args.json", *exported_files(exports)])
    reader_options = {k: v for k, v in run.options.reader_options.items() if k != "max_bytes"}  # frames are small
    video = MosaicVideo(open_recording(run.recording, **reader_options), CameraDescription.from_file(run.camera),
                        run.demosaic)  # fmt: skip
    result = predict_recording(run.model, video, run.output, run.options, run.selection, run.smoothing, on_frame,
                               on_start, run.batch_frames)  # fmt: skip
    maps = StreamMaps(result.maps)
    write_stream_args(run.output, {
        "model": str(run.model), "model_sha256": maps.model_sha256, "recording": str(run.recording),
        "camera": str(run.camera), "demosaicking": run.demosaic, "selection": vars(run.selection),
        "smoothing": run.smoothing, "exports": list(run.exports),
    })  # fmt: skip
    return RecordingOutcome(result, export_all(exports, maps, run.output))


def refuse_foreign_files(output: Path, names: list[str]) -> None:
    """Refuses to start a recording run in a folder holding files of the names it writes (``names``) but no
    recording run of hsiseg (neither ``maps.h5`` nor its journal): those files are someone else's."""
    if (output / MAPS).exists() or (output / JOURNAL).exists():
        return
    for name in names:
        if (output / name).exists():
            raise HsisegError(f"{output / name} exists, and {output} holds no recording run of hsiseg (no {MAPS}): "
                              "move the file, or choose another output folder")  # fmt: skip
