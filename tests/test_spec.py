"""hsiseg.dataset.spec, .splits and hsiseg check: validation messages, subject-grouped folds, htc fold files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from hsiseg import HsisegError
from hsiseg.dataset.spec import DataSpec
from hsiseg.dataset.spec_check import check_spec
from hsiseg.dataset.splits import group_folds, read_htc_folds
from hsiseg.synthetic.dataset import generate_demo_data
from hsiseg_cli.main import app
from tests.conftest import REPO


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    generate_demo_data(folder, surgeries=4, frames=2, shape=(40, 48), seed=1)
    return folder


def edited_spec(folder: Path, tmp_path: Path, edit) -> Path:
    spec = yaml.safe_load((folder / "demo.yaml").read_text())
    edit(spec)
    spec["root"] = str(folder)
    spec["label_tree"] = str(folder / "label_tree.yaml")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# --- splits -------------------------------------------------------------------------------------------------


def test_group_folds_never_split_a_subject() -> None:
    subjects = {f"s{i}": f"patient{i % 5}" for i in range(20)}
    folds = group_folds(subjects, folds=3, seed=4, test=["s4", "s9", "s14", "s19"])  # patient4 is the test set
    validated = []
    for fold in folds:
        train_subjects = {subjects[s] for s in fold["train"]}
        val_subjects = {subjects[s] for s in fold["val"]}
        assert not train_subjects & val_subjects and fold["test"] == ["s4", "s9", "s14", "s19"]
        assert len(fold["train"]) + len(fold["val"]) == 16
        validated.extend(val_subjects)
    assert sorted(validated) == ["patient0", "patient1", "patient2", "patient3"]  # each subject validated once
    assert group_folds(subjects, 3, 4, ["s4", "s9", "s14", "s19"]) == folds  # seeded
    with pytest.raises(HsisegError, match="have samples in test and outside it"):
        group_folds(subjects, 2, 0, test=["s4"])
    with pytest.raises(HsisegError, match="'folds' must be between 2 and the number of subjects"):
        group_folds(subjects, 9, 0)


def test_htc_fold_file(tmp_path: Path) -> None:
    content = [
        {
            "fold_name": "fold_P041",
            "train_semantic": {"image_names": ["a", "b"]},
            "val_semantic_unknown": {"image_names": ["c"]},
            "test": {"image_names": ["d"]},
        }
    ]
    (tmp_path / "folds.json").write_text(json.dumps(content))
    assert read_htc_folds(tmp_path / "folds.json") == [{"train": ["a", "b"], "val": ["c"], "test": ["d"]}]
    (tmp_path / "bad.json").write_text(json.dumps([{"fold_name": "x", "extra": {"image_names": []}}]))
    with pytest.raises(HsisegError, match="unexpected entry 'extra'"):
        read_htc_folds(tmp_path / "bad.json")


# --- specs --------------------------------------------------------------------------------------------------


def test_demo_spec_loads_and_checks(demo_folder: Path) -> None:
    spec = DataSpec.from_file(demo_folder / "demo.yaml")
    assert spec.tree.num_leaves == 14 and spec.num_folds == 3
    splits = spec.splits(0)
    assert splits["test"] == ["surgery04_frame00", "surgery04_frame01"]
    cube = spec.read_cube("surgery02_frame01")  # an ENVI cube
    assert cube.shape == (40, 48, 100)
    annotation = spec.read_annotation("surgery01_frame00")
    truth = spec.read_truth("surgery01_frame00")
    labelled = annotation != -100
    assert labelled.any() and labelled.mean() < 0.2
    np.testing.assert_array_equal(annotation[labelled], truth[labelled])  # scribbles agree with the truth
    assert (truth != -100).all()
    report = check_spec(spec)
    assert report.problems == []
    assert report.splits["train"]["subjects"] == 2


def test_shipped_demo_spec_matches_the_generator() -> None:
    from hsiseg.synthetic.dataset import demo_tree, spec_dict, spec_text

    text = spec_text(spec_dict(demo_tree(), 4, 3, 3, "trees/neurosurgery.yaml", "../demo-data"))
    assert (REPO / "data_specs" / "demo.yaml").read_text() == text


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["samples"][1].pop("cube"), r"line \d+ \(samples.1.cube\): Field required"),
        (lambda s: s.update(colour="red"), r"line \d+ \(colour\): Extra inputs are not permitted"),
        (lambda s: s["splits"].update(train=["x"]), "give exactly one of"),
        (lambda s: s["samples"][1].update(id=s["samples"][0]["id"]), "duplicate sample ids"),
        (lambda s: s["preprocessing"].update(binning=0), r"\(preprocessing\): binning"),
        (
            lambda s: s.update(splits={"train": ["surgery01_frame00"], "val": ["surgery01_frame01"]}),
            "subject 'surgery01' is in both 'train' and 'val'",
        ),
        (lambda s: s.update(splits={"train": ["nobody"], "val": []}), r"name unknown samples \['nobody'\]"),
    ],
)
def test_spec_errors(demo_folder: Path, tmp_path: Path, edit, message: str) -> None:
    with pytest.raises(HsisegError, match=message):
        DataSpec.from_file(edited_spec(demo_folder, tmp_path, edit))


def test_error_line_numbers_point_at_the_field(tmp_path: Path) -> None:
    text = "name: x\nlabel_tree: t.yaml\nsamples:\n  - id: a\n    subject: p\n    cub: c.npy\nsplits: {folds: 2}\n"
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(HsisegError) as error:
        DataSpec.from_file(tmp_path / "s.yaml")
    assert "line 6 (samples.0.cub): Extra inputs are not permitted" in str(error.value)
    assert "line 4 (samples.0.cube): Field required" in str(error.value)


def test_check_collects_every_problem(demo_folder: Path, tmp_path: Path) -> None:
    def edit(spec):
        spec["samples"][0]["cube"] = "cubes/missing_SpecCube.dat"
        spec["annotations"]["labels"].pop(8)  # grey matter's value becomes unknown

    path = edited_spec(demo_folder, tmp_path, edit)
    report = check_spec(DataSpec.from_file(path))
    assert any("missing_SpecCube.dat: file not found" in p for p in report.problems)
    assert any("label values [8] are not in the spec's label table" in p for p in report.problems)
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    assert "problems" in result.output and "file not found" in result.output


def test_check_cli_ok(demo_folder: Path) -> None:
    result = CliRunner().invoke(app, ["check", str(demo_folder / "demo.yaml")])
    assert result.exit_code == 0, result.output
    assert "demo.yaml: ok" in result.output and "annotated pixels per class" in result.output


def test_check_warns_about_classes_without_validation_pixels(demo_folder: Path, tmp_path: Path) -> None:
    import imageio.v3 as imageio

    from hsiseg.dataset.spec_check import validation_gaps

    spec = DataSpec.from_file(demo_folder / "demo.yaml")
    report = check_spec(spec)
    trained = {spec.tree.node(c).name for i in spec.split("train") for c in report.samples[i].strokes}
    validated = {spec.tree.node(c).name for i in spec.split("val") for c in report.samples[i].strokes}
    expected = sorted(trained - validated)
    gaps = validation_gaps(spec, spec.splits(0), report.samples, 0)
    assert sorted(g.split("'")[1] for g in gaps) == expected
    assert all("no annotated pixel in the validation split" in g for g in gaps)
    # one scene for training and validation: a class with a single stroke cannot give one away
    one = demo_folder / "scribbles" / "surgery01_frame00.png"
    label = np.zeros(imageio.imread(one).shape, dtype=np.uint8)
    label[2, 2:9] = 1  # one stroke of the first class
    label[10, 2:9] = 2  # two strokes of the second
    label[20, 2:9] = 2
    imageio.imwrite(tmp_path / "one.png", label)

    def edit(data):
        data["samples"] = [dict(data["samples"][0], annotations=[str(tmp_path / "one.png")], truth=None)]
        sample_id = data["samples"][0]["id"]
        data["splits"] = {"train": [sample_id], "val": [sample_id], "same_scene_evaluation": True}

    path = edited_spec(demo_folder, tmp_path, edit)
    result = CliRunner().invoke(app, ["check", str(path)])
    first = DataSpec.from_file(path).tree.node(0).name
    assert result.exit_code == 0, result.output
    assert f"warning: class '{first}' has no held-out validation pixel" in result.output
    assert result.output.count("no held-out validation pixel") == 1
