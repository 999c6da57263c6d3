"""Streaming prediction of a snapshot-mosaic recording and its exporters: maps equal frame-by-frame prediction,
resume at frame granularity, damaged frames fail alone, temporal smoothing against the formula, the MP4 decodes
back, the HTML report holds every frame and class, the CLI end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from hsiseg import HsisegError
from hsiseg.export import StreamMaps, export
from hsiseg.io.camera import CameraDescription
from hsiseg.io.recording import MosaicVideo, open_recording
from hsiseg.predict import PredictOptions, Predictor
from hsiseg.predict.stream import Selection, predict_recording
from hsiseg.synthetic.dataset import demo_tree, generate_demo_data
from hsiseg.synthetic.recording import write_demo_recording
from hsiseg.training import TrainConfig, train
from hsiseg_cli.main import app

FRAMES, SHAPE = 6, (24, 32)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(model checkpoint, recording, camera file)."""
    folder = tmp_path_factory.mktemp("stream")
    spec = generate_demo_data(folder / "data", surgeries=3, frames=1, shape=SHAPE, seed=5)
    config = TrainConfig(steps=2, validate_every=2, batch_size=2, patch_size=16, model="unet",
                         model_options={"width": 8, "depth": 2}, refit=False)  # fmt: skip
    train(spec, folder / "run", config)
    recording, camera = write_demo_recording(folder / "rec", demo_tree(), frames=FRAMES, shape=SHAPE)
    return folder / "run" / "checkpoints" / "best.json", recording, camera


def video(recording: Path, camera: Path) -> MosaicVideo:
    return MosaicVideo(open_recording(recording), CameraDescription.from_file(camera))


def test_streamed_maps_equal_frame_by_frame_prediction(setup, tmp_path) -> None:
    model, recording, camera = setup
    result = predict_recording(model, video(recording, camera), tmp_path / "out")
    assert (result.done, result.skipped, result.failed) == (FRAMES, 0, {})
    predictor = Predictor.from_checkpoint(model)
    frames = video(recording, camera)
    with h5py.File(tmp_path / "out" / "maps.h5") as maps:
        assert maps["labels"].shape == (FRAMES, *SHAPE) and maps["labels"].chunks == (1, *SHAPE)
        assert maps["done"][()].all() and list(maps["frame"][()]) == list(range(FRAMES))
        np.testing.assert_allclose(maps["timestamp"][()], 0.04 * np.arange(FRAMES))
        for index in range(FRAMES):
            direct = predictor.predict(frames.cube(index)).labels_with_unknown()
            np.testing.assert_array_equal(maps["labels"][index], direct)
            assert maps["pixels"][index].sum() == SHAPE[0] * SHAPE[1]
            assert maps["pixels"][index][0] == (direct == -2).sum()  # invalid first, then unknown, then leaves


def test_resume_selection_and_damaged_frames(setup, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, recording, camera = setup
    whole = tmp_path / "whole"
    predict_recording(model, video(recording, camera), whole)
    original = Predictor.predict

    def interrupted(self, cube, prepared=None):
        if cube.meta["frame"] == 3:
            raise KeyboardInterrupt
        return original(self, cube, prepared)

    monkeypatch.setattr(Predictor, "predict", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        predict_recording(model, video(recording, camera), out)
    monkeypatch.undo()
    with h5py.File(out / "maps.h5") as maps:
        assert list(maps["done"][()]) == [True, True, True, False, False, False]
    with pytest.raises(HsisegError, match="maps.h5 exists; pass --continue"):
        predict_recording(model, video(recording, camera), out)
    with pytest.raises(HsisegError, match="written by a run that differs in: frames, selection"):
        predict_recording(model, video(recording, camera), out, PredictOptions(resume=True), Selection(every=2))
    resumed = predict_recording(model, video(recording, camera), out, PredictOptions(resume=True))
    assert (resumed.done, resumed.skipped) == (3, 3)
    with h5py.File(out / "maps.h5") as maps, h5py.File(whole / "maps.h5") as reference:
        np.testing.assert_array_equal(maps["labels"][()], reference["labels"][()])

    picked = predict_recording(model, video(recording, camera), tmp_path / "picked", selection=Selection(1, 6, 2))
    with h5py.File(tmp_path / "picked" / "maps.h5") as maps:
        assert list(maps["frame"][()]) == [1, 3, 5] and picked.done == 3

    import blosc2

    frames = np.stack([open_recording(recording).raw(i) for i in range(FRAMES)])
    broken = tmp_path / "broken.b2nd"
    blosc2.asarray(frames, urlpath=str(broken), mode="w", chunks=(1, *frames.shape[1:]))
    data = bytearray(broken.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 300] = bytes(b ^ 0xFF for b in data[middle : middle + 300])
    broken.write_bytes(bytes(data))
    damaged = predict_recording(model, MosaicVideo(open_recording(broken), CameraDescription.from_file(camera)),
                                tmp_path / "damaged")  # fmt: skip
    assert damaged.failed and damaged.done + len(damaged.failed) == FRAMES
    assert all("broken.b2nd: frame" in message for message in damaged.failed.values())
    assert StreamMaps(tmp_path / "damaged" / "maps.h5").messages("failures").keys() == damaged.failed.keys()


def test_temporal_smoothing_is_the_moving_average(setup, tmp_path) -> None:
    model, recording, camera = setup
    predict_recording(model, video(recording, camera), tmp_path / "out", smoothing=0.6, selection=Selection(0, 2))
    predictor = Predictor.from_checkpoint(model)
    frames = video(recording, camera)
    first, second = (predictor.predict(frames.cube(i)) for i in (0, 1))
    expected = (0.6 * first.probabilities + 0.4 * second.probabilities).argmax(0)
    expected = np.where(second.unknown, -1, expected)
    expected = np.where(second.invalid, -2, expected)
    with h5py.File(tmp_path / "out" / "maps.h5") as maps:
        np.testing.assert_array_equal(maps["labels"][1], expected)
        np.testing.assert_array_equal(maps["labels"][0], first.labels_with_unknown())


def test_exporters_and_the_command_line(setup, tmp_path) -> None:
    import av

    model, recording, camera = setup
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(model), str(recording), "--camera", str(camera), "-o", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("areas.csv", "areas.png", "overlay.mp4", "report.html", "args.json"):
        assert f"wrote {out / name}" in result.output or name in ("areas.png", "args.json"), name
        assert (out / name).is_file(), name
    maps = StreamMaps(out / "maps.h5")
    with (out / "areas.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["frame"]) for row in rows] == list(range(FRAMES)) and rows[1]["timestamp"] == "0.040"
    assert all(abs(sum(float(v) for k, v in row.items() if k not in ("frame", "timestamp")) - 100) < 0.01
               for row in rows)  # fmt: skip
    with av.open(str(out / "overlay.mp4")) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == FRAMES and decoded[0].shape[0] % 2 == 0 and decoded[0].shape[1] % 2 == 0
    page = (out / "report.html").read_text()
    data = json.loads(page.split('<script id="report-data" type="application/json">')[1].split("</script>")[0])
    assert [frame["frame"] for frame in data["frames"]] == list(range(FRAMES))
    assert {entry["code"] for entry in data["classes"]} == set(maps.present_codes())
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
    again = CliRunner().invoke(app, ["predict", str(model), str(recording), "--camera", str(camera), "-o", str(out),
                                     "--continue", "--export", "areas"])  # fmt: skip
    assert again.exit_code == 0 and "0 frames predicted" in again.output and f"{FRAMES} skipped" in again.output
    missing = CliRunner().invoke(app, ["predict", str(model), str(recording), "-o", str(tmp_path / "x"), "--every",
                                       "2"])  # fmt: skip
    assert missing.exit_code == 2 and "needs its camera description (--camera)" in missing.output
    assert export("areas", maps, tmp_path) == tmp_path / "areas.csv"
    with pytest.raises(HsisegError, match="unknown export 'avi'"):
        export("avi", maps, tmp_path)


def browser() -> str | None:
    import shutil

    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
                None)  # fmt: skip


@pytest.mark.skipif(browser() is None, reason="no Chromium on this machine (Debian package chromium)")
def test_the_html_report_runs_in_a_headless_browser(setup, tmp_path) -> None:
    """The page's own script draws the first frame, lists every class and reacts to nothing from outside."""
    import subprocess

    model, recording, camera = setup
    result = predict_recording(model, video(recording, camera), tmp_path)
    maps = StreamMaps(result.maps)
    export("areas", maps, tmp_path)
    page = export("html", maps, tmp_path)
    command = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
               "--dump-dom", page.as_uri()]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    assert '<b id="name">frame 0, 0:00.00</b>' in dom  # the script ran and drew frame 0
    assert dom.count('type="checkbox"') == len(maps.present_codes())  # one toggle per class in the run
    assert dom.count("<img") >= FRAMES  # the frame strip


def test_frames_batched_for_the_network_give_the_same_maps(setup, tmp_path) -> None:
    model, recording, camera = setup
    predictor = Predictor.from_checkpoint(model)
    frames = video(recording, camera)
    prepared = [predictor.prepare(frames.cube(i)) for i in range(3)]
    together = predictor.predict_many(prepared)
    for item, batched in zip(prepared, together, strict=True):
        alone = predictor.predict(None, item)
        np.testing.assert_allclose(batched.probabilities, alone.probabilities, atol=1e-5)
        np.testing.assert_array_equal(batched.labels_with_unknown(), alone.labels_with_unknown())
    single = predict_recording(model, video(recording, camera), tmp_path / "one")
    grouped = predict_recording(model, video(recording, camera), tmp_path / "four", batch_frames=4)
    assert (single.done, grouped.done) == (FRAMES, FRAMES)
    with h5py.File(tmp_path / "one" / "maps.h5") as one, h5py.File(tmp_path / "four" / "maps.h5") as four:
        np.testing.assert_array_equal(one["labels"][()], four["labels"][()])
        np.testing.assert_array_equal(one["pixels"][()], four["pixels"][()])


def test_frames_read_and_written_by_several_workers_give_the_same_maps_file(setup, tmp_path) -> None:
    from hsiseg.predict.options import RunOptions

    model, recording, camera = setup  # a Blosc2 recording: its raw reads take turns, the rest runs side by side
    single = predict_recording(model, video(recording, camera), tmp_path / "one")
    spread = predict_recording(model, video(recording, camera), tmp_path / "three", RunOptions(workers=3))
    assert (single.done, spread.done) == (FRAMES, FRAMES)
    with h5py.File(tmp_path / "one" / "maps.h5") as one, h5py.File(tmp_path / "three" / "maps.h5") as three:
        for name in ("labels", "pixels", "score", "rgb"):
            np.testing.assert_array_equal(one[name][()], three[name][()])


def test_review_findings_resume_sizes_references_locks(setup, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import blosc2
    import imageio.v3 as imageio

    from hsiseg.predict.claims import try_claim

    model, recording, camera = setup
    frames = np.stack([open_recording(recording).raw(i) for i in range(FRAMES)])
    copy = tmp_path / "copy.b2nd"
    blosc2.asarray(frames, urlpath=str(copy), mode="w", chunks=(1, *frames.shape[1:]))
    out = tmp_path / "out"
    original = MosaicVideo.cube

    def fails_at_two(self, index):
        if index == 2:
            raise HsisegError("frame 2 cannot be read (test)")
        return original(self, index)

    monkeypatch.setattr(MosaicVideo, "cube", fails_at_two)
    first = predict_recording(model, video(copy, camera), out)
    monkeypatch.undo()
    assert list(first.failed) == [2] and StreamMaps(out / "maps.h5").messages("failures") == {
        2: ["frame 2 cannot be read (test)"]}  # fmt: skip
    seen = []
    again = predict_recording(model, video(copy, camera), out, PredictOptions(resume=True),
                              on_frame=lambda index, status: seen.append((index, status)))  # fmt: skip
    assert again.done == 1 and sorted(seen) == [(0, "skipped"), (1, "skipped"), (2, "done"), (3, "skipped"),
                                                (4, "skipped"), (5, "skipped")]  # fmt: skip
    assert StreamMaps(out / "maps.h5").messages("failures") == {}  # the retried frame's failure is cleared

    blosc2.asarray(frames[::-1].copy(), urlpath=str(copy), mode="w", chunks=(1, *frames.shape[1:]))
    with pytest.raises(HsisegError, match="differs in: recording"):  # same name, other frames
        predict_recording(model, video(copy, camera), out, PredictOptions(resume=True))

    lock = try_claim(out / ".maps.lock")
    with pytest.raises(HsisegError, match="another run is writing it"):
        predict_recording(model, video(copy, camera), out, PredictOptions(overwrite=True))
    lock.release()

    folder = tmp_path / "pngs"
    folder.mkdir()
    for index, frame in enumerate(frames[:3]):
        imageio.imwrite(folder / f"f{index}.png", frame if index != 1 else frame[:-5])  # one frame cut short
    mixed = predict_recording(model, video(folder, camera), tmp_path / "mixed")
    assert mixed.done == 2 and "115 x 160" in mixed.failed[1]  # that frame fails alone, naming its size

    small = tmp_path / "small.npy"
    np.save(small, frames[:, :50, :60])
    result = CliRunner().invoke(app, ["predict", str(model), str(small), "--camera", str(camera), "-o",
                                      str(tmp_path / "s")])  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "the white reference has" in result.output
    refused = CliRunner().invoke(app, ["predict", str(model), str(recording), "--camera", str(camera), "-o",
                                       str(tmp_path / "r"), "--level", "1"])  # fmt: skip
    assert refused.exit_code == 2 and "--level applies to folders of cubes, not to a recording" in refused.output


def test_an_exporter_registered_outside_hsiseg_runs_from_the_command_line(setup, tmp_path) -> None:
    """What docs/ARCHITECTURE.md tells a contributor to do: one function, registered, used by hsiseg predict."""
    from hsiseg.export import EXPORTERS

    @EXPORTERS.register("unknown-frames", needs=("areas",))
    def unknown_frames(maps: StreamMaps, output: Path) -> Path:
        assert (output / "areas.csv").is_file()  # what it needs ran first
        path = output / "unknown_frames.txt"
        flagged = [frame for frame, counts in zip(maps.frames, maps.pixels, strict=True) if counts[1]]
        path.write_text("".join(f"{frame}\n" for frame in flagged))
        return path

    try:
        model, recording, camera = setup
        out = tmp_path / "out"
        result = CliRunner().invoke(app, ["predict", str(model), str(recording), "--camera", str(camera), "-o",
                                          str(out), "--export", "unknown-frames"])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert f"wrote {out / 'unknown_frames.txt'}" in result.output
        with h5py.File(out / "maps.h5") as maps:
            expected = [str(f) for f, row in zip(maps["frame"][()], maps["pixels"][()], strict=True) if row[1]]
        assert (out / "unknown_frames.txt").read_text().split() == expected
    finally:
        del EXPORTERS["unknown-frames"]


def test_scores_beyond_half_precision_saturate_instead_of_overflowing() -> None:
    """maps.h5 keeps the score in float16: a distance score of -1e7 (far from every trained class) is stored as
    -65504, not -inf and a RuntimeWarning; values in range are the plain float16 cast; NaN stays NaN."""
    import warnings

    from hsiseg.predict.maps_store import half_precision

    scores = np.array([[-1e7, -70000.0, -65504.0, -12.345], [0.0, 3.5, 1e9, np.nan]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stored = half_precision(scores)
    assert stored.dtype == np.float16
    np.testing.assert_array_equal(stored[0, :2], [-65504.0, -65504.0])
    assert stored[1, 2] == 65504.0 and np.isnan(stored[1, 3])
    in_range = np.abs(scores) <= 65504
    np.testing.assert_array_equal(stored[in_range], scores[in_range].astype(np.float16))


def test_files_the_run_did_not_write_are_never_replaced_nor_deleted(setup, tmp_path) -> None:
    model, recording, camera = setup
    command = ["predict", str(model), str(recording), "--camera", str(camera), "--stop", "2"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("my report")  # a folder of someone else's files, no recording run in it
    refused = CliRunner().invoke(app, [*command, "-o", str(mine), "--overwrite"])
    assert refused.exit_code == 2 and f"{mine / 'report.html'} exists" in refused.output
    assert (mine / "report.html").read_text() == "my report" and not (mine / "maps.h5").exists()
    out = tmp_path / "out"
    assert CliRunner().invoke(app, [*command, "-o", str(out)]).exit_code == 0
    (out / "maps.journal").mkdir()
    (out / "maps.journal" / "notes.txt").write_text("mine")  # a foreign file where the journal goes
    (out / "maps.journal" / "000001.npz").write_bytes(b"a journal entry of hsiseg")
    refused = CliRunner().invoke(app, [*command, "-o", str(out), "--overwrite"])
    assert refused.exit_code == 2 and "notes.txt is not a file of hsiseg's journal" in refused.output
    assert (out / "maps.journal" / "notes.txt").read_text() == "mine" and (out / "maps.h5").is_file()
    (out / "maps.journal" / "notes.txt").unlink()
    again = CliRunner().invoke(app, [*command, "-o", str(out), "--overwrite"])  # a run's own outputs: replaced
    assert again.exit_code == 0, again.output
    assert not (out / "maps.journal").exists() and StreamMaps(out / "maps.h5").slots.size == 2
