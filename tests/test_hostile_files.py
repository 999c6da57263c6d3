"""Hostile and careless files: YAML alias bombs and self-references, non-finite numbers, a white reference
that gives no signal, a reference changed between a run and its --continue."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from hsiseg import HsisegError
from hsiseg.io.camera import CameraDescription
from hsiseg.io.ownership import MANIFEST, clear_owned, record_owned
from hsiseg.io.recording import MosaicVideo, open_recording
from hsiseg.predict import RunOptions
from hsiseg.structured_files import MAX_EXPANDED_NODES, load_structured
from hsiseg.synthetic.dataset import demo_tree
from hsiseg.synthetic.recording import write_demo_recording
from hsiseg.tree import LabelTree
from hsiseg_cli.main import app

runner = CliRunner()


def alias_bomb(levels: int, key: str = "wavelengths") -> str:
    """``levels`` aliases of nine aliases each: 9 ** (levels + 1) values from a few lines."""
    lines = ["anchors:", "  a0: &a0 [400.0, 410.0, 420.0, 430.0, 440.0, 450.0, 460.0, 470.0, 480.0]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\n{key}: *a{levels}\n"


def test_an_alias_bomb_is_refused_before_it_is_built(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(8))  # 9^9 = 387 million values
    with pytest.raises(HsisegError, match=r"bomb.yaml: line \d+: YAML aliases here expand to over 1,000,000"):
        load_structured(path, "data spec", "the spec")
    assert MAX_EXPANDED_NODES > 9**6  # a few aliases of a list stay readable:
    path.write_text(alias_bomb(1))
    data, _ = load_structured(path, "data spec", "the spec")
    assert len(data["wavelengths"]) == 9 and data["wavelengths"][0] == data["anchors"]["a0"]


@pytest.mark.parametrize("command", ["check", "tree"])
def test_alias_bombs_and_self_references_through_the_cli(tmp_path: Path, command: str) -> None:
    bomb, itself = tmp_path / "bomb.yaml", tmp_path / "itself.yaml"
    bomb.write_text(alias_bomb(8, "children"))
    itself.write_text("name: root\nchildren: &c [a, *c]\n")
    for path, message in ((bomb, "expand to over"), (itself, "a YAML alias refers to a node that contains it")):
        result = runner.invoke(app, [command, str(path)])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_nested_wavelengths_are_one_line_not_a_value_error(tmp_path: Path) -> None:
    from hsiseg.io import read_cube, write_cube
    from hsiseg.io.cube import Cube

    cube = tmp_path / "c.hdr"
    write_cube(cube, Cube(np.ones((2, 2, 3), np.float32), np.array([500.0, 600.0, 700.0])))
    with pytest.raises(HsisegError, match="wavelengths must be numbers in nm"):
        read_cube(cube, wavelengths=[[500.0, 600.0, 700.0]] * 9)


@pytest.mark.parametrize(("text", "where"), [
    ("name: root\nchildren: [a, {name: b, weight: .nan}]\n", "line 2 (children.1.weight)"),
    ('{"name": "root", "children": ["a", {"name": "b", "weight": NaN}]}', "children.1.weight"),
])  # fmt: skip
def test_non_finite_numbers_are_refused_with_the_field(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / ("tree.json" if text.startswith("{") else "tree.yaml")
    path.write_text(text)
    with pytest.raises(HsisegError, match=rf"{path.name}: {re.escape(where)}: nan is not a finite number"):
        LabelTree.from_file(path)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("rec")
    return write_demo_recording(folder, demo_tree(), frames=2, shape=(24, 32))


def edited_camera(camera: Path, folder: Path, **changes) -> Path:
    """A copy of the camera file (and its references) with top-level fields changed."""
    folder.mkdir(exist_ok=True)
    for name in ("white.b2nd", "dark.b2nd"):
        shutil.copyfile(camera.parent / name, folder / name)
    description = yaml.safe_load(camera.read_text())
    description.update(changes)
    (folder / "camera.yaml").write_text(yaml.safe_dump(description))
    return folder / "camera.yaml"


def test_camera_files_with_nan_are_refused_once_against_the_file(recording, tmp_path: Path) -> None:
    _, camera = recording
    with pytest.raises(HsisegError, match=r"camera.yaml: line \d+ \(saturation\): nan is not a finite number"):
        CameraDescription.from_file(edited_camera(camera, tmp_path / "a", saturation=float("nan")))
    wavelengths = yaml.safe_load(camera.read_text())["wavelengths"]
    wavelengths[3] = float("nan")
    with pytest.raises(HsisegError, match=r"camera.yaml: line \d+ \(wavelengths.3\): nan is not a finite"):
        CameraDescription.from_file(edited_camera(camera, tmp_path / "b", wavelengths=wavelengths))


def test_a_white_reference_equal_to_the_dark_one_is_refused(recording, tmp_path: Path) -> None:
    path, camera = recording
    copied = edited_camera(camera, tmp_path / "cam")
    shutil.copyfile(camera.parent / "dark.b2nd", tmp_path / "cam" / "white.b2nd")
    with pytest.raises(HsisegError, match=r"white.b2nd: the white reference is brighter than the dark one on only"):
        MosaicVideo(open_recording(path), CameraDescription.from_file(copied))


def test_continue_after_the_white_reference_changed_is_refused(recording, tmp_path: Path) -> None:
    import blosc2

    from hsiseg.predict.stream import predict_recording
    from hsiseg.synthetic.dataset import generate_demo_data
    from hsiseg.training import TrainConfig, train

    path, camera = recording
    spec = generate_demo_data(tmp_path / "data", surgeries=3, frames=1, shape=(24, 32), seed=1)
    config = TrainConfig(steps=2, validate_every=2, model="pixel", refit=False, device="cpu")
    train(spec, tmp_path / "run", config)
    model = tmp_path / "run" / "checkpoints" / "best.json"
    copied = edited_camera(camera, tmp_path / "cam")
    predict_recording(model, MosaicVideo(open_recording(path), CameraDescription.from_file(copied)), tmp_path / "o")
    white = blosc2.open(str(tmp_path / "cam" / "white.b2nd"))[()]
    blosc2.asarray(np.clip(white.astype(np.int32) - 5, 0, None).astype(white.dtype),
                   urlpath=str(tmp_path / "cam" / "white.b2nd"), mode="w")  # fmt: skip
    changed = MosaicVideo(open_recording(path), CameraDescription.from_file(copied))
    with pytest.raises(HsisegError, match="differs in: references"):
        predict_recording(model, changed, tmp_path / "o", RunOptions(resume=True))


def test_clear_owned_removes_what_was_recorded_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.txt").write_text("x")
    (tmp_path / "top.txt").write_text("t")
    record_owned(tmp_path)
    (tmp_path / "a" / "mine.txt").write_text("m")
    with pytest.raises(HsisegError, match="mine.txt: not written by hsiseg"):
        clear_owned(tmp_path, "--overwrite")
    assert (tmp_path / "a" / "b" / "x.txt").is_file() and (tmp_path / MANIFEST).is_file()
    (tmp_path / "a" / "mine.txt").unlink()
    clear_owned(tmp_path, "--overwrite")
    assert list(tmp_path.iterdir()) == []


def test_convert_into_a_folder_below_its_input_twice_converts_the_input_once(tmp_path: Path) -> None:
    from hsiseg.io import write_cube
    from hsiseg.io.cube import Cube

    for name in ("a.hdr", "b.hdr"):
        write_cube(tmp_path / name, Cube(np.ones((2, 3, 4), np.float32), np.array([500.0, 600, 700, 800])))
    for _ in range(2):
        result = runner.invoke(app, ["convert", str(tmp_path), "-o", str(tmp_path / "cache")])
        assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "cache").rglob("*.h5")) == [
        "cache/a.h5", "cache/b.h5"
    ]  # fmt: skip
    assert not (tmp_path / "cache" / "cache").exists()


def test_mostly_invalid_frames_are_reported_for_recordings_too(tmp_path: Path) -> None:
    from hsiseg.ood.trust import invalid_warnings

    invalid = np.ones((4, 4), bool)
    invalid[0, 0] = False
    assert invalid_warnings(invalid) == ["mostly invalid: 94% of pixels have no usable spectrum"]
    assert invalid_warnings(~invalid) == []


def test_a_forged_manifest_cannot_delete_outside_the_folder(tmp_path: Path) -> None:
    folder, victims = tmp_path / "demo", tmp_path / "victims"
    (folder / "sub").mkdir(parents=True)
    (victims / "linked").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("demo's")
    for name in ("outside.txt", "absolute.txt", "linked/inside.txt"):
        (victims / name).write_text("the user's")
    (folder / "link").symlink_to(victims / "linked", target_is_directory=True)
    record_owned(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert set(manifest["files"]) == {"sub/a.txt", "link"}  # the link itself, not what it points to
    manifest["files"].update({"../victims/outside.txt": 10, str(victims / "absolute.txt"): 10,
                              "link/inside.txt": 10})  # fmt: skip
    (folder / MANIFEST).write_text(json.dumps(manifest))
    clear_owned(folder, "--overwrite")
    assert all((victims / name).read_text() == "the user's" for name in ("outside.txt", "absolute.txt",
                                                                       "linked/inside.txt"))  # fmt: skip
    assert not (folder / "sub").exists() and not (folder / "link").exists()


def test_a_spec_whose_label_tree_is_itself(tmp_path: Path) -> None:
    from hsiseg.synthetic.dataset import generate_demo_data

    spec = generate_demo_data(tmp_path / "data", surgeries=2, frames=1, shape=(8, 8))
    spec.write_text(spec.read_text().replace("label_tree: label_tree.yaml", f"label_tree: {spec.name}"))
    for command in ("check", "tree"):
        result = runner.invoke(app, [command, str(spec)])
        assert result.exit_code == 2 and "label_tree points back to" in result.output, result.output


@pytest.mark.parametrize(("name", "text"), [
    ("huge.yaml", "name: root\nchildren: [a, {name: b, weight: " + "9" * 5000 + "}]\n"),
    ("huge.json", '{"name": "root", "children": ["a", {"name": "b", "weight": ' + "9" * 5000 + "}]}"),
    ("deep.json", "[" * 10_000 + "]" * 10_000),
])  # fmt: skip
def test_huge_numbers_and_deep_nesting_are_one_line(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    result = runner.invoke(app, ["tree", str(tmp_path / name)])
    assert result.exit_code == 2 and result.output.startswith("hsiseg: error:") and "Traceback" not in result.output


def test_render_never_overwrites_its_cube(tmp_path: Path) -> None:
    from hsiseg.io import write_cube
    from hsiseg.io.cube import Cube

    cube = tmp_path / "c.hdr"
    write_cube(cube, Cube(np.ones((2, 3, 4), np.float32), np.array([500.0, 600, 700, 800])))
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    for target in ("c.img", "c.hdr"):
        result = runner.invoke(app, ["render", str(cube), "-o", str(tmp_path / target)])
        assert result.exit_code == 2 and "render writes a PNG" in result.output
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_a_huge_class_balance_is_refused_and_large_ones_stay_finite() -> None:
    from hsiseg.dataset.torch_datasets import class_balanced_weights
    from hsiseg.training import TrainConfig

    with pytest.raises(HsisegError, match=r"class_balance must be in \[0, 10\], got 1e\+308"):
        TrainConfig(class_balance=1e308).check()
    weights = class_balanced_weights(np.array([0] * 1_000_000 + [1] * 3), 10.0)
    assert np.isfinite(weights).all() and weights.max() == 1.0 and weights.sum() > 0
    np.testing.assert_allclose(class_balanced_weights(np.array([0, 0, 1]), 1.0) / 0.5, [1, 1, 2])
