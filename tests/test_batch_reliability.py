"""Batch prediction on real folders: --continue never mixes models or options, the summary comes from every
frame's done.json (parts, continued runs, runs sharing a folder), warnings are recorded, any exception fails
one frame only, Ctrl-C keeps what is finished, output problems are one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hsiseg import HsisegError
from hsiseg.io import Cube, read_cube, write_cube
from hsiseg.models.checkpoint import read_card
from hsiseg.predict import PredictOptions, Predictor, predict_batch
from hsiseg.predict.claims import try_claim
from hsiseg.synthetic.dataset import generate_demo_data
from hsiseg.training import TrainConfig, train
from hsiseg_cli.main import app


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(model checkpoint, folder of 3 small cubes)."""
    folder = tmp_path_factory.mktemp("batch")
    spec = generate_demo_data(folder / "data", surgeries=3, frames=3, shape=(24, 32), seed=5)
    config = TrainConfig(steps=2, validate_every=2, batch_size=2, patch_size=16, model="unet",
                         model_options={"width": 8, "depth": 2}, refit=False)  # fmt: skip
    train(spec, folder / "run", config)
    return folder / "run" / "checkpoints" / "best.json", folder / "data" / "cubes" / "surgery03"


def summary(folder: Path) -> dict[str, dict]:
    return {row["frame"]: row for row in json.loads((folder / "summary.json").read_text())}


def another_model(model_path: Path, folder: Path) -> Path:
    """The same weights with a different (valid) card: another model as far as outputs go."""
    folder.mkdir()
    (folder / "best.safetensors").write_bytes(model_path.with_suffix(".safetensors").read_bytes())
    card = json.loads(model_path.read_text())
    card["round"] += 1
    (folder / "best.json").write_text(json.dumps(card))
    return folder / "best.json"


def test_continue_refuses_another_model_or_other_options(trained, tmp_path: Path) -> None:
    model_path, cubes = trained
    out = tmp_path / "out"
    first = predict_batch(model_path, [cubes], out)
    with pytest.raises(HsisegError, match=r"3 finished frames were predicted with other options \(opacity\)"):
        predict_batch(model_path, [cubes], out, PredictOptions(resume=True, opacity=0.8))
    assert json.loads((out / "args.json").read_text())["opacity"] == 0.5  # args.json still tells the truth
    other = another_model(model_path, tmp_path / "other")
    result = CliRunner().invoke(app, ["predict", str(other), str(cubes), "-o", str(out), "--continue"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "3 finished frames were predicted with another model" in result.output
    assert "pass --overwrite with --continue to redo them" in result.output
    (out / first[1].frame / "done.json").unlink()  # one frame unfinished, two from the first model
    again = predict_batch(other, [cubes], out, PredictOptions(resume=True, overwrite=True))
    assert [r.status for r in again] == ["done"] * 3  # the mismatched frames are redone, not kept
    records = [json.loads((out / r.frame / "done.json").read_text()) for r in first]
    assert first[0].model not in {record["model"] for record in records}
    assert {record["model"] for record in records} == {json.loads((out / "args.json").read_text())["model_sha256"]}
    same = predict_batch(other, [cubes], out, PredictOptions(resume=True))
    assert [r.status for r in same] == ["skipped"] * 3


def test_summary_lists_every_part_and_warnings(trained, tmp_path: Path) -> None:
    model_path, cubes = trained
    out = tmp_path / "out"
    cube = read_cube(sorted(cubes.glob("*.dat"))[0])
    inputs = tmp_path / "in"
    for name in ("a", "b", "c", "d"):
        write_cube(inputs / f"{name}.h5", cube)
    shifted = Cube(cube.data, cube.wavelengths - 100.0)  # 400-900 nm on a 500-1000 nm model: extrapolated
    write_cube(inputs / "e.h5", shifted)
    for part in (0, 1):
        predict_batch(model_path, [inputs], out, PredictOptions(num_parts=2, part_id=part))
    rows = summary(out)
    assert sorted(rows) == ["a", "b", "c", "d", "e"] and {r["status"] for r in rows.values()} == {"done"}
    assert rows["a"]["unknown_percent"] == pytest.approx(rows["b"]["unknown_percent"])  # real figures, not 0
    assert rows["a"]["warnings"] == []
    assert len(rows["e"]["warnings"]) == 1 and "lie outside the measured 400-900 nm" in rows["e"]["warnings"][0]
    assert "lie outside" in json.loads((out / "e" / "done.json").read_text())["warnings"][0]
    assert "lie outside the measured" in (out / "summary.csv").read_text()
    result = CliRunner().invoke(app, ["predict", str(model_path), str(inputs / "e.h5"), "-o", str(tmp_path / "c")])
    assert result.exit_code == 0 and "warning: e: resampling: 20 target bands" in " ".join(result.output.split())


def test_a_claimed_frame_is_left_to_the_run_holding_it(trained, tmp_path: Path) -> None:
    model_path, cubes = trained
    out = tmp_path / "out"
    frames = sorted(path.stem for path in cubes.glob("*.dat"))
    claim = try_claim(out / frames[1] / ".lock")  # another run is predicting this frame
    results = predict_batch(model_path, [cubes], out)
    assert [r.status for r in results] == ["done", "busy", "done"]
    assert sorted(summary(out)) == [frames[0], frames[2]] and not (out / frames[1] / "done.json").exists()
    claim.release()
    assert [r.status for r in predict_batch(model_path, [cubes], out, PredictOptions(resume=True))] == [
        "skipped", "done", "skipped"]  # fmt: skip
    assert sorted(summary(out)) == frames


RUN = """
import json, sys
from hsiseg.predict import PredictOptions, predict_batch
results = predict_batch(sys.argv[1], [sys.argv[2]], sys.argv[3], PredictOptions(resume=True))
print(json.dumps([r.status for r in results]))
"""


def test_two_runs_at_once_compute_each_frame_once(trained, tmp_path: Path) -> None:
    model_path, cubes = trained
    inputs = tmp_path / "in"
    for index in range(6):
        (inputs / f"f{index}_SpecCube.dat").parent.mkdir(exist_ok=True)
        (inputs / f"f{index}_SpecCube.dat").write_bytes(sorted(cubes.glob("*.dat"))[index % 3].read_bytes())
    command = [sys.executable, "-c", RUN, str(model_path), str(inputs), str(tmp_path / "out")]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    statuses = [json.loads(run.communicate(timeout=300)[0].splitlines()[-1]) for run in runs]
    assert all(run.returncode == 0 for run in runs)
    computed = [s for run in statuses for s in run if s == "done"]
    assert len(computed) == 6  # each frame once, whichever run got it; the other skipped it or left it busy
    assert sorted(summary(tmp_path / "out")) == [f"f{i}_SpecCube" for i in range(6)]


def test_any_exception_fails_one_frame_only(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_path, cubes = trained
    import hsiseg.predict.sources as sources  # the pipeline's cube source reads with it

    reader = sources.read_cube

    def failing_reader(path, **options):
        if "frame00" in str(path):
            raise MemoryError("Unable to allocate 149. GiB for an array with shape (20000, 20000, 100)")
        return reader(path, **options)

    predict = Predictor.predict

    def failing_network(self, cube, prepared=None):
        if "frame01" in cube.meta.get("source", ""):
            raise RuntimeError("Calculated padded input size per channel: (0 x 34).\nKernel size: (3 x 3).")
        return predict(self, cube, prepared)

    monkeypatch.setattr(sources, "read_cube", failing_reader)
    monkeypatch.setattr(Predictor, "predict", failing_network)
    results = predict_batch(model_path, [cubes], tmp_path / "out")
    assert [r.status for r in results] == ["failed", "failed", "done"]
    assert results[0].error == "MemoryError: Unable to allocate 149. GiB for an array with shape (20000, 20000, 100)"
    assert results[1].error == "RuntimeError: Calculated padded input size per channel: (0 x 34)."
    rows = summary(tmp_path / "out")
    assert [rows[r.frame]["status"] for r in results] == ["failed", "failed", "done"]
    assert json.loads((tmp_path / "out" / results[0].frame / "failed.json").read_text())["error"].startswith("Memory")
    monkeypatch.undo()
    again = predict_batch(model_path, [cubes], tmp_path / "out", PredictOptions(resume=True))
    assert [r.status for r in again] == ["done", "done", "skipped"]  # failed frames are retried
    assert {row["status"] for row in summary(tmp_path / "out").values()} == {"done"}


def test_ctrl_c_keeps_finished_frames_and_says_how_to_go_on(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_path, cubes = trained
    predict = Predictor.predict

    def interrupted_at_the_second_frame(self, cube, prepared=None):
        if "frame01" in cube.meta.get("source", ""):
            raise KeyboardInterrupt
        return predict(self, cube, prepared)

    monkeypatch.setattr(Predictor, "predict", interrupted_at_the_second_frame)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(model_path), str(cubes), "-o", str(out)])
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert "interrupted; finished frames are kept" in result.output and "--continue" in result.output
    rows = summary(out)
    assert list(rows) == ["frame00_SpecCube"] and rows["frame00_SpecCube"]["status"] == "done"
    assert not list(out.rglob("*.part"))


def test_output_problems_are_one_line(trained, tmp_path: Path) -> None:
    model_path, cubes = trained
    existing_file = tmp_path / "taken"
    existing_file.write_text("keep me")
    result = CliRunner().invoke(app, ["predict", str(model_path), str(cubes), "-o", str(existing_file)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "is a file, not a folder; choose a folder" in result.output and existing_file.read_text() == "keep me"
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = CliRunner().invoke(app, ["predict", str(model_path), str(cubes), "-o", str(locked / "out")])
    finally:
        locked.chmod(0o755)
    if result.exit_code != 0:  # (root may write anywhere)
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "Permission denied; choose a folder you may write to" in result.output


def full_disk(monkeypatch: pytest.MonkeyPatch, after: int = 0) -> None:
    """Every rename of a finished temporary file after the first ``after`` fails as on a full disk."""
    import errno
    import os

    import hsiseg.io.atomic as atomic

    calls = {"n": 0}
    rename = os.replace

    def replace(source, target):
        calls["n"] += 1
        if calls["n"] > after and str(source).endswith(".part"):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return rename(source, target)

    monkeypatch.setattr(atomic.os, "replace", replace)


def test_a_full_disk_is_one_line_and_loses_nothing(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_path, cubes = trained
    out = tmp_path / "out"
    first, _, last = predict_batch(model_path, [cubes], out)
    (out / last.frame / "done.json").unlink()  # the last frame is to be done again
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    full_disk(monkeypatch, after=1)  # args.json is written, then the disk is full
    result = CliRunner().invoke(app, ["predict", str(model_path), str(cubes), "-o", str(out), "--continue"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    written = out / last.frame / "labels.png"
    assert f"failed: {last.frame}: writing {out / last.frame}: {written}: No space left on device" in result.output
    assert "summary.csv: No space left on device; free some space" in result.output
    assert not list(out.rglob("*.part"))  # temporary files removed
    before.pop(out / "args.json")
    assert {path: path.read_bytes() for path in before} == before  # what was written stays intact
    rendered = tmp_path / "rgb.png"
    result = CliRunner().invoke(app, ["render", str(sorted(cubes.glob("*.dat"))[0]), "-o", str(rendered)])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert f"hsiseg: error: {rendered}: No space left on device; free some space" in result.output
    assert not rendered.exists() and not list(tmp_path.glob("*.part"))


def test_reader_options_of_the_spec_reach_training_and_prediction(tmp_path: Path) -> None:
    import yaml

    spec_path = generate_demo_data(tmp_path / "data", surgeries=3, frames=1, shape=(24, 32), seed=5)
    spec = yaml.safe_load(spec_path.read_text())
    (spec_path.parent / "bands.txt").write_text(" ".join(f"{v:g}" for v in np.linspace(500, 1000, 100)))
    spec["reader"] = {**spec.get("reader", {}), "scale": 2.0, "wavelengths": "@bands.txt"}
    scaled = spec_path.with_name("scaled.yaml")
    scaled.write_text(yaml.safe_dump(spec))
    config = TrainConfig(steps=2, validate_every=2, batch_size=2, patch_size=16, model="unet",
                         model_options={"width": 8, "depth": 2}, refit=False)  # fmt: skip
    train(scaled, tmp_path / "run", config)
    model_path = tmp_path / "run" / "checkpoints" / "best.json"
    assert read_card(model_path).input_scaling.scale == 2.0  # recorded in the model card
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(model_path), "--spec", str(scaled), "--split", "test", "-o",
                                      str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    used = json.loads((out / "args.json").read_text())["reader_options"]
    assert used == {"scale": 2.0, "wavelengths": f"@{spec_path.parent / 'bands.txt'}"}  # resolved against root
    (frame,) = [row for row in summary(out).values()]
    cube = read_cube(frame["source"], scale=2.0)
    direct = Predictor.from_checkpoint(model_path).predict(cube)
    np.testing.assert_array_equal(np.load(out / frame["frame"] / "labels.npy"), direct.labels)
    spec["reader"]["wavelengths"] = "@../bands.txt"
    scaled.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(app, ["predict", str(model_path), "--spec", str(scaled), "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "reader.wavelengths '../bands.txt' leads outside the spec's root" in result.output


def test_review_findings_are_one_line(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Found by a review run as a user would: Ctrl-C while loading, object .npy cubes, read-only targets,
    figures of failed frames, render warnings as plain lines."""
    import errno
    import types

    import hsiseg_cli.entry as entry

    class Loading(types.ModuleType):
        def __getattr__(self, name):
            raise KeyboardInterrupt  # Ctrl-C while the command line's modules load

    monkeypatch.setitem(sys.modules, "hsiseg_cli.main", Loading("hsiseg_cli.main"))
    with pytest.raises(SystemExit) as stopped:
        entry.main()
    assert (
        stopped.value.code == 130
        and capsys.readouterr().err == "hsiseg: interrupted while starting; nothing was done\n"
    )
    monkeypatch.undo()

    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(HsisegError, match="holds Python objects .* never unpickles; save the cube as a numeric"):
        read_cube(tmp_path / "objects.npy", wavelengths=[1.0])

    import hsiseg.io.atomic as atomic

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".x.png.abc.part"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError) as denied, atomic.atomic_path(tmp_path / "x.png"):
        pass
    assert denied.value.filename == str(tmp_path / "x.png")  # the file asked for, not a hidden temporary one
    monkeypatch.undo()

    model_path, cubes = trained
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "bad_SpecCube.dat").write_bytes(b"\x00" * 40)
    (result,) = predict_batch(model_path, [inputs], tmp_path / "out")
    assert result.status == "failed" and result.unknown_percent is None and result.invalid_percent is None
    assert "unknown_percent" in (tmp_path / "out" / "summary.csv").read_text()

    counts = Cube(np.random.default_rng(0).uniform(0, 4095, (8, 8, 31)).astype(np.float32), np.arange(400, 710, 10))
    write_cube(tmp_path / "counts.h5", counts)
    rendered = CliRunner().invoke(app, ["render", str(tmp_path / "counts.h5"), "-o", str(tmp_path / "c.png")])
    assert rendered.exit_code == 0
    assert "hsiseg: warning: RGB rendering: the cube's values" in rendered.output and ".py:" not in rendered.output


def test_resume_refuses_changed_settings_and_records_a_longer_budget(tmp_path: Path) -> None:
    spec = generate_demo_data(tmp_path / "data", surgeries=3, frames=1, shape=(24, 32), seed=5)
    base = ["train", str(spec), "-o", str(tmp_path / "run"), "--model", "pixel", "--width", "8",
            "--pixels-per-step", "32", "--val-every", "2", "--quiet"]  # fmt: skip
    assert CliRunner().invoke(app, [*base, "--steps", "2"]).exit_code == 0
    changed = CliRunner().invoke(app, [*base, "--resume", "--lr", "0.01"])
    assert changed.exit_code == 2 and "a resumed run continues with its own settings" in changed.output
    assert "learning_rate (0.003 in the run, 0.01 asked)" in changed.output
    longer = CliRunner().invoke(app, [*base, "--resume", "--steps", "4"])
    assert longer.exit_code == 0, longer.output
    assert json.loads((tmp_path / "run" / "args.json").read_text())["config"]["steps"] == 4


def test_run_files_of_someone_else_are_never_replaced(trained, tmp_path: Path) -> None:
    model, cubes = trained
    frames = sorted(cubes.glob("*_SpecCube.dat"))[:1]
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.csv").write_text("my table")
    (out / "args.json").write_text("{}")  # not one of hsiseg predict's
    for overwrite in (False, True):
        with pytest.raises(HsisegError, match="out/args.json exists and .* holds no prediction run of hsiseg"):
            predict_batch(model, frames, out, PredictOptions(overwrite=overwrite))
    assert (out / "summary.csv").read_text() == "my table" and (out / "args.json").read_text() == "{}"
    (out / "args.json").unlink()
    (out / "summary.csv").unlink()
    assert [r.status for r in predict_batch(model, frames, out)] == ["done"]
    again = predict_batch(model, frames, out, PredictOptions(overwrite=True))  # its own run files: replaced
    assert [r.status for r in again] == ["done"] and "model_sha256" in json.loads((out / "args.json").read_text())
