"""One prediction pipeline for every way frames are predicted: ``source -> Predictor -> sink``.

A *source* loads frames (cube files, the frames of a recording); a *sink* decides which frames to predict
and stores what comes out (frame folders, ``maps.h5``). :func:`run_pipeline` connects them with one
mechanism: read-ahead threads load, preprocess and render the next frames while the network predicts
these (``batch_frames`` at a time), and write-behind threads store the previous ones. ``workers`` threads
read and as many write, side by side (one each by default: on a CPU the network takes every core; with a GPU
the network is fast and reading and writing are the work to spread); at most ``batch_frames + workers - 1``
frames are read ahead and ``workers`` wait for writing, so memory stays flat however long the recording.
Frames are predicted and reported in order whatever the number of workers. Frames travel as typed records:

- :class:`Loaded`: read and preprocessed, with its RGB image and the warnings raised on the way;
- :class:`Predicted`: the network's :class:`~hsiseg.predict.inference.Prediction` added;
- :class:`Failed`: the exception that ended the frame and the stage (``read``, ``predict``, ``write``).

Any exception fails its frame alone (a reader's ``MemoryError``, the network's ``RuntimeError`` as well as
bad input); the run goes on. Interrupted (Ctrl-C), the frame being written is finished and the sink closed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.io.cube import Cube
from hsiseg.predict.frame_warnings import collect
from hsiseg.predict.inference import Prediction, Predictor, Prepared
from hsiseg.render import rgb

Stage = Literal["read", "predict", "write"]


@dataclass(frozen=True)
class FrameId:
    """A frame of a run: ``name`` in the outputs, ``source`` it is read from, ``slot`` its position in the run
    (a recording frame's row in ``maps.h5``), ``index`` its index in the recording (-1 for cube files)."""

    name: str
    source: str
    slot: int
    index: int = -1


@dataclass
class Loaded:
    """A frame read and preprocessed: ``prepared`` the network input ((B, H, W) image and invalid mask),
    ``image`` (H, W, 3) uint8 as the overlays show it."""

    frame: FrameId
    cube: Cube
    prepared: Prepared
    image: np.ndarray
    warnings: list[str] = field(default_factory=list)


@dataclass
class Predicted:
    """A frame with its prediction; ``seconds``: from waiting for it to the end of its network pass."""

    frame: FrameId
    cube: Cube
    image: np.ndarray
    prediction: Prediction
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Failed:
    """A frame that failed at ``stage`` with ``error``."""

    frame: FrameId
    error: BaseException
    stage: Stage
    warnings: list[str] = field(default_factory=list)


class Source(Protocol):
    """Where frames come from."""

    def load(self, frame: FrameId) -> Cube:
        """The frame as a calibrated cube (called in a read-ahead thread, side by side with other frames' loads
        when ``workers`` > 1); raise to fail the frame."""
        ...


class Sink(Protocol):
    """Where predicted frames go. Every method but :meth:`write` runs in the calling thread, in frame order."""

    def begin(self, frame: FrameId) -> bool:
        """Before a frame is predicted (or its failure recorded): ``False`` when this run leaves it (another
        run took it, or finished it meanwhile); the sink reports that itself."""
        ...

    def predicted(self, item: Predicted) -> None:
        """A prediction before it is written: summaries, temporal smoothing, warnings about the frame."""
        ...

    def write(self, item: Predicted) -> None:
        """Store the frame (called in a write-behind thread, side by side with other frames' writes when
        ``workers`` > 1); raise to fail the frame."""
        ...

    def finished(self, item: Predicted) -> None:
        """The frame is stored."""
        ...

    def failed(self, item: Failed) -> None:
        """The frame failed; record and report it."""
        ...

    def close(self) -> None:
        """The run ends (also when interrupted): release what the sink holds."""
        ...


@dataclass
class PipelineStats:
    """Wall seconds spent in the network (what the read-ahead and write-behind hide the rest behind)."""

    network_seconds: float = 0.0


def run_pipeline(
    frames: Sequence[FrameId], source: Source, predictor: Predictor, sink: Sink, rgb_method: str = "auto",
    batch_frames: int = 1, workers: int = 1,
) -> PipelineStats:  # fmt: skip
    """Predict ``frames`` from ``source`` into ``sink`` (see module docstring)."""
    for value, name in ((batch_frames, "batch_frames"), (workers, "workers")):
        if value < 1:
            raise HsisegError(f"{name} must be at least 1, got {value}")
    stats = PipelineStats()
    with (
        ThreadPoolExecutor(workers, thread_name_prefix="hsiseg-read") as reader,
        ThreadPoolExecutor(workers, thread_name_prefix="hsiseg-write") as writer,
    ):
        run = _Run(predictor, sink, writer, stats, workers)
        try:
            run.loop(frames, lambda frame: reader.submit(_load, source, predictor, frame, rgb_method), batch_frames)
        finally:
            run.finish_writes()
            sink.close()
    return stats


def _load(source: Source, predictor: Predictor, frame: FrameId, rgb_method: str) -> Loaded | Failed:
    """In the read-ahead thread: the frame loaded, preprocessed and rendered, or its failure."""
    with collect() as raised:
        try:
            cube = source.load(frame)
            return Loaded(frame, cube, predictor.prepare(cube), rgb(cube.data, cube.wavelengths, rgb_method), raised)
        except Exception as error:  # noqa: BLE001 - a MemoryError or a library's bug fails this frame only
            return Failed(frame, error, "read", raised)


class _Run:
    """The main thread's part: group, predict, hand over to the writers, report in order."""

    def __init__(self, predictor: Predictor, sink: Sink, writer: ThreadPoolExecutor, stats: PipelineStats,
                 workers: int) -> None:  # fmt: skip
        self.predictor, self.sink, self.writer, self.stats, self.workers = predictor, sink, writer, stats, workers
        self.group: list[tuple[Loaded, float]] = []  # loaded frames waiting for the network, with their start
        self.writing: deque[tuple[Future[BaseException | None], Predicted]] = deque()  # oldest first

    def loop(self, frames: Sequence[FrameId], load: Callable[[FrameId], Future[Loaded | Failed]],
             batch_frames: int) -> None:  # fmt: skip
        ahead, upcoming = batch_frames + self.workers - 1, iter(frames)
        pending: deque[Future[Loaded | Failed]] = deque()

        def read_ahead() -> None:
            while len(pending) < ahead and (frame := next(upcoming, None)) is not None:
                pending.append(load(frame))

        try:
            read_ahead()
            while pending:
                started = time.perf_counter()
                item = pending.popleft().result()
                read_ahead()  # before the network runs: the next frames are read while it predicts this one
                self.take(item, started, batch_frames)
            self.predict_group()
        finally:
            for future in pending:  # interrupted: frames not started yet are not read
                future.cancel()

    def take(self, item: Loaded | Failed, started: float, batch_frames: int) -> None:
        """A frame in order from the readers: left, failed, or into the network's group."""
        if not self.sink.begin(item.frame):
            return
        if isinstance(item, Failed):
            self.predict_group()  # the frames before it, in order
            self.sink.failed(item)
            return
        self.group.append((item, started))
        if len(self.group) >= batch_frames:
            self.predict_group()

    def predict_group(self) -> None:
        if not self.group:
            return
        group, self.group = self.group, []
        started = time.perf_counter()
        with collect() as raised:
            try:
                if len(group) == 1:
                    predictions = [self.predictor.predict(group[0][0].cube, group[0][0].prepared)]
                else:
                    predictions = self.predictor.predict_many([loaded.prepared for loaded, _ in group])
            except Exception as error:  # noqa: BLE001 - e.g. out of GPU memory: these frames fail, not the run
                for loaded, _ in group:
                    self.sink.failed(Failed(loaded.frame, error, "predict", loaded.warnings))
                return
        ended = time.perf_counter()
        self.stats.network_seconds += ended - started
        for (loaded, waited), prediction in zip(group, predictions, strict=True):
            warnings = [*loaded.warnings, *(w for w in raised if w not in loaded.warnings)]
            item = Predicted(loaded.frame, loaded.cube, loaded.image, prediction, warnings, ended - waited)
            self.sink.predicted(item)
            self.writing.append((self.writer.submit(_write, self.sink, item), item))
            while len(self.writing) > self.workers:  # at most `workers` frames wait: memory stays flat
                self.finish_oldest_write()

    def finish_writes(self) -> None:
        while self.writing:
            self.finish_oldest_write()

    def finish_oldest_write(self) -> None:
        future, item = self.writing.popleft()
        error = future.result()
        if error is None:
            self.sink.finished(item)
        else:
            self.sink.failed(Failed(item.frame, error, "write", item.warnings))


def _write(sink: Sink, item: Predicted) -> BaseException | None:
    """In the write-behind thread: the sink's write; the exception instead of raising it (the frame fails)."""
    try:
        sink.write(item)
    except Exception as error:  # noqa: BLE001 - a full disk or a renderer's bug fails this frame only
        return error
    return None
