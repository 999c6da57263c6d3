"""Recordings as the XiLens recorder writes them (its ``src/util.cpp``): frames appended one at a time to a
``{0, H, W}`` ``|u2`` Blosc2 array with one-frame chunks, ZSTD with bit-shuffle, 10-bit values; metadata as
msgpack lists in ``vlmeta`` written when the file is closed; a resumed file (appended to, its later session
crashed); a crashed file (no metadata); frames at two exposures."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import blosc2
import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from hsiseg.io.camera import CameraDescription
from hsiseg.io.recording import MosaicVideo, open_recording
from hsiseg.io.timeline import parse_stamp
from hsiseg.synthetic.dataset import demo_tree, generate_demo_data
from hsiseg.synthetic.recording import write_demo_recording
from hsiseg.training import TrainConfig, train
from hsiseg_cli.main import app

SHAPE = (24, 32)  # tiles; the sensor is 5 x 5 times that
START = datetime(2024, 11, 15, 14, 40, 59, 871000)


def recorder_stamp(moment: datetime) -> str:
    """What XiLens's GetTimeStamp() writes: QDate "yyyyMMdd_" + QTime "hh-mm-ss-zzz"."""
    return moment.strftime("%Y%m%d_") + moment.strftime("%H-%M-%S-") + f"{moment.microsecond // 1000:03d}"


class RecorderFile:
    """A .b2nd file written the way XiLens's FileImage does."""

    def __init__(self, path: Path, height: int, width: int) -> None:
        shuffles = [blosc2.Filter.BITSHUFFLE, blosc2.Filter.SHUFFLE]  # the last two filter slots, as XiLens sets them
        cparams = {"codec": blosc2.Codec.ZSTD, "clevel": 5, "typesize": 2,
                   "filters": [blosc2.Filter.NOFILTER] * 4 + shuffles}  # fmt: skip
        if path.exists():  # the recorder appends to an existing file of the same name
            self.array = blosc2.open(str(path), mode="a")
        else:
            self.array = blosc2.empty((0, height, width), dtype=np.uint16, chunks=(1, height, width),
                                      blocks=(1, height, width), urlpath=str(path), cparams=cparams)  # fmt: skip
        self.metadata: dict[str, list] = {"exposure_us": [], "acq_nframe": [], "color_filter_array": [],
                                          "time_stamp": [], "temperature_sensor_board": []}  # fmt: skip

    def append(self, frame: np.ndarray, exposure_us: int, counter: int, moment: datetime, temperature: float) -> None:
        count = self.array.shape[0]
        self.array.resize((count + 1, *self.array.shape[1:]))
        self.array[count] = frame
        values = {"exposure_us": exposure_us, "acq_nframe": counter, "color_filter_array": "XI_CFA_NONE",
                  "time_stamp": recorder_stamp(moment), "temperature_sensor_board": temperature}  # fmt: skip
        for key, value in values.items():
            self.metadata[key].append(value)

    def close(self) -> None:
        """AppendMetadata(): each list appended to the file's existing one (a resumed file's lists grow)."""
        vlmeta = self.array.schunk.vlmeta
        for key, values in self.metadata.items():
            old = list(vlmeta[key]) if key in vlmeta else []
            vlmeta[key] = old + values


@pytest.fixture(scope="module")
def camera_and_frames(tmp_path_factory) -> tuple[Path, list[np.ndarray], Path]:
    """(camera file with white/dark references, raw frames of the demo recording, a trained model)."""
    folder = tmp_path_factory.mktemp("xilens")
    recording, camera = write_demo_recording(folder / "rec", demo_tree(), frames=6, shape=SHAPE)
    frames = [open_recording(recording).raw(i) for i in range(6)]
    spec = generate_demo_data(folder / "data", surgeries=3, frames=1, shape=SHAPE, seed=5)
    train(spec, folder / "run", TrainConfig(steps=2, validate_every=2, model="pixel", refit=False, device="cpu"))
    return camera, frames, folder / "run" / "checkpoints" / "best.json"


def test_the_recorders_time_stamp_format() -> None:
    assert recorder_stamp(START) == "20241115_14-40-59-871"
    assert parse_stamp("20241115_14-40-59-871") == START


def write_session(path: Path, frames: list[np.ndarray], first: int, close: bool, start: datetime) -> None:
    writer = RecorderFile(path, *frames[0].shape)
    for offset, frame in enumerate(frames):
        writer.append(frame, 10_000, first + offset, start + timedelta(milliseconds=40 * offset), 30.0 + offset / 10)
    if close:
        writer.close()


def predict(model: Path, recording: Path, camera: Path, out: Path):
    result = CliRunner().invoke(app, ["predict", str(model), str(recording), "--camera", str(camera), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return result


def test_a_recorder_file_predicts_with_its_time_line(camera_and_frames, tmp_path: Path) -> None:
    camera, frames, model = camera_and_frames
    recording = tmp_path / "surgery.b2nd"
    write_session(recording, frames[:3], 0, True, START)
    write_session(recording, frames[3:], 3, True, START + timedelta(minutes=2))  # resumed after two minutes
    stored = blosc2.open(str(recording))
    assert stored.chunks == (1, *frames[0].shape) and stored.dtype == np.uint16 and stored.shape[0] == 6
    result = predict(model, recording, camera, tmp_path / "out")
    assert "hsiseg: note" not in result.output
    with h5py.File(tmp_path / "out" / "maps.h5") as maps:
        np.testing.assert_allclose(maps["timestamp"][()], [0, 0.04, 0.08, 120, 120.04, 120.08])
        np.testing.assert_array_equal(maps["exposure_us"][()], 10_000)
        np.testing.assert_array_equal(maps["acq_nframe"][()], np.arange(6))
        assert maps["temperature_sensor_board"][5] == pytest.approx(30.2)
    rows = (tmp_path / "out" / "areas.csv").read_text().splitlines()
    assert rows[4].startswith("3,120.000,")
    report = (tmp_path / "out" / "report.html").read_text()
    assert "<th>exposure (us)</th><td>10000</td>" in report
    assert "<th>temperature sensor board (degrees)</th><td>30 to 30.2</td>" in report


def test_a_resumed_file_whose_second_session_crashed(camera_and_frames, tmp_path: Path) -> None:
    camera, frames, model = camera_and_frames
    recording = tmp_path / "surgery.b2nd"
    write_session(recording, frames[:4], 0, True, START)
    write_session(recording, frames[4:], 4, False, START + timedelta(minutes=1))  # crashed: no metadata added
    result = predict(model, recording, camera, tmp_path / "out")
    assert "metadata 'time_stamp' covers 4 of 6 frames" in result.output
    with h5py.File(tmp_path / "out" / "maps.h5") as maps:
        stamps = maps["timestamp"][()]
        np.testing.assert_allclose(stamps[:4], [0, 0.04, 0.08, 0.12])
        assert np.isnan(stamps[4:]).all()
        assert maps["done"][()].all()
        assert any("covers 4 of 6 frames" in note for note in json.loads(maps.attrs["notes"]))
    assert "covers 4 of 6 frames" in (tmp_path / "out" / "report.html").read_text()


def test_a_file_the_recorder_never_closed(camera_and_frames, tmp_path: Path) -> None:
    camera, frames, model = camera_and_frames
    recording = tmp_path / "surgery.b2nd"
    write_session(recording, frames[:3], 0, False, START)
    result = predict(model, recording, camera, tmp_path / "out")
    assert "no metadata (time stamps, exposure)" in result.output and "probably not closed" in result.output
    with h5py.File(tmp_path / "out" / "maps.h5") as maps:
        assert maps["done"][()].all() and np.isnan(maps["timestamp"][()]).all()


def test_dropped_frames_are_reported_and_marked(camera_and_frames, tmp_path: Path) -> None:
    camera, frames, model = camera_and_frames
    recording = tmp_path / "surgery.b2nd"
    writer = RecorderFile(recording, *frames[0].shape)
    for index, counter in enumerate([10, 11, 14, 15]):  # two frames lost between 11 and 14
        writer.append(frames[index], 10_000, counter, START + timedelta(milliseconds=40 * counter), 30.0)
    writer.close()
    result = predict(model, recording, camera, tmp_path / "out")
    assert "frame counter (acq_nframe) skips 2 frames" in result.output
    with h5py.File(tmp_path / "out" / "maps.h5") as maps:
        assert "2 frames dropped before this one" in maps["warnings"][2].decode()


def test_frames_at_two_exposures_give_the_same_reflectance(camera_and_frames, tmp_path: Path) -> None:
    camera, frames, _ = camera_and_frames
    references = camera.parent
    white = blosc2.open(str(references / "white.b2nd"))[()].astype(np.float64).mean(0)
    dark = blosc2.open(str(references / "dark.b2nd"))[()].astype(np.float64).mean(0)
    signal = (frames[0].astype(np.float64) - dark) / (white - dark)  # what frame 0 shows at the white's exposure
    recorded = tmp_path / "cam"
    recorded.mkdir()
    for name, exposure in (("white", 10_000), ("dark", 10_000)):  # references with the recorder's metadata
        stack = blosc2.open(str(references / f"{name}.b2nd"))[()]
        array = blosc2.asarray(stack, urlpath=str(recorded / f"{name}.b2nd"), mode="w", chunks=(1, *stack.shape[1:]))
        array.schunk.vlmeta["exposure_us"] = [exposure] * stack.shape[0]
    (recorded / "camera.yaml").write_text(camera.read_text())
    recording = tmp_path / "two-exposures.b2nd"
    writer = RecorderFile(recording, *frames[0].shape)
    for exposure in (10_000, 5_000):  # the same scene at half the exposure: half the signal above dark
        raw = np.clip(np.round(dark + (white - dark) * signal * exposure / 10_000), 0, 1023).astype(np.uint16)
        writer.append(raw, exposure, 0, START, 30.0)
    writer.close()
    video = MosaicVideo(open_recording(recording), CameraDescription.from_file(recorded / "camera.yaml"))
    full, half = video.cube(0), video.cube(1)
    valid = ~(full.repaired | half.repaired)
    assert valid.mean() > 0.9
    np.testing.assert_allclose(half.data[valid], full.data[valid], atol=0.02)  # 10-bit rounding at half signal
    assert any("exposure changes from 5000 to 10000 us" in note for note in video.notes)
    uncorrected = (raw.astype(np.float64) - dark) / (white - dark)
    assert np.median(uncorrected / np.clip(signal, 0.05, None)) == pytest.approx(0.5, abs=0.05)  # what it fixes


def test_info_describes_a_recording(camera_and_frames, tmp_path: Path) -> None:
    camera, frames, _ = camera_and_frames
    recording = tmp_path / "surgery.b2nd"
    writer = RecorderFile(recording, *frames[0].shape)
    for index, counter in enumerate([0, 1, 3]):
        writer.append(frames[index], 8_000 + 1_000 * index, counter, START + timedelta(milliseconds=50 * index), 31.5)
    writer.close()
    result = CliRunner().invoke(app, ["info", str(recording), "--camera", str(camera), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[0])
    assert summary["frames"] == 3 and summary["frame_shape"] == list(frames[0].shape)
    assert summary["duration_s"] == pytest.approx(0.1) and summary["frames_per_second"] == pytest.approx(20)
    assert summary["exposure_us"] == [8000, 10000] and summary["dropped_frames"] == 1
    assert summary["temperatures"] == {"sensor_board": [31.5, 31.5]}
    assert "time_stamp" in summary["metadata_keys"] and summary["camera"]["tiles"] == list(SHAPE)
    assert summary["camera"]["bands"] == 25 and summary["camera"]["white_exposure_us"] == 10_000
    shown = CliRunner().invoke(app, ["info", str(recording)])
    assert shown.exit_code == 0 and "dropped frames" in shown.output and "skips 1 frame:" in shown.output
