"""hsiseg.predict.pipeline: one mechanism for every way frames are predicted. A source and a sink written in
this test see typed records in frame order; a frame that fails to read, to predict or to write fails alone;
writing happens on another thread with at most one frame waiting; frames are grouped for the network."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

from hsiseg.io.cube import Cube
from hsiseg.predict.pipeline import Failed, FrameId, Predicted, run_pipeline

WAVELENGTHS = np.linspace(500.0, 1000.0, 8)


class Source:
    """Cubes whose first pixel holds the frame's slot; slot 1 cannot be read."""

    def load(self, frame: FrameId) -> Cube:
        if frame.slot == 1:
            raise MemoryError("Unable to allocate 149. GiB")
        data = np.full((4, 5, 8), 0.5, dtype=np.float32)
        data[0, 0, 0] = frame.slot
        return Cube(data, WAVELENGTHS, {"source": frame.source})


@dataclass
class FakePrediction:
    slot: int


class Predictor:
    """Stands in for hsiseg's Predictor: slot 2 breaks the network; records the groups it is given."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []

    def prepare(self, cube: Cube) -> np.ndarray:
        return cube.data

    def predict(self, cube: Cube, prepared: np.ndarray) -> FakePrediction:
        return self.predict_many([prepared])[0]

    def predict_many(self, prepared: list[np.ndarray]) -> list[FakePrediction]:
        slots = [int(item[0, 0, 0]) for item in prepared]
        self.groups.append(slots)
        if 2 in slots:
            raise RuntimeError("CUDA out of memory")
        return [FakePrediction(slot) for slot in slots]


@dataclass
class Sink:
    """Records every call; frame 4 is left to another run, writing frame 5 fails."""

    events: list[tuple[str, int]] = field(default_factory=list)
    writer_threads: set[str] = field(default_factory=set)
    closed: bool = False

    def begin(self, frame: FrameId) -> bool:
        self.events.append(("begin", frame.slot))
        return frame.slot != 4

    def predicted(self, item: Predicted) -> None:
        assert item.prediction.slot == item.frame.slot and item.image.shape == (4, 5, 3)
        self.events.append(("predicted", item.frame.slot))

    def write(self, item: Predicted) -> None:
        self.writer_threads.add(threading.current_thread().name)
        if item.frame.slot == 5:
            raise OSError(28, "No space left on device")
        self.events.append(("write", item.frame.slot))

    def finished(self, item: Predicted) -> None:
        self.events.append(("finished", item.frame.slot))

    def failed(self, item: Failed) -> None:
        self.events.append((f"failed:{item.stage}:{type(item.error).__name__}", item.frame.slot))

    def close(self) -> None:
        self.closed = True


def frames(count: int) -> list[FrameId]:
    return [FrameId(f"frame{slot}", f"memory#{slot}", slot) for slot in range(count)]


def outcome(sink: Sink, slot: int) -> str:
    """The last thing that happened to a frame."""
    return [event for event, at in sink.events if at == slot][-1]


def test_every_frame_ends_once_and_failures_stay_with_their_frame() -> None:
    sink, predictor = Sink(), Predictor()
    run_pipeline(frames(7), Source(), predictor, sink)
    assert [outcome(sink, slot) for slot in range(7)] == [
        "finished", "failed:read:MemoryError", "failed:predict:RuntimeError", "finished", "begin",
        "failed:write:OSError", "finished",
    ]  # fmt: skip
    assert [slot for event, slot in sink.events if event == "begin"] == list(range(7))  # every frame, in order
    assert [slot for event, slot in sink.events if event == "predicted"] == [0, 3, 5, 6]  # in order
    assert predictor.groups == [[0], [2], [3], [5], [6]] and sink.closed
    assert sink.writer_threads and all(name.startswith("hsiseg-write") for name in sink.writer_threads)


def test_at_most_one_frame_waits_for_writing() -> None:
    sink = Sink()
    run_pipeline(frames(4)[:1] + [FrameId("frame3", "memory#3", 3), FrameId("frame6", "memory#6", 6)], Source(),
                 Predictor(), sink)  # fmt: skip
    order = [event for event in sink.events if event[0] in ("predicted", "finished")]
    # frame 3 is predicted only after frame 0 was written: no second frame waits for the writer
    assert order == [("predicted", 0), ("predicted", 3), ("finished", 0), ("predicted", 6), ("finished", 3),
                     ("finished", 6)]  # fmt: skip


def test_frames_are_grouped_for_the_network_and_a_failed_read_flushes_the_group() -> None:
    predictor = Predictor()
    run_pipeline([f for f in frames(7) if f.slot not in (2, 4, 5)], Source(), predictor, Sink(), batch_frames=2)
    assert predictor.groups == [[0], [3, 6]]  # frame 1 failed to read: frame 0 went alone, in order


def test_an_interrupt_finishes_the_write_in_progress_and_closes_the_sink() -> None:
    class Interrupting(Predictor):
        def predict_many(self, prepared):
            if int(prepared[0][0, 0, 0]) == 3:
                raise KeyboardInterrupt
            return super().predict_many(prepared)

    sink = Sink()
    with pytest.raises(KeyboardInterrupt):
        run_pipeline([FrameId("a", "m#0", 0), FrameId("b", "m#3", 3)], Source(), Interrupting(), sink)
    assert ("finished", 0) in sink.events and sink.closed


def test_with_several_workers_frames_end_the_same_and_are_reported_in_order() -> None:
    sink, predictor = Sink(), Predictor()
    run_pipeline(frames(7), Source(), predictor, sink, workers=3)
    assert [outcome(sink, slot) for slot in range(7)] == [
        "finished", "failed:read:MemoryError", "failed:predict:RuntimeError", "finished", "begin",
        "failed:write:OSError", "finished",
    ]  # fmt: skip
    assert [slot for event, slot in sink.events if event == "begin"] == list(range(7))
    assert [slot for event, slot in sink.events if event == "finished"] == [0, 3, 6]  # in order
    assert predictor.groups == [[0], [2], [3], [5], [6]] and sink.closed


class Meeting:
    """Frames 0 and 1 wait for each other (in reading, or in writing): they pass only when both are in that
    stage at the same time; alone, the wait times out and the frame fails."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.barrier = threading.Barrier(2, timeout=timeout)

    def meet(self, frame: FrameId) -> None:
        if frame.slot in (0, 1):
            self.barrier.wait()


class MeetingSource:
    """Every frame readable (first pixel: its slot); frames 0 and 1 meet while being read."""

    def __init__(self, meeting: Meeting | None = None) -> None:
        self.meeting = meeting

    def load(self, frame: FrameId) -> Cube:
        if self.meeting:
            self.meeting.meet(frame)
        data = np.full((4, 5, 8), 0.5, dtype=np.float32)
        data[0, 0, 0] = frame.slot
        return Cube(data, WAVELENGTHS, {"source": frame.source})


@dataclass
class MeetingSink(Sink):
    """Frames 0 and 1 meet while being written."""

    meeting: Meeting | None = None

    def write(self, item: Predicted) -> None:
        if self.meeting:
            self.meeting.meet(item.frame)
        super().write(item)


def test_workers_read_frames_side_by_side() -> None:
    sink = Sink()
    run_pipeline(frames(2), MeetingSource(Meeting()), Predictor(), sink, workers=2)
    assert outcome(sink, 0) == outcome(sink, 1) == "finished"  # read at the same time: they met
    alone = Sink()  # one worker: frame 0's read waits for frame 1's, which starts only after it
    run_pipeline(frames(2), MeetingSource(Meeting(timeout=0.2)), Predictor(), alone)
    assert outcome(alone, 0) == "failed:read:BrokenBarrierError"


class WatchedSource(MeetingSource):
    """Every frame readable; records when each frame's read begins."""

    def __init__(self, slots: list[int]) -> None:
        super().__init__()
        self.reading = {slot: threading.Event() for slot in slots}

    def load(self, frame: FrameId) -> Cube:
        self.reading[frame.slot].set()
        return super().load(frame)


class WaitingPredictor(Predictor):
    """Predicts a frame only once the next frame's read has begun (or 10 s passed): records which it was."""

    def __init__(self, source: WatchedSource, slots: list[int]) -> None:
        super().__init__()
        self.source, self.following = source, dict(itertools.pairwise(slots))
        self.next_was_reading: list[bool] = []

    def predict_many(self, prepared: list[np.ndarray]) -> list[FakePrediction]:
        following = self.following.get(int(prepared[-1][0, 0, 0]))
        if following is not None:
            self.next_was_reading.append(self.source.reading[following].wait(timeout=10.0))
        return super().predict_many(prepared)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_next_frame_is_read_while_the_network_predicts_this_one(workers: int) -> None:
    slots = [0, 1, 3]  # frames the test predictor predicts
    source = WatchedSource(slots)
    predictor, sink = WaitingPredictor(source, slots), Sink()
    run_pipeline([FrameId(f"f{slot}", f"m#{slot}", slot) for slot in slots], source, predictor, sink, workers=workers)
    assert predictor.next_was_reading == [True, True]
    assert [outcome(sink, slot) for slot in slots] == ["finished"] * 3


def test_workers_write_frames_side_by_side_and_at_most_that_many_wait() -> None:
    chosen = [FrameId(f"f{slot}", f"m#{slot}", slot) for slot in (0, 1, 3, 6)]
    sink = MeetingSink(meeting=Meeting())
    run_pipeline(chosen, MeetingSource(), Predictor(), sink, workers=2)
    assert [outcome(sink, slot) for slot in (0, 1, 3, 6)] == ["finished"] * 4  # frames 0 and 1 were written together
    order = [event for event in sink.events if event[0] in ("predicted", "finished")]
    # two frames may wait for writing: frame 3's prediction makes a third, so frame 0 is finished first
    assert order == [("predicted", 0), ("predicted", 1), ("predicted", 3), ("finished", 0), ("predicted", 6),
                     ("finished", 1), ("finished", 3), ("finished", 6)]  # fmt: skip
    alone = MeetingSink(meeting=Meeting(timeout=0.2))
    run_pipeline(chosen, MeetingSource(), Predictor(), alone, workers=1)
    assert outcome(alone, 0) == "failed:write:BrokenBarrierError"


def test_the_number_of_workers_and_frames_per_pass_are_checked() -> None:
    from hsiseg.errors import HsisegError

    for keywords, message in (({"workers": 0}, "workers must be at least 1, got 0"),
                              ({"batch_frames": 0}, "batch_frames must be at least 1, got 0")):  # fmt: skip
        with pytest.raises(HsisegError, match=message):
            run_pipeline(frames(1), Source(), Predictor(), Sink(), **keywords)


def test_one_worker_on_a_cpu_and_more_with_an_accelerator() -> None:
    from hsiseg.predict.options import RunOptions, default_workers

    assert default_workers("cpu") == 1 and RunOptions().pipeline_workers() == 1
    assert RunOptions(workers=5).pipeline_workers() == 5
