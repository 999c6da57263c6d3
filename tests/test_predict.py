"""hsiseg.predict and hsiseg.render: tiled inference, batch outputs, resume, sharding, decoding, colours."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from hsiseg import HsisegError
from hsiseg.io import Cube, write_cube
from hsiseg.models.checkpoint import load_model, read_card
from hsiseg.predict import PredictOptions, Predictor, confident_nodes, level_labels, plan_frames, predict_batch
from hsiseg.render import cie_rgb, false_colour, node_colours, rgb, window_rgb
from hsiseg.synthetic.dataset import demo_tree, generate_demo_data
from hsiseg.training import TrainConfig, train
from hsiseg_cli.main import app

FRAME_FILES = {"labels.png", "labels.npy", "unknown.png", "areas.csv", "overlay.png", "panel.png", "done.json"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(model checkpoint, folder of test-surgery cubes) from a 4-step U-Net run on small synthetic scenes."""
    folder = tmp_path_factory.mktemp("demo")
    spec = generate_demo_data(folder / "data", surgeries=3, frames=3, shape=(40, 56), seed=4)
    config = TrainConfig(
        steps=4, validate_every=4, batch_size=4, patch_size=32, model="unet", model_options={"width": 8, "depth": 2}
    )
    train(spec, folder / "run", config)
    return folder / "run" / "checkpoints" / "best.json", folder / "data" / "cubes" / "surgery03"


class Pointwise(nn.Module):
    """A per-pixel network: tiled and whole-image predictions must agree exactly."""

    def __init__(self, bands: int, classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(bands, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_tiled_equals_whole_image_for_a_pointwise_network(trained) -> None:
    model_path, _ = trained
    _, card = load_model(model_path)
    torch.manual_seed(0)
    network = Pointwise(100, 14)
    image = torch.rand(100, 90, 70)
    whole = Predictor(network, card, tile=256, ood_score="max_softmax").logits(image)
    tiled = Predictor(network, card, tile=32, overlap=0.3, batch_size=3, ood_score="max_softmax").logits(image)
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-5)


def test_bands_of_a_per_pixel_network_equal_one_whole_image_pass(monkeypatch) -> None:
    """The default network predicted in row bands (a CPU's small bands, rows not dividing the height) gives the
    probabilities, labels and unknown-tissue score of one pass over the whole image."""
    from hsiseg.models import DEFAULT_MODEL
    from hsiseg.predict import inference
    from hsiseg.predict.untrained import untrained

    bands = 20
    network = untrained(DEFAULT_MODEL, demo_tree(), np.linspace(500, 1000, bands), threshold=-636.0)
    model, card, scores = network.model, network.card, network.scores
    cube = Cube(np.random.default_rng(0).random((61, 40, bands), dtype=np.float32), card.preprocessing.wavelengths)
    monkeypatch.setattr(inference, "CPU_BAND_PIXELS", 300)  # bands of 7 rows: 9 bands, the last of 5 rows
    banded = Predictor(model, card, scores=scores).predict(cube)
    monkeypatch.setattr(inference, "CPU_BAND_PIXELS", 61 * 40)  # one band: the whole image at once
    whole = Predictor(model, card, scores=scores).predict(cube)
    np.testing.assert_allclose(banded.probabilities, whole.probabilities, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(banded.score, whole.score, rtol=1e-5, atol=1e-4)
    assert (banded.labels == whole.labels).all() and (banded.unknown == whole.unknown).all()
    assert 0 < whole.unknown.mean() < 1  # the threshold splits the pixels: the unknown masks are compared


def test_tiled_close_to_whole_for_the_unet(trained) -> None:
    model_path, cubes = trained
    image = torch.rand(100, 80, 96, generator=torch.Generator().manual_seed(0))
    whole = Predictor.from_checkpoint(model_path, tile=512).logits(image).argmax(0)
    tiled = Predictor.from_checkpoint(model_path, tile=48, overlap=0.5).logits(image).argmax(0)
    assert (whole == tiled).float().mean() > 0.9


def test_batch_outputs_resume_and_summary(trained, tmp_path: Path) -> None:
    model_path, cubes = trained
    out = tmp_path / "out"
    options = PredictOptions(level=1, confidence=0.5, save_probabilities=True, animation=True)
    results = predict_batch(model_path, [cubes], out, options)
    import imageio.v3 as imageio

    assert [r.status for r in results] == ["done"] * 3
    for result in results:
        files = {p.name for p in (out / result.frame).iterdir()}
        assert FRAME_FILES | {"labels_level1.png", "panel_level1.png", "confident.png", "probabilities.h5"} <= files
        assert not any(".part" in name for name in files)
        labels = np.load(out / result.frame / "labels.npy")
        assert labels.shape == (40, 56) and labels.min() >= 0 and labels.max() < 14
        import csv

        import h5py

        with (out / result.frame / "areas.csv").open() as handle:
            areas = {row["class"]: row for row in csv.DictReader(handle)}
        assert sum(int(row["pixels"]) for row in areas.values()) == 40 * 56
        with h5py.File(out / result.frame / "probabilities.h5") as handle:
            probabilities = handle["probabilities"][()].astype(np.float64)
        unknown = np.array(imageio.imread(out / result.frame / "unknown.png")) > 0
        leaf = int(np.bincount(labels[~unknown].ravel()).argmax())  # the largest known class
        name = demo_tree().leaves[leaf]
        chosen = (labels == leaf) & ~unknown
        assert int(areas[name]["pixels"]) == chosen.sum()
        assert float(areas[name]["mean_confidence"]) == pytest.approx(probabilities.max(0)[chosen].mean(), abs=2e-3)
    gif = imageio.imread(out / "overview.gif")  # one GIF frame per cube: its panel, with legend and name
    first_panel = imageio.imread(out / results[0].frame / "panel.png")[..., :3]
    assert gif.shape[0] == 3 and gif.shape[1:3] >= first_panel.shape[:2] and gif.shape[2] > 2 * 56
    assert (out / results[0].frame / "panel_confident.png").is_file()
    import av

    with av.open(str(out / "overview.mp4")) as container:  # the same panels as an MP4 for clinicians
        video = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(video) == 3 and video[0].shape[:2] == tuple(v + v % 2 for v in gif.shape[1:3])
    summary = json.loads((out / "summary.json").read_text())
    assert [row["status"] for row in summary] == ["done"] * 3
    assert json.loads((out / "args.json").read_text())["level"] == 1
    first, second, third = (r.frame for r in results)
    assert second == "frame01_SpecCube"
    # an interrupted batch: the second frame never finished writing
    (out / second / "done.json").unlink()
    before = {name: (out / name / "labels.png").stat().st_mtime_ns for name in (first, third)}
    with pytest.raises(HsisegError, match="outputs exist for 3 frames"):
        predict_batch(model_path, [cubes], out)
    again = predict_batch(model_path, [cubes], out, replace(options, resume=True))
    assert [r.status for r in again] == ["skipped", "done", "skipped"]
    assert {name: (out / name / "labels.png").stat().st_mtime_ns for name in before} == before
    assert (out / second / "done.json").is_file()
    summary = json.loads((out / "summary.json").read_text())  # skipped frames keep their figures
    assert [(row["frame"], row["status"]) for row in summary] == [(r.frame, "done") for r in results]
    assert [row["unknown_percent"] for row in summary] == pytest.approx([r.unknown_percent for r in results])
    assert [row["main_class"] for row in summary] == [r.main_class for r in results]


def test_sharding_covers_every_frame_once(tmp_path: Path) -> None:
    for index in range(7):
        write_cube(tmp_path / "in" / f"f{index}.h5", Cube(np.ones((4, 4, 3), np.float32), [1, 2, 3]))
    parts = [plan_frames([tmp_path / "in"], tmp_path / "out", PredictOptions(num_parts=3, part_id=i)) for i in range(3)]
    names = [name for part in parts for name, _ in part]
    assert sorted(names) == [f"f{i}" for i in range(7)] and len(set(names)) == 7
    with pytest.raises(HsisegError, match="inside the input folder"):
        plan_frames([tmp_path / "in"], tmp_path / "in" / "predictions", PredictOptions())
    with pytest.raises(HsisegError, match="--part-id must be in 0..2"):
        plan_frames([tmp_path / "in"], tmp_path / "out", PredictOptions(num_parts=3, part_id=3))


def test_failed_frames_are_reported_and_the_batch_goes_on(trained, tmp_path: Path) -> None:
    model_path, cubes = trained
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a_SpecCube.dat").write_bytes((cubes / "frame00_SpecCube.dat").read_bytes())
    (inputs / "b_SpecCube.dat").write_bytes(b"\x00" * 40)  # unreadable
    swir = Cube(np.ones((8, 8, 50), np.float32), np.linspace(1500, 2500, 50))
    write_cube(inputs / "c.h5", swir)  # bands the model cannot read
    results = {r.frame: r for r in predict_batch(model_path, [inputs], tmp_path / "out")}
    assert results["a_SpecCube"].status == "done"
    assert results["b_SpecCube"].status == "failed" and "header says" in results["b_SpecCube"].error
    assert results["c"].status == "failed" and "cover only 0% of the model's wavelength grid" in results["c"].error
    result = CliRunner().invoke(
        app, ["predict", str(model_path), str(inputs), "-o", str(tmp_path / "cli"), "--tile", "64"]
    )
    assert result.exit_code == 2 and "1 frames predicted, 0 skipped, 2 failed" in result.output


def test_hierarchical_decoding() -> None:
    tree = demo_tree()
    probabilities = np.full((14, 1, 2), 0.1 / 12)
    artery, vein, bone = tree.leaf_index("artery"), tree.leaf_index("vein"), tree.leaf_index("bone")
    probabilities[[artery, vein], 0, 0] = 0.45  # artery versus vein uncertain, vessel certain
    probabilities[:, 0, 1] = 0.01
    probabilities[bone, 0, 1] = 0.87
    decoded = confident_nodes(probabilities, tree, threshold=0.7)
    assert tree.node(int(decoded[0, 0])).name == "vessel" and decoded[0, 1] == bone
    assert tree.node(int(confident_nodes(probabilities, tree, 0.4)[0, 0])).name in ("artery", "vein")
    assert confident_nodes(probabilities, tree, 0.999)[0, 0] == -1
    labels = np.array([[artery, -1]])
    assert (
        level_labels(labels, tree, 1)[0, 0] == tree.index("vascular structures")
        and level_labels(labels, tree, 1)[0, 1] == -1
    )


def test_cie_rendering_of_known_spectra() -> None:
    nm = np.arange(380, 781, 5.0)
    grey = cie_rgb(np.full((1, 1, len(nm)), 0.5), nm)[0, 0]
    assert grey.max() - grey.min() <= 2 and 180 < grey[0] < 195  # neutral, sRGB(0.5) = 188
    white = cie_rgb(np.ones((1, 1, len(nm))), nm)[0, 0]
    assert (white >= 253).all()
    narrow = np.zeros((1, 1, len(nm)))
    narrow[..., (nm >= 615) & (nm <= 625)] = 1
    red = cie_rgb(narrow, nm)[0, 0]
    assert red[0] > 100 and red[1] < 10 and red[2] < 10
    tivita = np.linspace(500, 1000, 100)
    cube = np.random.default_rng(0).random((4, 4, 100))
    np.testing.assert_array_equal(rgb(cube, tivita), window_rgb(cube, tivita))  # falls back below 380-500 nm
    assert false_colour(cube, tivita, (800, 650, 550)).shape == (4, 4, 3)
    with pytest.raises(HsisegError, match="no band near 400 nm"):
        false_colour(cube, tivita, (800, 650, 400))


def test_palette_families_and_file_colours() -> None:
    import colorsys

    tree = demo_tree()
    colours = node_colours(tree)
    hue = lambda name: colorsys.rgb_to_hsv(*colours[tree.index(name)])[0]  # noqa: E731
    assert abs(hue("artery") - hue("vein")) < 1e-6  # siblings share the family hue
    assert abs(hue("artery") - hue("grey matter")) > 0.05
    assert np.allclose(colours[tree.index("vascular structures")], [0xC0 / 255, 0x39 / 255, 0x2B / 255])  # file wins
    assert len({tuple(np.round(c, 3)) for c in colours[: tree.num_leaves]}) == tree.num_leaves  # all distinct


def test_several_workers_write_the_same_frame_files(trained, tmp_path: Path) -> None:
    model_path, cubes = trained
    one = predict_batch(model_path, [cubes], tmp_path / "one")
    three = predict_batch(model_path, [cubes], tmp_path / "three", PredictOptions(workers=3))
    assert [r.frame for r in one] == [r.frame for r in three] and {r.status for r in one + three} == {"done"}
    for result in one:
        for name in ("labels.npy", "labels.png", "unknown.png", "areas.csv", "overlay.png"):
            assert (tmp_path / "one" / result.frame / name).read_bytes() == (
                tmp_path / "three" / result.frame / name).read_bytes(), name


def test_indexed_png_palette_matches(trained, tmp_path: Path) -> None:
    from PIL import Image

    model_path, cubes = trained
    predict_batch(model_path, [cubes / "frame00_SpecCube.dat"], tmp_path / "o")
    image = Image.open(tmp_path / "o" / "frame00_SpecCube" / "labels.png")
    assert image.mode == "P"
    labels = np.load(tmp_path / "o" / "frame00_SpecCube" / "labels.npy")
    unknown = np.array(Image.open(tmp_path / "o" / "frame00_SpecCube" / "unknown.png")) > 0
    values = np.array(image)
    np.testing.assert_array_equal(values, np.where(unknown, 0, labels + 1))
    palette = np.array(image.getpalette()[: 3 * 15]).reshape(15, 3)
    np.testing.assert_array_equal(palette[1:], np.round(node_colours(demo_tree())[:14] * 255))


def test_render_cli(trained, tmp_path: Path) -> None:
    _, cubes = trained
    cube = str(cubes / "frame00_SpecCube.dat")
    assert CliRunner().invoke(app, ["render", cube, "-o", str(tmp_path / "rgb.png")]).exit_code == 0
    result = CliRunner().invoke(app, ["render", cube, "-o", str(tmp_path / "fc.png"), "--bands", "800,650,550"])
    assert result.exit_code == 0 and (tmp_path / "fc.png").stat().st_size > 100
    bad = CliRunner().invoke(app, ["render", cube, "-o", str(tmp_path / "x.png"), "--bands", "800,650"])
    assert bad.exit_code == 2 and "expected three wavelengths" in bad.output


def test_demo_command_end_to_end(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", str(tmp_path / "demo"), "--steps", "20"])
    assert result.exit_code == 0, result.output
    assert "summary:" in result.output
    panels = list((tmp_path / "demo" / "predictions").glob("*/panel.png"))
    assert len(panels) == 3 and (tmp_path / "demo" / "run" / "curves.png").is_file()
    assert len(list((tmp_path / "demo" / "predictions").glob("*/truth_vs_prediction.png"))) == 3
    # the printed dense-truth score equals one counted here from the saved label maps
    import re

    from hsiseg.dataset.spec import DataSpec

    spec = DataSpec.from_file(tmp_path / "demo" / "data" / "demo.yaml")
    by_cube = {str(spec.resolve(spec.samples[i].cube)): i for i in spec.split("test")}
    summary = json.loads((tmp_path / "demo" / "predictions" / "summary.json").read_text())
    correct = total = 0
    for row in summary:
        labels = np.load(tmp_path / "demo" / "predictions" / row["frame"] / "labels.npy")
        truth = spec.read_truth(by_cube[row["source"]])
        correct, total = correct + int((labels == truth).sum()), total + truth.size
    printed = re.search(r"held-out surgery, dense truth \((\d+) pixels\): leaf accuracy ([0-9.]+)", result.output)
    assert printed and int(printed.group(1)) == total
    assert float(printed.group(2)) == pytest.approx(correct / total, abs=5e-4)
    again = CliRunner().invoke(app, ["demo", str(tmp_path / "demo"), "--steps", "20"])
    assert again.exit_code == 2 and "is not empty" in again.output
    _overwrite_deletes_only_the_demos_files(tmp_path / "demo")


def _overwrite_deletes_only_the_demos_files(demo: Path) -> None:
    """--overwrite checks its options before touching disk and removes only what the demo wrote."""
    before = sorted(path for path in demo.rglob("*") if path.is_file())
    (demo / "data" / "patient07.txt").write_text("mine")
    (demo / "run" / "notes.txt").write_text("mine too")
    bad_option = CliRunner().invoke(app, ["demo", str(demo), "--overwrite", "--steps", "0"])
    assert bad_option.exit_code == 2 and "steps must be > 0" in bad_option.output
    foreign = CliRunner().invoke(app, ["demo", str(demo), "--overwrite", "--steps", "20"])
    assert foreign.exit_code == 2 and "patient07.txt and 1 more: not written by hsiseg" in foreign.output
    assert (demo / "data" / "patient07.txt").read_text() == "mine" and (demo / "run" / "notes.txt").is_file()
    assert all(path.is_file() for path in before)  # nothing of the demo's was deleted either
    (demo / "data" / "patient07.txt").unlink()
    (demo / "run" / "notes.txt").unlink()
    changed = demo / "run" / "curves.png"
    changed.write_bytes(changed.read_bytes() + b"edited")  # a demo file the user changed is theirs now
    edited = CliRunner().invoke(app, ["demo", str(demo), "--overwrite", "--steps", "20"])
    assert edited.exit_code == 2 and "curves.png: not written by hsiseg" in edited.output
    changed.write_bytes(changed.read_bytes()[: -len(b"edited")])
    redone = CliRunner().invoke(app, ["demo", str(demo), "--overwrite", "--steps", "20"])
    assert redone.exit_code == 0, redone.output


def test_predict_inputs_from_globs_and_spec_splits(trained, tmp_path: Path) -> None:
    model_path, cubes = trained
    runner = CliRunner()
    pattern = str(cubes / "frame0[01]_SpecCube.dat")
    result = runner.invoke(app, ["predict", str(model_path), pattern, "-o", str(tmp_path / "glob")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "glob").iterdir() if p.is_dir()) == [
        "frame00_SpecCube",
        "frame01_SpecCube",
    ]
    spec = cubes.parents[1] / "demo.yaml"
    result = runner.invoke(
        app, ["predict", str(model_path), "--spec", str(spec), "--split", "test", "-o", str(tmp_path / "spec")]
    )
    assert result.exit_code == 0, result.output
    assert "3 frames predicted" in result.output


def test_band_and_ratio_maps(trained, tmp_path: Path) -> None:
    _, cubes = trained
    cube = str(cubes / "frame00_SpecCube.dat")
    runner = CliRunner()
    assert runner.invoke(app, ["render", cube, "-o", str(tmp_path / "b.png"), "--band", "760"]).exit_code == 0
    assert runner.invoke(app, ["render", cube, "-o", str(tmp_path / "r.png"), "--ratio", "560/760"]).exit_code == 0
    assert (tmp_path / "r.png").stat().st_size > 1000
    bad = runner.invoke(app, ["render", cube, "-o", str(tmp_path / "x.png"), "--band", "300"])
    assert bad.exit_code == 2 and "no band near 300 nm" in bad.output


def test_tta_contours_and_thresholds_from_the_cli(trained, tmp_path: Path) -> None:
    model_path, cubes = trained
    cube = str(cubes / "frame00_SpecCube.dat")
    runner = CliRunner()
    base = ["predict", str(model_path), cube, "--tile", "32", "--overlap", "0.5"]
    result = runner.invoke(app, [*base, "-o", str(tmp_path / "a"), "--tta", "--contours", "--ood-threshold", "1.1"])
    assert result.exit_code == 0, result.output
    import imageio.v3 as imageio

    unknown = imageio.imread(tmp_path / "a" / "frame00_SpecCube" / "unknown.png")
    assert (unknown > 0).all()  # no probability exceeds 1.1: every pixel is unknown
    result = runner.invoke(app, [*base, "-o", str(tmp_path / "b"), "--ood-score", "energy", "--ood-threshold", "-1e9"])
    assert result.exit_code == 0, result.output
    unknown = imageio.imread(tmp_path / "b" / "frame00_SpecCube" / "unknown.png")
    assert not (unknown > 0).any()
    bad = runner.invoke(app, [*base, "-o", str(tmp_path / "c"), "--ood-score", "entropy"])
    assert bad.exit_code == 2 and "unknown OOD score 'entropy'" in bad.output


def test_invalid_pixels_are_never_tissue_nor_unknown(trained, tmp_path: Path) -> None:
    """Non-finite, all-zero and saturated spectra get the invalid mask in every output; an all-zero or all-NaN
    frame is reported as mostly invalid."""
    import csv

    import imageio.v3 as imageio

    from hsiseg.io import read_cube
    from hsiseg.labels import INVALID

    model_path, cubes = trained
    cube = read_cube(sorted(cubes.glob("*.dat"))[0])
    data = cube.data.copy()
    data[:5] = 0.0  # all-zero rows
    data[5:8, :10, 3] = np.nan  # one band missing
    data[8:10] = 7.0  # saturated (meta below)
    frames = tmp_path / "frames"
    write_cube(frames / "mixed_SpecCube.dat", Cube(data, cube.wavelengths))
    write_cube(frames / "zeros_SpecCube.dat", Cube(np.zeros_like(data), cube.wavelengths))
    write_cube(frames / "nans_SpecCube.dat", Cube(np.full_like(data, np.nan), cube.wavelengths))
    expected = np.zeros(data.shape[:2], dtype=bool)
    expected[:5], expected[5:8, :10] = True, True
    predictor = Predictor.from_checkpoint(model_path, ood_threshold=-1e9)
    direct = predictor.predict(Cube(data, cube.wavelengths, {"saturation": 6.5}))
    saturated = np.zeros_like(expected)
    saturated[8:10] = True
    np.testing.assert_array_equal(direct.invalid, expected | saturated)
    assert not direct.unknown.any() and (direct.labels_with_unknown()[direct.invalid] == INVALID).all()
    results = predict_batch(model_path, [frames], tmp_path / "out")
    by_frame = {r.frame: r for r in results}
    assert [r.status for r in results] == ["done"] * 3
    mixed = tmp_path / "out" / "mixed_SpecCube"
    invalid = imageio.imread(mixed / "invalid.png") > 0
    np.testing.assert_array_equal(invalid, expected)  # the reader repaired the NaNs: still invalid
    assert not (imageio.imread(mixed / "unknown.png") > 0)[invalid].any()
    assert (imageio.imread(mixed / "labels.png")[invalid] == 0).all()
    with (mixed / "areas.csv").open() as handle:
        areas = {row["class"]: int(row["pixels"]) for row in csv.DictReader(handle)}
    assert areas["invalid"] == expected.sum()
    assert by_frame["mixed_SpecCube"].invalid_percent > 0
    assert [w.split(": ", 1)[1] for w in by_frame["mixed_SpecCube"].warnings] == ["30 NaN/Inf values set to 0"]
    for name in ("zeros_SpecCube", "nans_SpecCube"):
        result = by_frame[name]
        assert result.invalid_percent == 100.0 and result.main_class == "" and result.unknown_percent == 0.0
        assert result.warnings[-1].startswith("mostly invalid: 100%")
    summary = {row["frame"]: row for row in json.loads((tmp_path / "out" / "summary.json").read_text())}
    assert summary["zeros_SpecCube"]["warnings"] == ["mostly invalid: 100% of pixels have no usable spectrum"]


def test_uncalibrated_scores_are_refused(trained) -> None:
    model_path, _ = trained
    model, card = load_model(model_path)
    card = card.model_copy(update={"ood": card.ood.model_copy(update={"scores": {}, "default": None})})
    with pytest.raises(HsisegError, match="OOD score 'energy' is not calibrated for this model"):
        Predictor(model, card, ood_score="energy")
    with pytest.raises(HsisegError, match="OOD score 'knn' is not calibrated"):
        Predictor(model, card, ood_score="knn", ood_threshold=-1.0)  # a feature score needs its fit
    assert Predictor(model, card, ood_score="energy", ood_threshold=2.0).ood_threshold == 2.0
    assert Predictor(model, card).ood_score is None  # nothing calibrated: no pixel is unknown
    calibrated = Predictor.from_checkpoint(model_path, ood_score="energy")
    assert calibrated.ood_threshold == read_card(model_path).ood.scores["energy"].threshold


def test_a_new_per_frame_output_is_one_registered_function(trained, tmp_path: Path) -> None:
    from hsiseg.predict.frame_outputs import FRAME_WRITERS, frame_writer

    model_path, cubes = trained

    @frame_writer("unknown-share", wanted=lambda options: options.opacity < 0.4)
    def write_share(output) -> None:
        (output.folder / "unknown_share.txt").write_text(f"{output.prediction.unknown.mean():.4f}")

    try:
        predict_batch(model_path, [cubes], tmp_path / "off")
        assert not list((tmp_path / "off").rglob("unknown_share.txt"))  # not asked for by these options
        results = predict_batch(model_path, [cubes], tmp_path / "on", PredictOptions(opacity=0.3))
        shares = [float((tmp_path / "on" / r.frame / "unknown_share.txt").read_text()) for r in results]
        assert shares == pytest.approx([r.unknown_percent / 100 for r in results], abs=1e-4)
    finally:
        del FRAME_WRITERS["unknown-share"]
