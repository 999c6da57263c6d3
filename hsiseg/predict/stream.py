"""Streaming prediction of a snapshot-mosaic recording: thousands of frames in, one chunked HDF5 file out.

``predict_recording(model, video, OUT, ...)`` predicts the selected frames of a :class:`MosaicVideo`
(``start``, ``stop``, ``every``) with memory flat in the number of frames: a read-ahead thread reads,
calibrates, demosaicks and preprocesses the next frame while the network predicts this one, and a
write-behind thread stores the previous one. ``OUT/maps.h5`` holds, one row per selected frame (chunked one
frame per chunk, gzip):

- ``labels`` (N, h, w) int16: leaf code, :data:`~hsiseg.labels.UNKNOWN` (-1) or :data:`~hsiseg.labels.INVALID`
  (-2); ``score`` (N, h, w) float16: the unknown-tissue score in use; ``rgb`` (N, h, w, 3) uint8: the frame
  as the overlays show it;
- ``pixels`` (N, 2 + C) int64: pixel counts of invalid, unknown and each leaf; ``frame`` (N,) recording
  index; ``timestamp`` (N,) seconds (NaN when the recording has none); ``done`` (N,) bool; ``warnings`` and
  ``failures`` (N,) strings: a JSON list of the frame's messages ("" = none);
- attributes: ``classes``, ``label_tree``, ``model_sha256``, ``identity`` (what resume compares: model, the
  options the maps depend on, camera, demosaicking, selection and the resolved frame indices, smoothing, and
  the recording: path, frame count, raw frame shape, SHA-256 of its first readable selected frame).

One run writes a folder at a time (a lock). Finished frames go to a journal of one file per frame and reach
``maps.h5`` when the run ends, interrupted or not, in one atomic replacement
(:mod:`hsiseg.predict.maps_store`): a process killed at any moment, SIGKILL included, loses only the frames
not yet finished. ``resume`` skips frames that are done (in ``maps.h5`` or the journal), retries failed
ones, and refuses outputs written for another model, options, camera, references, selection or recording.
A frame that fails (unreadable, corrupt, another size, the network, writing) is recorded and the run goes on.
Exporters (:mod:`hsiseg.export`: areas over time, MP4, HTML report) read ``maps.h5``.

Temporal smoothing (``smoothing`` = a in [0, 1), off by default): the probabilities of each frame are
averaged with the previous frame's smoothed ones, ``p'_t = a p'_{t-1} + (1 - a) p_t`` (an exponential moving
average over consecutive selected frames; it restarts after a failed frame and on resume), and the leaf map
is the argmax of ``p'_t``. It steadies flickering labels in video; unknown and invalid masks are unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.areas import count_areas
from hsiseg.errors import HsisegError
from hsiseg.io.atomic import atomic_path, check_output_folder
from hsiseg.io.recording import MosaicVideo
from hsiseg.models.checkpoint import model_fingerprint
from hsiseg.ood.trust import frame_warnings, invalid_warnings
from hsiseg.predict.batch import one_line, output_options
from hsiseg.predict.claims import try_claim
from hsiseg.predict.frame_warnings import routed_warnings
from hsiseg.predict.inference import Prediction, Predictor
from hsiseg.predict.maps_store import MAPS, FrameRow, MapsLayout, MapsStore
from hsiseg.predict.options import RunOptions
from hsiseg.predict.pipeline import Failed, FrameId, Predicted, run_pipeline
from hsiseg.predict.sources import RecordingFrames


@dataclass
class Selection:
    """Which frames of a recording to predict: ``range(start, stop, every)`` (``stop`` None = to the end)."""

    start: int = 0
    stop: int | None = None
    every: int = 1

    def indices(self, frames: int) -> list[int]:
        if self.every < 1 or self.start < 0 or (self.stop is not None and self.stop < self.start):
            raise HsisegError(f"frame selection: need every >= 1 and 0 <= start <= stop, got {asdict(self)}")
        chosen = list(range(self.start, min(frames, self.stop if self.stop is not None else frames), self.every))
        if not chosen:
            raise HsisegError(f"frame selection {asdict(self)} picks no frame of a {frames}-frame recording")
        return chosen


@dataclass
class StreamResult:
    """What a streaming run did: frames predicted now, skipped (done before), failed (index -> error), and
    wall and network seconds of this run."""

    maps: Path
    notes: list[str] = field(default_factory=list)  # what the recording lacks or changes (hsiseg.io.timeline)
    done: int = 0
    skipped: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0
    network_seconds: float = 0.0


def predict_recording(
    model_path: str | Path,
    video: MosaicVideo,
    output: str | Path,
    options: RunOptions | None = None,
    selection: Selection | None = None,
    smoothing: float = 0.0,
    on_frame: Callable[[int, str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    batch_frames: int = 1,
) -> StreamResult:
    """Predict the selected frames of ``video`` into ``OUT/maps.h5`` (see module docstring).

    ``on_frame(index, status)`` is called per frame (status ``done``, ``skipped`` or the failure message).
    ``batch_frames``: frames per forward pass when a frame fits one window (:meth:`Predictor.predict_many`;
    the same maps, more throughput on a GPU; on a CPU 1 is as fast).
    """
    if batch_frames < 1:
        raise HsisegError(f"batch_frames must be at least 1, got {batch_frames}")
    options, selection = options or RunOptions(), selection or Selection()
    options.check()
    if not 0 <= smoothing < 1:
        raise HsisegError(f"temporal smoothing must be in [0, 1), got {smoothing}")
    output = check_output_folder(output)
    predictor = Predictor.from_options(model_path, options)
    indices = selection.indices(len(video))
    shape, recording = _geometry(video, indices)
    identity = _identity(model_path, options, predictor, video, selection, indices, smoothing, recording)
    output.mkdir(parents=True, exist_ok=True)
    claim = try_claim(output / ".maps.lock")
    if claim is None:
        raise HsisegError(f"{output / MAPS}: another run is writing it; wait for it, or choose another folder")
    started = time.perf_counter()
    store = MapsStore(output, _layout(indices, shape, predictor, identity, video), identity)
    try:
        done = store.prepare(options.resume, options.overwrite)
        todo = [(slot, index) for slot, index in enumerate(indices) if not done[slot]]
        result = StreamResult(output / MAPS, list(video.notes), skipped=int(done.sum()))
        if on_start:
            on_start(len(indices))
        for index in np.asarray(indices)[done] if on_frame is not None else []:
            on_frame(int(index), "skipped")  # type: ignore[misc]  # not None in this loop
        source = RecordingFrames(video, shape)
        try:
            with routed_warnings():
                stats = run_pipeline(source.frames(todo), source, predictor,
                                     MapsFile(store, predictor, smoothing, result, on_frame,
                                              video.recording.timeline.marks()),
                                     options.rgb_method, batch_frames, options.pipeline_workers())  # fmt: skip
        finally:  # also after Ctrl-C or an error: every finished frame reaches maps.h5
            store.consolidate()
        result.network_seconds = stats.network_seconds
    finally:
        claim.release()
    result.seconds = time.perf_counter() - started
    return result


def _identity(model_path: str | Path, options: RunOptions, predictor: Predictor, video: MosaicVideo,
              selection: Selection, indices: list[int], smoothing: float, recording: dict[str, Any]
              ) -> dict[str, Any]:  # fmt: skip
    """What ``--continue`` compares: model, the options the maps depend on, camera, references (by content),
    demosaicking, selection and its frames, smoothing, and the recording's identity."""
    return {
        "model": model_fingerprint(model_path), "options": _map_options(options, predictor),
        "camera": video.camera.model_dump(mode="json"), "references": video.reference_fingerprint(),
        "demosaicking": video.decoder.method,
        "selection": asdict(selection), "frames": indices, "smoothing": smoothing, "recording": recording,
    }  # fmt: skip


def _layout(indices: list[int], shape: tuple[int, int], predictor: Predictor, identity: dict[str, Any],
            video: MosaicVideo) -> MapsLayout:  # fmt: skip
    stamps = video.timestamps
    attributes = {
        "classes": json.dumps(list(predictor.tree.leaves)), "model_sha256": identity["model"],
        "identity": json.dumps(identity), "recording": str(video.recording.path),
        "label_tree": json.dumps(predictor.card.label_tree), "ood_score": predictor.ood_score or "",
        "ood_promise": predictor.promise,
    }  # fmt: skip
    timestamps = np.array([stamps[i] if stamps else np.nan for i in indices], dtype=np.float64)
    per_frame = {name: values[indices] for name, values in video.recording.timeline.per_frame().items()}
    attributes["notes"] = json.dumps(video.notes)
    return MapsLayout(indices, shape, predictor.tree.num_leaves, timestamps, attributes, per_frame)


MAP_OPTIONS = "tile overlap flip_tta rgb_method reader_options"


def _map_options(options: RunOptions, predictor: Predictor) -> dict[str, Any]:
    """The options ``maps.h5`` depends on (resume compares them), with the OOD score in use."""
    return output_options(options, predictor, MAP_OPTIONS)


def _geometry(video: MosaicVideo, indices: list[int]) -> tuple[tuple[int, int], dict[str, Any]]:
    """(h, w) of the maps, from the first readable raw frame (nothing is decoded), and what identifies the
    recording for resume: path, frame count, raw frame shape, SHA-256 of that frame."""
    for index in indices:
        try:
            raw = video.recording.raw(index)
        except HsisegError:
            continue
        rows, columns = video.camera.tiles(raw.shape)
        mosaic = video.camera.mosaic
        shape = (rows, columns) if video.decoder.method == "subsample" else (rows * mosaic[0], columns * mosaic[1])
        fingerprint = hashlib.sha256(np.ascontiguousarray(raw).tobytes()).hexdigest()
        recording = {"path": str(video.recording.path), "frames": len(video), "raw_shape": list(raw.shape),
                     "first_readable": index, "sha256": fingerprint}  # fmt: skip
        return shape, recording
    raise HsisegError(f"{video.recording.path}: none of the selected frames can be read")


class MapsFile:
    """The recording sink of the pipeline (:mod:`hsiseg.predict.pipeline`): one row of ``maps.h5`` per frame,
    temporal smoothing over consecutive selected frames, the counts in ``result``."""

    def __init__(self, store: MapsStore, predictor: Predictor, smoothing: float, result: StreamResult,
                 on_frame: Callable[[int, str], None] | None, marks: dict[int, list[str]] | None = None,
                 ) -> None:  # fmt: skip
        self.store, self.predictor, self.smoothing = store, predictor, smoothing
        self.marks = marks or {}  # recording frame index -> what changed there (exposure, temperature, drops)
        self.result, self.on_frame = result, on_frame
        self.previous: np.ndarray | None = None  # the last smoothed probabilities
        self.last_slot: int | None = None

    def begin(self, frame: FrameId) -> bool:
        return True  # one run writes a maps.h5 at a time (a lock): every frame is this run's

    def predicted(self, item: Predicted) -> None:
        if self.smoothing:
            consecutive = self.last_slot is not None and item.frame.slot == self.last_slot + 1
            self.previous = _smooth(item.prediction, self.previous if consecutive else None, self.smoothing)
            self.last_slot = item.frame.slot
        prediction = item.prediction
        item.warnings.extend(self.marks.get(item.frame.index, []))
        item.warnings.extend(invalid_warnings(prediction.invalid))
        item.warnings.extend(frame_warnings(prediction.score, prediction.unknown, prediction.invalid,
                                            self.predictor.calibration))  # fmt: skip

    def write(self, item: Predicted) -> None:
        """The frame's row, into the store's journal (:mod:`hsiseg.predict.maps_store`)."""
        labels = item.prediction.labels_with_unknown()
        row = FrameRow(labels, item.prediction.score, item.image, count_areas(labels, self.predictor.tree.num_leaves),
                       item.warnings)  # fmt: skip
        self.store.write(item.frame.slot, row)

    def finished(self, item: Predicted) -> None:
        self.result.done += 1
        if self.on_frame:
            self.on_frame(item.frame.index, "done")

    def failed(self, item: Failed) -> None:
        if item.stage != "write":
            self.previous = None  # smoothing restarts after a frame that could not be predicted
        message = one_line(item.error)
        self.result.failed[item.frame.index] = message
        with contextlib.suppress(Exception):  # the failure is still reported and returned
            self.store.write_failure(item.frame.slot, message)
        if self.on_frame:
            self.on_frame(item.frame.index, message)

    def close(self) -> None:
        """Nothing is held per frame (the file's lock is the caller's)."""


def _smooth(prediction: Prediction, previous: np.ndarray | None, weight: float) -> np.ndarray:
    """Exponential moving average of the probabilities; the leaf map follows the smoothed ones."""
    if previous is not None and previous.shape == prediction.probabilities.shape:
        prediction.probabilities = weight * previous + (1 - weight) * prediction.probabilities
        prediction.labels = prediction.probabilities.argmax(0).astype(np.int32)
    return prediction.probabilities


def write_stream_args(output: Path, arguments: dict[str, Any]) -> None:
    """``OUT/args.json`` of a streaming run."""
    with atomic_path(output / "args.json") as temporary:
        temporary.write_text(json.dumps(arguments, indent=2, default=str))
