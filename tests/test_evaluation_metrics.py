"""Calibration (ECE) and boundary metrics (NSD, ASD): against a per-pixel loop, hand computations and MONAI; and
``hsiseg evaluate``'s calibration and boundary outputs end to end."""

from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from typer.testing import CliRunner

from hsiseg.evaluation.boundary import border, boundary_scores, label_borders, nsd_asd
from hsiseg.evaluation.calibration_metrics import (
    bin_index,
    calibration_bins,
    ece_from_probabilities,
    expected_calibration_error,
    top_label,
)
from hsiseg.evaluation.scores import boundary_class_means, boundary_image_means
from hsiseg_cli.main import app

torch = pytest.importorskip("torch")
monai_metrics = pytest.importorskip("monai.metrics")


# --- calibration -------------------------------------------------------------------------------------------------


def loop_ece(confidence: list[float], correct: list[bool], bins: int) -> float:
    """ECE pixel by pixel: bin b holds (b / B, (b + 1) / B]; a confidence of 0 goes to the first bin."""
    total = 0.0
    for b in range(bins):
        lower, upper = b / bins, (b + 1) / bins
        members = [i for i, c in enumerate(confidence) if lower < c <= upper or (b == 0 and c == 0)]
        if members:
            accuracy = sum(correct[i] for i in members) / len(members)
            mean_confidence = sum(confidence[i] for i in members) / len(members)
            total += len(members) / len(confidence) * abs(accuracy - mean_confidence)
    return total


# any probability, and the bin edges themselves (k / 15, k / 5), where the right-closed convention matters
confidences = st.one_of(
    st.floats(0, 1), st.integers(0, 15).map(lambda k: k / 15), st.integers(0, 5).map(lambda k: k / 5)
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(confidences, st.booleans()), min_size=1, max_size=60), st.sampled_from([1, 5, 10, 15]))
def test_ece_equals_a_per_pixel_loop(pixels: list[tuple[float, bool]], bins: int) -> None:
    confidence, correct = [p[0] for p in pixels], [p[1] for p in pixels]
    assert expected_calibration_error(np.array(confidence), np.array(correct), bins) == pytest.approx(
        loop_ece(confidence, correct, bins), abs=1e-12
    )


def test_ece_hand_cases() -> None:
    # perfectly calibrated: 80% right at confidence 0.8, 40% right at 0.4
    confidence = np.array([0.8] * 10 + [0.4] * 5)
    correct = np.array([True] * 8 + [False] * 2 + [True] * 2 + [False] * 3)
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0, abs=1e-12)
    # overconfident: 0.9 claimed, half right
    assert expected_calibration_error(np.full(4, 0.9), np.array([True, False, True, False])) == pytest.approx(0.4)
    # two bins, each 0.05 off, weights 0.4 and 0.6
    confidence = np.array([0.95] * 4 + [0.55] * 6)
    correct = np.array([True] * 4 + [True] * 3 + [False] * 3)
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.4 * 0.05 + 0.6 * 0.05)
    # right-closed bins: 0.2 = 3/15 is the top of bin 2, not the bottom of bin 3; 1.0 is in the last bin
    assert bin_index(np.array([0.2, 0.2000001, 1.0, 0.0])).tolist() == [2, 3, 14, 0]
    assert np.isnan(expected_calibration_error(np.array([]), np.array([], dtype=bool)))
    with pytest.raises(ValueError, match="probabilities"):
        calibration_bins(np.array([1.5]), np.array([True]))


def test_ece_from_probabilities_and_pooled_bins() -> None:
    probabilities = np.array(  # (C=3, N=4), class axis first
        [[0.7, 0.1, 0.5, 0.34], [0.2, 0.6, 0.5, 0.33], [0.1, 0.3, 0.0, 0.33]]
    )
    confidence, predicted = top_label(probabilities)
    assert predicted.tolist() == [0, 1, 0, 0]  # ties go to the first class
    truth = np.array([0, 2, 1, 0])  # right, wrong, wrong (tie broken to 0), right
    # bins: 0.7 -> (0.667, 0.733], 0.6 -> (0.533, 0.6], 0.5 -> (0.467, 0.533], 0.34 -> (0.333, 0.4]
    expected = (abs(1 - 0.7) + abs(0 - 0.6) + abs(0 - 0.5) + abs(1 - 0.34)) / 4
    assert ece_from_probabilities(probabilities, truth) == pytest.approx(expected)
    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(70)
    right_a, right_b = rng.random(50) < a, rng.random(70) < b
    pooled = calibration_bins(a, right_a) + calibration_bins(b, right_b)
    assert pooled.ece == pytest.approx(expected_calibration_error(np.r_[a, b], np.r_[right_a, right_b]))


# --- boundary metrics ----------------------------------------------------------------------------------------------


def blobs(rng: np.random.Generator, shape: tuple[int, int], classes: int, sigma: float) -> np.ndarray:
    """(H, W) label map of smooth random blobs: the argmax of ``classes`` smoothed noise fields."""
    noise = ndimage.gaussian_filter(rng.standard_normal((classes, *shape)), (0, sigma, sigma))
    return noise.argmax(0)


def monai_scores(prediction: np.ndarray, truth: np.ndarray, classes: int, tolerance: float) -> tuple[np.ndarray, ...]:
    """MONAI's per-class NSD and symmetric ASD of two (H, W) label maps with values 0 .. classes - 1."""

    def one_hot(labels: np.ndarray) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.from_numpy(labels[None].astype(np.int64)), classes).permute(0, 3, 1, 2)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the ground truth of class k is all 0": the cases under test
        nsd = monai_metrics.compute_surface_dice(
            one_hot(prediction), one_hot(truth), [tolerance] * classes, include_background=True
        )
        asd = monai_metrics.compute_average_surface_distance(
            one_hot(prediction), one_hot(truth), include_background=True, symmetric=True
        )
    return nsd[0].numpy().astype(np.float64), asd[0].numpy().astype(np.float64)


def test_border_is_monais_mask_edges() -> None:
    from monai.metrics.utils import get_mask_edges

    rng = np.random.default_rng(1)
    labels = blobs(rng, (30, 40), 4, 3)
    edges = label_borders(labels)
    for code in range(4):
        mask = labels == code
        expected, _ = get_mask_edges(mask, mask, crop=False)
        np.testing.assert_array_equal(border(mask), expected)
        np.testing.assert_array_equal(mask & edges, expected)  # the one-pass version for all classes
    square = np.zeros((6, 6), dtype=bool)
    square[1:5, 1:5] = True
    assert border(square).sum() == 12  # a 4 x 4 square: its 12-pixel ring; the 2 x 2 inside is not border
    assert border(np.ones((3, 4), dtype=bool)).sum() == 10  # touching the image edge: the edge is border


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tolerance", [0.0, 1.0, 1.5, 2.0, 3.0])
def test_nsd_and_asd_match_monai_on_random_blobs(seed: int, tolerance: float) -> None:
    rng = np.random.default_rng(seed)
    classes = 6
    truth = blobs(rng, (48, 64), 5, 4)  # class 5 is in neither map: NaN
    if seed % 2:
        prediction = blobs(rng, (48, 64), 5, 4)  # unrelated blobs
    else:
        prediction = np.roll(truth, (seed + 1, -seed), axis=(0, 1))  # shifted truth with speckle
        speckle = rng.random(truth.shape) < 0.02
        prediction[speckle] = rng.integers(0, 5, speckle.sum())
    prediction[prediction == 4] = 3  # class 4 only in the truth: NSD 0, ASD inf
    nsd, asd = boundary_scores(prediction, truth, range(classes), tolerance)
    expected_nsd, expected_asd = monai_scores(prediction, truth, classes, tolerance)
    np.testing.assert_allclose(nsd, expected_nsd, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(asd, expected_asd, rtol=1e-5)
    assert np.isnan(nsd[5]) and np.isnan(asd[5]) and nsd[4] == 0 and asd[4] == np.inf
    assert 0 < np.nanmax(nsd[:4]) <= 1 and np.all(asd[:4] >= 0)


def test_region_matches_monai_with_a_dummy_class_outside() -> None:
    """Unscored pixels count as no class in both maps: MONAI with a dummy class there (the htc framework's way)."""
    rng = np.random.default_rng(7)
    truth, prediction = blobs(rng, (40, 50), 4, 3), blobs(rng, (40, 50), 4, 3)
    region = np.ones(truth.shape, dtype=bool)
    region[10:20, 5:30] = False
    region[:, 45:] = False
    nsd, asd = boundary_scores(prediction, truth, range(4), 2.0, region)
    dummy = 4
    expected_nsd, expected_asd = monai_scores(
        np.where(region, prediction, dummy), np.where(region, truth, dummy), 5, 2.0
    )
    np.testing.assert_allclose(nsd, expected_nsd[:4], rtol=1e-6)
    np.testing.assert_allclose(asd, expected_asd[:4], rtol=1e-5)
    same_inside = np.where(region, truth, rng.integers(0, 4, truth.shape))
    nsd, asd = boundary_scores(same_inside, truth, range(4), 0.0, region)
    np.testing.assert_array_equal(nsd, 1.0)  # whatever is predicted outside the region does not count
    np.testing.assert_array_equal(asd, 0.0)


def test_boundary_hand_cases() -> None:
    square = np.zeros((40, 40), dtype=bool)
    square[10:20, 10:20] = True
    assert nsd_asd(square, square, 0.0) == (1.0, 0.0)
    # shifted 3 pixels to the right; the 36-pixel rings, from A to B (B to A is the mirror image):
    # top and bottom rows: 7 pixels on B's rows (0), 3 before them (3, 2, 1); left column (8 pixels): 3 each;
    # right column x = 19, y = 11..18: B's top/bottom row pixel above/below, or B's right column 3 away:
    # 1, 2, 3, 3, 3, 3, 2, 1. Sum 2 * 6 + 24 + 18 = 54 per direction.
    shifted = np.roll(square, 3, axis=1)
    nsd, asd = nsd_asd(shifted, square, 2.0)
    assert asd == pytest.approx(2 * 54 / 72)
    assert nsd == pytest.approx(2 * (2 * (7 + 2) + 0 + 4) / 72)  # within 2: rows 9 + 9, right column 4
    assert nsd_asd(shifted, square, 0.0)[0] == pytest.approx(2 * 14 / 72)
    assert nsd_asd(shifted, square, 3.0)[0] == 1.0
    # one pixel against one pixel 3 down and 4 across: Euclidean distance 5 both ways
    a, b = np.zeros((10, 10), dtype=bool), np.zeros((10, 10), dtype=bool)
    a[1, 1], b[4, 5] = True, True
    assert nsd_asd(a, b, 4.99) == (0.0, 5.0) and nsd_asd(a, b, 5.0) == (1.0, 5.0)
    empty = np.zeros((10, 10), dtype=bool)
    assert nsd_asd(a, empty) == (0.0, float("inf")) and nsd_asd(empty, a) == (0.0, float("inf"))
    assert all(np.isnan(nsd_asd(empty, empty)))
    with pytest.raises(ValueError, match="tolerance"):
        nsd_asd(a, b, -1.0)


def test_boundary_averaging_rules() -> None:
    nsd = np.array([[1.0, np.nan, 0.0], [0.0, 0.5, np.nan]])  # (images, classes)
    asd = np.array([[0.0, np.nan, np.inf], [np.inf, 2.0, np.nan]])
    means = boundary_class_means(nsd, asd)
    np.testing.assert_allclose(means["nsd"], [0.5, 0.5, 0.0])  # NaN images skipped, the 0 of a miss counted
    np.testing.assert_allclose(means["asd"], [0.0, 2.0, np.nan])  # finite values only
    assert means["asd_inf"].tolist() == [1, 0, 1] and means["images"].tolist() == [2, 1, 1]
    # one image: classes 0 and 2 in its truth; class 2 missed (inf) is counted, not averaged
    image = boundary_image_means(np.array([0.8, 0.3, 0.0]), np.array([1.5, 4.0, np.inf]), np.array([1, 0, 1]))
    assert image == (pytest.approx(0.4), pytest.approx(1.5), 1)


# --- hsiseg evaluate end to end ---------------------------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_evaluate_reports_calibration_and_boundaries(tmp_path: Path) -> None:
    import h5py

    from hsiseg.dataset.spec import DataSpec
    from hsiseg.evaluation.metrics import to_level
    from hsiseg.evaluation.report import _truth_at
    from hsiseg.synthetic.dataset import generate_demo_data
    from hsiseg.training import TrainConfig, final_checkpoint, train

    spec_path = generate_demo_data(tmp_path / "data", surgeries=3, frames=2, shape=(40, 56), seed=5)
    train(spec_path, tmp_path / "run", TrainConfig(steps=4, validate_every=2, model="pixel",
                                                   model_options={"width": 8}, pixels_per_step=64))  # fmt: skip
    spec, tree = DataSpec.from_file(spec_path), DataSpec.from_file(spec_path).tree
    runner = CliRunner()
    out, report = tmp_path / "predictions", tmp_path / "report"
    model = str(final_checkpoint(tmp_path / "run"))
    predicted = runner.invoke(
        app, ["predict", model, "--spec", str(spec_path), "--split", "test", "-o", str(out), "--probabilities"]
    )
    assert predicted.exit_code == 0, predicted.output
    arguments = ["evaluate", str(out), "-s", str(spec_path), "-o", str(report), "--nsd-tolerance", "1.5"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    summary = json.loads((report / "summary.json").read_text())

    # calibration: the printed ECE is the per-pixel loop's over every frame's probabilities and leaf truth
    ece_line = re.search(r"^calibration: ECE ([0-9.]+) over (\d+) pixels", result.output, re.M)
    assert ece_line, result.output
    frames = json.loads((out / "summary.json").read_text())
    by_cube = {spec.resolve(s.cube).resolve(): sample_id for sample_id, s in spec.samples.items()}
    confidence, correct, images = [], [], []
    for row in frames:
        labels = np.load(out / row["frame"] / "labels.npy").astype(np.int64)
        truth = spec.read_truth(by_cube[Path(row["source"]).resolve()], labels.shape)
        with h5py.File(out / row["frame"] / "probabilities.h5") as handle:
            top = handle["probabilities"][()].max(0).astype(np.float64)
        leaf = (truth >= 0) & (truth < tree.num_leaves)
        confidence += top[leaf].tolist()
        correct += (labels[leaf] == truth[leaf]).tolist()
        images.append((labels, truth))
    expected_ece = loop_ece(confidence, correct, 15)
    assert summary["calibration"]["ece"] == pytest.approx(expected_ece, abs=1e-6)
    assert float(ece_line.group(1)) == pytest.approx(expected_ece, abs=1e-4) and 0 <= expected_ece <= 1
    assert int(ece_line.group(2)) == len(confidence)
    bins = read_csv(report / "calibration_bins.csv")
    assert len(bins) == 15 and sum(int(b["pixels"]) for b in bins) == len(confidence)
    assert (report / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (report / "report.md").read_text()
    assert "## Calibration" in markdown and "![reliability diagram](reliability.png)" in markdown

    # boundaries: one line per level, in range; the per-class CSV equals MONAI per image, averaged over images
    for depth in range(1, tree.depth + 1):
        line = re.search(
            rf"^level {depth} boundaries \(2 images\): mean NSD \(1.5 px\) ([0-9.]+), mean ASD ([0-9.]+) px",
            result.output,
            re.M,
        )
        assert line, result.output
        assert 0 <= float(line.group(1)) <= 1 and float(line.group(2)) >= 0
        codes = [int(c) for c in tree.level_codes(depth)]
        per_image = []
        for labels, truth in images:
            position = np.full(tree.num_nodes, -1)
            position[codes] = np.arange(len(codes))
            usable = _truth_at(truth, tree, depth)
            assert (usable >= 0).all()  # dense truth: every pixel scored
            per_image.append(
                monai_scores(
                    position[to_level(labels, tree, depth)], position[to_level(usable, tree, depth)], len(codes), 1.5
                )
            )
        nsd = np.stack([p[0] for p in per_image])
        asd = np.stack([p[1] for p in per_image])
        rows = read_csv(report / f"classes_level{depth}.csv")
        assert [r["class"] for r in rows] == [tree.node(c).name for c in codes]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: classes in neither map
            expected_nsd = np.nanmean(nsd, 0)
            expected_asd = np.nanmean(np.where(np.isfinite(asd), asd, np.nan), 0)
        np.testing.assert_allclose([float(r["nsd"]) for r in rows], expected_nsd, rtol=1e-5)
        np.testing.assert_allclose([float(r["asd"]) for r in rows], expected_asd, rtol=1e-5)
        assert [int(r["asd_inf_images"]) for r in rows] == np.isinf(asd).sum(0).tolist()
        assert summary[f"level_{depth}"]["mean_nsd"] == pytest.approx(float(line.group(1)), abs=1e-3)
    assert "| class | pixels | Dice | IoU | precision | recall | NSD (1.5 px) | ASD (px) |" in markdown
    assert all(0 <= float(r["nsd"]) <= 1 for r in read_csv(report / "per_image.csv"))

    # without probabilities: said, not failed
    (out / frames[0]["frame"] / "probabilities.h5").unlink()
    missing = runner.invoke(app, ["evaluate", str(out), "-s", str(spec_path), "-o", str(tmp_path / "report2")])
    assert missing.exit_code == 0, missing.output
    note = "calibration: not available (predict with --probabilities)"
    assert note in missing.output and note in (tmp_path / "report2" / "report.md").read_text()
    assert not (tmp_path / "report2" / "reliability.png").exists()

    # sparse scribbles: no boundary metrics, said so
    sparse = runner.invoke(
        app, ["evaluate", str(out), "-s", str(spec_path), "-o", str(tmp_path / "report3"), "--against", "annotations"]
    )
    assert sparse.exit_code == 0, sparse.output
    assert "boundary metrics need dense truth" in sparse.output and "boundaries (" not in sparse.output
    assert "boundary metrics need dense truth" in (tmp_path / "report3" / "report.md").read_text()
    assert all(r["nsd"] == "nan" for r in read_csv(tmp_path / "report3" / "classes_level1.csv"))

    for bad in ("-1", "nan", "inf"):
        wrong = runner.invoke(app, ["evaluate", str(out), "-s", str(spec_path), "--nsd-tolerance", bad])
        assert wrong.exit_code == 2, wrong.output
        assert wrong.output.strip().splitlines() == [
            f"hsiseg: error: --nsd-tolerance must be a finite number of pixels >= 0, got {float(bad):g}"
        ]
