"""Broken prediction folders for ``hsiseg evaluate`` and impossible loss options for ``hsiseg train``: one line
naming the file or option, exit code 2, no traceback; loss options are refused before the spec is read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from hsiseg import HsisegError
from hsiseg.annotations.writers import write_label_image
from hsiseg.labels import INVALID, UNKNOWN
from hsiseg.losses import LOSSES, build_loss, check_loss
from hsiseg.training import TrainConfig
from hsiseg_cli.main import app

runner = CliRunner()
TREE = {"name": "tissue", "children": ["artery", "vein"]}  # leaf codes 0 (artery), 1 (vein)
SHAPE = (6, 8, 5)


def write_predictions(folder: Path) -> tuple[Path, Path]:
    """A two-sample spec with dense truth and a prediction folder as ``hsiseg predict`` leaves it (summary.json,
    one ``labels.npy`` per frame); returns (spec, prediction folder)."""
    samples, rows = [], []
    for number in range(2):
        sample_id = f"s{number}"
        (folder / "cubes").mkdir(parents=True, exist_ok=True)
        np.save(folder / "cubes" / f"{sample_id}.npy", np.full(SHAPE, 0.5, dtype=np.float32))
        truth = np.zeros(SHAPE[:2], dtype=np.int32)
        truth[:, 4:] = 1
        write_label_image(folder / "truth" / f"{sample_id}.png", truth)
        samples.append({"id": sample_id, "subject": f"p{number}", "cube": f"cubes/{sample_id}.npy",
                        "annotations": [f"truth/{sample_id}.png"], "truth": f"truth/{sample_id}.png"})  # fmt: skip
        frame = folder / "predictions" / f"frame{number:02d}"
        frame.mkdir(parents=True)
        np.save(frame / "labels.npy", truth.astype(np.int16))
        rows.append({"frame": frame.name, "source": str(folder / "cubes" / f"{sample_id}.npy"), "status": "done"})
    (folder / "predictions" / "summary.json").write_text(json.dumps(rows))
    spec = {
        "name": "small",
        "label_tree": TREE,
        "reader": {"wavelengths": [500.0, 550.0, 600.0, 650.0, 700.0]},
        "annotations": {"format": "label-image", "ignore_value": 0, "labels": {1: "artery", 2: "vein"}},
        "samples": samples,
        "splits": {"train": ["s0"], "val": [], "test": ["s1"]},
    }
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder / "spec.yaml", folder / "predictions"


def evaluate(spec: Path, predictions: Path) -> tuple[int, list[str]]:
    result = runner.invoke(app, ["evaluate", str(predictions), "-s", str(spec), "-o", str(spec.parent / "report")])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output.strip().splitlines()


def assert_one_error_line(spec: Path, predictions: Path, *fragments: str) -> None:
    code, lines = evaluate(spec, predictions)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("hsiseg: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_the_synthetic_prediction_folder_evaluates(tmp_path: Path) -> None:
    spec, predictions = write_predictions(tmp_path)
    labels = np.load(predictions / "frame00" / "labels.npy")
    labels[0, 0], labels[0, 1] = UNKNOWN, INVALID  # the sentinels are labels too
    np.save(predictions / "frame00" / "labels.npy", labels)
    code, lines = evaluate(spec, predictions)
    assert code == 0, lines
    assert (tmp_path / "report" / "report.md").is_file()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"junk\n", "not a readable label map"),
        (b"", "not a readable label map"),
        (b"\x93NUMPY\x01\x00", "not a readable label map"),  # a header cut short
    ],
)
def test_an_unreadable_label_map_names_the_file(tmp_path: Path, content: bytes, fragment: str) -> None:
    spec, predictions = write_predictions(tmp_path)
    (predictions / "frame01" / "labels.npy").write_bytes(content)
    assert_one_error_line(spec, predictions, str(Path("frame01") / "labels.npy"), fragment, "predict the frame again")


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.zeros((6, 8), dtype=np.float32), "expected 2-D integer codes"),
        (np.zeros((6, 8, 2), dtype=np.int16), "expected 2-D integer codes"),
        (np.array([{"a": 1}], dtype=object), "not a readable label map"),  # pickled: never loaded
    ],
)
def test_a_label_map_of_another_kind_names_the_file(tmp_path: Path, array: np.ndarray, fragment: str) -> None:
    spec, predictions = write_predictions(tmp_path)
    np.save(predictions / "frame00" / "labels.npy", array, allow_pickle=True)
    assert_one_error_line(spec, predictions, str(Path("frame00") / "labels.npy"), fragment)


@pytest.mark.parametrize("value", [999, 2, -3, -100])
def test_a_label_outside_the_tree_names_the_file_and_value(tmp_path: Path, value: int) -> None:
    spec, predictions = write_predictions(tmp_path)
    labels = np.zeros(SHAPE[:2], dtype=np.int64)
    labels[2, 3] = value
    np.save(predictions / "frame00" / "labels.npy", labels)
    assert_one_error_line(spec, predictions, str(Path("frame00") / "labels.npy"), f"label {value} is not a code")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{", "not a readable prediction summary"),
        (b"\xff\xfe[]", "not a readable prediction summary"),  # not UTF-8
        (b'{"frame": "frame00"}', "expected a list of frames"),
        (b'["frame00"]', "entry 0 is not a frame"),
        (b'[{"frame": "frame00", "source": 3, "status": "done"}]', "entry 0 is not a frame"),
        (b"[" * 100_000 + b"]" * 100_000, "not a readable prediction summary"),  # nested too deeply
    ],
)
def test_a_broken_summary_names_it(tmp_path: Path, content: bytes, fragment: str) -> None:
    spec, predictions = write_predictions(tmp_path)
    (predictions / "summary.json").write_bytes(content)
    assert_one_error_line(spec, predictions, "summary.json", fragment, "rerun hsiseg predict")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--loss", "tree-ce", "--level-weights", "a,b,c"], "--level-weights must be comma-separated numbers"),
        (["--loss", "tree-ce", "--level-weights", ""], "--level-weights must be comma-separated numbers"),
        (["--loss", "tree-ce", "--level-weights", "1,nan,1"], "'level_weights' must be a list of non-negative"),
        (["--loss", "tree-ce", "--top-level-weight", "inf"], "'top_level_weight' must be a finite number"),
        (["--loss", "dice-ce", "--loss-option", "smooth=nan"], "'smooth' must be a finite number >= 0, got 'nan'"),
        (["--loss", "dice-ce", "--loss-option", "smooth=.nan"], "'smooth' must be a finite number >= 0, got nan"),
        (["--loss", "dice-ce", "--loss-option", "ce_weight=[1]"], "'ce_weight' must be a finite number"),
        (["--loss", "dice-ce", "--loss-option", "batch_dice=maybe"], "'batch_dice' must be true or false"),
        (["--loss", "tree-wasserstein", "--alpha", "nan"], "'alpha' must be a finite number >= 0, got nan"),
        (["--loss", "tree-wasserstein", "--beta", "inf"], "'beta' must be a finite number >= 0, got inf"),
        (["--loss", "tree-wasserstein", "--alpha", "-1"], "'alpha' must be >= 0, got -1"),
        (["--loss", "tree-gwdl", "--loss-option", "class_weights=[1, x]"], "'class_weights' must be a list"),
        (["--loss", "tree-gwdl", "--loss-option", "smooth_dr=-.inf"], "'smooth_dr' must be a finite number"),
    ],
)
def test_train_refuses_bad_loss_options_before_reading_the_spec(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    result = runner.invoke(app, ["train", str(tmp_path / "no-spec.yaml"), "-o", str(tmp_path / "run"), *flags])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_the_library_checks_loss_option_values_before_data(unbalanced_tree) -> None:
    with pytest.raises(HsisegError, match="loss option 'smooth' must be a finite number >= 0, got 'nan'"):
        TrainConfig(loss="dice-ce", loss_options={"smooth": "nan"}, device="cpu").check()
    with pytest.raises(HsisegError, match="loss option 'beta' must be a finite number >= 0, got nan"):
        check_loss("tree-wasserstein", {"beta": float("nan")})
    with pytest.raises(HsisegError, match="loss option 'alpha' must be a finite number >= 0, got inf"):
        build_loss("tree-wasserstein", unbalanced_tree, alpha=float("inf"))
    check_loss("tree-ce", {"top-level-weight": None, "level_weights": np.array([1.0, 0.5, 0.5])})  # off, numpy
    check_loss("tree-gwdl", {"batch_dice": np.bool_(True), "ce_weight": np.float32(0.5), "smooth_nr": 0})


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_option_says_what_it_must_be(name: str) -> None:
    assert set(LOSSES.lookup(name).option_kinds) == set(LOSSES.options(name))
