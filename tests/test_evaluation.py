"""hsiseg.evaluation: scores against hand computations and brute force, the report, the quick experiment."""

from __future__ import annotations

import importlib
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hsiseg import LabelTree
from hsiseg.evaluation.metrics import confusion_matrix
from hsiseg.evaluation.scores import (
    auroc,
    average_precision,
    class_scores,
    fpr_at_tpr,
    level_confusion,
    mistake_severity,
    summary_scores,
)
from hsiseg_cli.main import app
from tests.conftest import REPO


def test_class_scores_hand_computed() -> None:
    truth = np.array([0, 0, 0, 1, 1, -100, -100, 2])
    prediction = np.array([0, 0, 1, 1, 0, 2, 2, 2])  # the two unannotated pixels must not count
    confusion = confusion_matrix(prediction, truth, 4)  # class 3 absent everywhere
    assert confusion.sum() == 6
    scores = class_scores(confusion)
    np.testing.assert_allclose(scores["dice"][:3], [2 * 2 / (3 + 3), 2 * 1 / (2 + 2), 1.0])
    np.testing.assert_allclose(scores["iou"][:3], [2 / 4, 1 / 3, 1.0])
    np.testing.assert_allclose(scores["precision"][:3], [2 / 3, 1 / 2, 1.0])
    np.testing.assert_allclose(scores["recall"][:3], [2 / 3, 1 / 2, 1.0])
    assert all(np.isnan(scores[k][3]) for k in scores)  # absent class: undefined, not 0 or 1
    summary = summary_scores(confusion)
    assert summary["accuracy"] == pytest.approx(4 / 6)
    assert summary["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert summary["mean_dice"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)


def test_level_confusion_maps_both_sides(unbalanced_tree: LabelTree) -> None:
    tree = unbalanced_tree  # leaves a1 a2 x y b1 c; top level a, b, c
    truth = np.array([tree.leaf_index(n) for n in ("a1", "x", "b1", "c")])
    prediction = np.array([tree.leaf_index(n) for n in ("a2", "y", "c", "c")])
    confusion, names = level_confusion(prediction, truth, tree, 1)
    assert names == ["a", "b", "c"]
    np.testing.assert_array_equal(confusion, [[2, 0, 0], [0, 0, 1], [0, 0, 1]])
    leaf, _ = level_confusion(prediction, truth, tree, 3)
    assert np.trace(leaf) == 1


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 8), st.integers(0, 10_000))
def test_severity_on_a_flat_tree_is_twice_the_error_rate(classes: int, seed: int) -> None:
    tree = LabelTree.from_dict({"children": [f"c{i}" for i in range(classes)]})
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, 200)
    prediction = np.where(rng.random(200) < 0.3, rng.integers(0, classes, 200), truth)
    severity = mistake_severity(prediction, truth, tree)
    assert severity["mean_distance"] == pytest.approx(2 * (prediction != truth).mean())
    assert severity["mean_distance_of_errors"] in (0.0, pytest.approx(2.0))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=15), st.lists(st.integers(0, 5), min_size=1, max_size=15))
def test_auroc_equals_counting_ordered_pairs(positive, negative) -> None:
    pairs = list(itertools.product(positive, negative))
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert auroc(np.array(positive), np.array(negative)) == pytest.approx(expected)


def test_average_precision_and_fpr_by_hand() -> None:
    positive, negative = np.array([0.9, 0.7, 0.3]), np.array([0.8, 0.2, 0.1])
    # ranking: 0.9 P, 0.8 N, 0.7 P, 0.3 P -> precision at hits 1, 2/3, 3/4
    assert average_precision(positive, negative) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert fpr_at_tpr(positive, negative, 0.95) == pytest.approx(1 / 3)  # threshold 0.3 flags 0.8 only
    assert fpr_at_tpr(np.array([5.0]), np.array([1.0, 2.0]), 0.95) == 0.0


def test_evaluate_cli_report(tmp_path: Path) -> None:
    runner = CliRunner()
    demo = runner.invoke(app, ["demo", str(tmp_path / "demo"), "--steps", "20"])
    assert demo.exit_code == 0, demo.output
    assert "): leaf accuracy" in demo.output  # the snapshot-mosaic recording, streamed and exported
    for name in ("maps.h5", "overlay.mp4", "report.html", "areas.csv", "areas.png"):
        assert (tmp_path / "demo" / "recording" / name).is_file(), name
    spec = tmp_path / "demo" / "data" / "demo.yaml"
    result = runner.invoke(
        app, ["evaluate", str(tmp_path / "demo" / "predictions"), "-s", str(spec), "-o", str(tmp_path / "report")]
    )
    assert result.exit_code == 0, result.output
    assert "level 1: accuracy" in result.output and "mistake severity" in result.output
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Level 3" in report and "## Per subject" in report and "surgery04" in report
    for name in ("confusion_level1.png", "dice_level3.png", "classes_level2.csv", "per_image.csv", "summary.json"):
        assert (tmp_path / "report" / name).is_file()
    wrong = runner.invoke(app, ["evaluate", str(tmp_path / "demo"), "-s", str(spec)])
    assert wrong.exit_code == 2 and "no summary.json" in wrong.output


def benchmark(name: str, *needs: str):
    """The benchmark script ``benchmarks/<name>.py`` as a module (skipped without the packages it needs)."""
    for package in needs:
        pytest.importorskip(package)
    sys.path.insert(0, str(REPO / "benchmarks"))
    return importlib.import_module(name)


def test_quick_experiment_end_to_end() -> None:
    experiment_losses = benchmark("experiment_losses", "tensorly")
    result = experiment_losses.main(["--quick"])
    runs = result["runs"]
    assert {r["loss"] for r in runs} == {"ce", "tree-ce"}
    assert {r["regime"] for r in runs if r["data"] == "indian-pines"} == {"3% scribbles", "3%, half coarse"}
    for run in runs:
        assert 0 <= run["leaf_mean_dice"] <= 1 and 0 <= run["top_accuracy"] <= 1 and run["severity"] >= 0
    assert all(0 <= r["ood_auroc"] <= 1 for r in runs if r["data"] == "indian-pines")
    assert "| tree-ce |" in result["report"]


def test_quick_quality_benchmark_end_to_end() -> None:
    quality = benchmark("quality", "sklearn", "tensorly")
    result = quality.main(["--quick"])
    runs = result["runs"]
    assert {r["data"] for r in runs} == {"Indian Pines, 3% scribbles", "samson, 1.0% in strokes of 16 px by class",
                                         "demo, held-out surgery (dense truth)"}  # fmt: skip
    methods = {r["method"] for r in runs}
    assert quality.BASELINE in methods and any(m.startswith("hsiseg default") for m in methods)
    assert any(m.startswith("RandomForest") for m in methods) and any(m.startswith("MLP") for m in methods)
    for run in runs:
        assert 0 <= run["leaf_mean_dice"] <= 1 and 0 <= run["accuracy"] <= 1 and run["severity"] >= 0
    assert "d leaf_mean_dice vs SVC" in result["report"]


def test_evaluate_reports_unknown_tissue_for_classes_never_trained_on(tmp_path: Path) -> None:
    """The OOD-SEG protocol in hsiseg evaluate: AUROC of the saved score map equals counting ordered pairs."""
    import imageio.v3 as imageio

    from hsiseg.dataset.spec import DataSpec
    from hsiseg.synthetic.dataset import generate_demo_data
    from hsiseg.training import TrainConfig, final_checkpoint, train

    spec_path = generate_demo_data(tmp_path / "data", surgeries=3, frames=1, shape=(40, 56), seed=5)
    train(spec_path, tmp_path / "run", TrainConfig(steps=4, validate_every=2, model="pixel",
                                                   model_options={"width": 8}, pixels_per_step=64))  # fmt: skip
    spec = DataSpec.from_file(spec_path)
    cube = spec.resolve(spec.samples[spec.split("test")[0]].cube)
    runner = CliRunner()
    out = tmp_path / "predictions"
    assert (
        runner.invoke(app, ["predict", str(final_checkpoint(tmp_path / "run")), str(cube), "-o", str(out)]).exit_code
        == 0
    )
    arguments = json.loads((out / "args.json").read_text())
    truth = spec.read_truth(spec.split("test")[0])
    present = [spec.tree.leaves[c] for c in np.unique(truth) if 0 <= c < spec.tree.num_leaves]
    known = [name for name in present if name in arguments["trained_classes"]]
    assert len(known) >= 2
    dropped = known[0]
    arguments["trained_classes"].remove(dropped)  # as if the model had never seen it
    (out / "args.json").write_text(json.dumps(arguments))
    result = runner.invoke(app, ["evaluate", str(out), "-s", str(spec_path), "-o", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())["unknown_tissue"]
    trained = [spec.tree.index(name) for name in arguments["trained_classes"]]
    unseen = (truth >= 0) & (truth < spec.tree.num_leaves) & ~np.isin(truth, trained)
    assert dropped in summary["held_out_classes"]
    assert summary["held_out_classes"] == sorted({spec.tree.leaves[c] for c in np.unique(truth[unseen])})
    frame = out / json.loads((out / "summary.json").read_text())[0]["frame"]
    score = np.load(frame / "ood_score.npy")
    valid = ~(imageio.imread(frame / "invalid.png") > 0) & (truth >= 0) & (truth < spec.tree.num_leaves)
    positive, negative = score[valid & unseen], score[valid & ~unseen]
    pairs = (positive[:, None] < negative[None]).mean() + 0.5 * (positive[:, None] == negative[None]).mean()
    used = arguments["ood_score_used"]
    assert summary["scores"][used]["auroc"] == pytest.approx(pairs)
    unknown = imageio.imread(frame / "unknown.png") > 0
    assert summary["unknown_share"] == pytest.approx(unknown[truth >= 0].mean())
    assert (
        f"{used}: AUROC {pairs:.3f}" in result.output
        and "## Unknown tissue" in (tmp_path / "report" / "report.md").read_text()
    )


def test_quick_ood_benchmark_end_to_end() -> None:
    ood = benchmark("ood", "sklearn")
    result = ood.main(["--quick"])
    runs = result["runs"]
    assert {r["kind"] for r in runs} == {"leaf", "family"}
    methods = {r["method"] for r in runs}
    assert set(ood.BASELINES) <= methods and {"mahalanobis", "knn", "energy", "spectral_knn"} <= methods
    assert any(r["data"].startswith("samson") for r in runs)  # a real scene
    for run in runs:
        assert 0 <= run["auroc"] <= 1 and 0 <= run["fpr_at_95_tpr"] <= 1
        if run["method"] not in ood.BASELINES:
            assert 0 <= run["known_flagged"] <= 1 and 0 <= run["unknown_caught"] <= 1
    assert "| mahalanobis |" in result["report"]


def test_quick_tree_experiment_end_to_end() -> None:
    experiment = benchmark("experiment_tree")
    result = experiment.main(["--quick"])
    runs = result["runs"]
    assert {r["regime"] for r in runs} == {experiment.REGIMES[1].name, experiment.REGIMES[3].name}
    coarse = {r["loss"] for r in runs if r["regime"] == experiment.REGIMES[3].name}
    assert coarse == {"ce", experiment.GUESSED, "tree-ce"}
    assert {r["seed"] for r in runs} == {0, 1}
    for run in runs:
        shares = [m for m in experiment.METRICS if m != "error_severity"]
        assert all(0 <= run[m] <= 1 for m in shares if not np.isnan(run[m])), run
        assert not np.isnan([run[m] for m in ("leaf_dice", "leaf_accuracy", "top_dice", "ood_leaf")]).any()
        assert 0 <= run["error_severity"] <= 6  # the tree's largest leaf-to-leaf distance
    assert "| tree-ce | " in result["report"] and "[" in result["report"]  # paired intervals


def test_tree_experiment_scores_against_brute_force() -> None:
    experiment = benchmark("experiment_tree")
    from hsiseg.synthetic.rich import leaf_model, rich_tree

    tree = rich_tree()
    prior = leaf_model(tree).prior
    held = [tree.leaf_index(n) for n in experiment.HELD_OUT_LEAVES]
    group = [tree.leaf_index(n) for n in tree.leaves_of(experiment.HELD_OUT_GROUP)]
    known = [c for c in np.argsort(-prior) if c not in held + group]
    truth = np.array(known[:6] + held + group[:1])
    labels = np.array(known[:5] + [known[0]] + held + group[:1])  # one known pixel wrong
    scores = np.array([1.0] * 6 + [0.0] * 3)  # held-out pixels score lowest: perfect separation
    result = experiment.scores_of(labels, scores, truth, tree, prior)
    # brute force: 6 known classes, 5 right; class known[0] has TP 1, FP 1 -> Dice 2/3; known[5] Dice 0
    assert result["leaf_dice"] == pytest.approx((4 + 2 / 3 + 0) / 6)
    assert result["leaf_accuracy"] == pytest.approx(5 / 6)
    assert result["error_severity"] == pytest.approx(tree.distance_matrix()[known[5], known[0]])  # the one error
    assert result["ood_leaf"] == 1.0 and result["ood_group"] == 1.0
    assert result["frequent_dice"] == pytest.approx((4 + 2 / 3) / 6)  # the 6 commonest known leaves are frequent
    assert np.isnan(result["rare_dice"])  # no rare leaf in this truth


def test_tree_experiment_flat_targets_drop_or_guess_group_strokes() -> None:
    experiment = benchmark("experiment_tree")
    from hsiseg.synthetic.rich import leaf_model, rich_tree

    tree = rich_tree()
    prior = leaf_model(tree).prior
    group = tree.index("meninges")
    members = [tree.leaf_index(n) for n in tree.leaves_of("meninges")]
    target = np.array([[group, members[0], -100]])
    flat = experiment.flat_targets(target, tree, prior)
    assert flat["ce"].tolist() == [[-100, members[0], -100]]
    commonest = max(members, key=lambda c: prior[c])
    assert flat[experiment.GUESSED].tolist() == [[commonest, members[0], -100]]
    assert set(experiment.flat_targets(np.array([[members[1]]]), tree, prior)) == {"ce"}


def test_tree_experiment_intervals_and_pairing_by_seed() -> None:
    experiment = benchmark("experiment_tree")
    # mean 2, sd 1, n 3: half-width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    assert experiment.interval(np.array([1.0, 2.0, 3.0])) == "+2.000 [-0.484, +4.484]"
    metrics = {"leaf_dice": "leaf Dice"}
    runs = [  # listed out of seed order: differences must pair seed with seed
        {"regime": "r", "loss": "ce", "seed": 1, "leaf_dice": 0.5},
        {"regime": "r", "loss": "ce", "seed": 0, "leaf_dice": 0.1},
        {"regime": "r", "loss": "tree-ce", "seed": 0, "leaf_dice": 0.2},
        {"regime": "r", "loss": "tree-ce", "seed": 1, "leaf_dice": 0.6},
    ]
    table = experiment.summarise(runs, metrics)
    assert "| ce | 0.300 |" in table
    assert "| tree-ce | 0.400 (+0.100 [+0.100, +0.100]) |" in table  # both paired differences are +0.1


def test_the_quick_calibration_experiment() -> None:
    experiment = benchmark("experiment_calibration", "sklearn")
    result = experiment.main(["--quick"])
    protocols = {row[2] for row in result["rows"]}
    assert protocols == set(experiment.PROTOCOLS)
    assert all(0 <= row[4] <= 1 and 0 <= row[5] <= 1 for row in result["rows"])
    assert "| cross-fitted strokes |" in result["report"]


def test_the_quick_region_score_experiment() -> None:
    experiment = benchmark("experiment_region_scores", "sklearn")
    labels = np.array([[0, 0, 1], [1, 1, 1]])
    pooled = experiment.region_mean(np.array([[1.0, 3.0, 2.0], [4.0, 6.0, 0.0]]), labels)
    np.testing.assert_allclose(pooled, [[2.0, 2.0, 3.0], [3.0, 3.0, 3.0]])  # region 0: (1+3)/2, region 1: 12/4
    result = experiment.main(["--quick"])
    variants = {row[2] for row in result["rows"]}
    assert "pixel by pixel (baseline)" in variants and len(variants) == 2 + 2 * len(experiment.REGION_SIZES)
    assert all(0 <= row[3] <= 1 for row in result["rows"])


def test_the_gaussian_score_experiment_against_a_brute_force_distance() -> None:
    experiment = benchmark("experiment_gaussian_scores", "sklearn")
    rng = np.random.default_rng(0)
    points, mean = rng.normal(size=(6, 3)), rng.normal(size=3)
    covariance = experiment.shrunk(np.cov(rng.normal(size=(3, 20))), 0.1)
    expected = [(p - mean) @ np.linalg.inv(covariance) @ (p - mean) for p in points]
    np.testing.assert_allclose(experiment.squared_distance(points, mean, covariance), expected, rtol=1e-10)
    spectra, labels = rng.normal(size=(40, 3)), np.repeat([0, 1], 20)
    models = experiment.gaussian_distances(spectra, labels)

    def shrunk(matrix: np.ndarray, amount: float) -> np.ndarray:  # written out, not the module's
        return (1 - amount) * matrix + (amount + 1e-6) * np.trace(matrix) / 3 * np.eye(3)

    def distance(point, mean, covariance) -> float:
        return float((point - mean) @ np.linalg.inv(covariance) @ (point - mean))

    means = [spectra[labels == c].mean(0) for c in (0, 1)]
    within = sum(np.cov(spectra[labels == c].T, bias=True) * 20 for c in (0, 1)) / 38
    shared, overall = shrunk(within, 0.1), shrunk(np.cov(spectra.T), 0.1)
    own = [shrunk(np.cov(spectra[labels == c].T), 0.5) for c in (0, 1)]
    nearest = [min(distance(p, m, shared) for m in means) for p in points]
    relative = [n - distance(p, spectra.mean(0), overall) for n, p in zip(nearest, points, strict=True)]
    likely = [min(distance(p, m, c) + np.log(np.linalg.det(c)) for m, c in zip(means, own, strict=True))
              for p in points]  # fmt: skip
    np.testing.assert_allclose(models["shared covariance (spectral_mahalanobis, baseline)"](points), nearest)
    np.testing.assert_allclose(models["relative Mahalanobis"](points), relative)
    np.testing.assert_allclose(models["class-conditional Gaussians"](points), likely)
    result = experiment.main(["--quick"])
    assert {row[1] for row in result["rows"]} == {*models, "spectral_knn"}
    assert all(0 <= row[2] <= 1 for row in result["rows"])


def test_class_thresholds_take_each_class_quantile_and_the_pooled_one_for_small_classes() -> None:
    experiment = benchmark("experiment_class_thresholds")
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 40), rng.normal(-5, 3, 30), rng.normal(2, 1, 5)])
    codes = np.repeat([0, 2, 3], [40, 30, 5])
    thresholds = experiment.class_thresholds(values, codes, num_leaves=5, keep=0.9, min_pixels=20)
    pooled = np.sort(values)[int(0.1 * 74)] + 0.4 * (np.sort(values)[8] - np.sort(values)[7])  # linear, at 7.4
    expected = [np.quantile(values[:40], 0.1), pooled, np.quantile(values[40:70], 0.1), pooled, pooled]
    np.testing.assert_allclose(thresholds, expected)  # classes 1 and 4 have no value, class 3 only 5: pooled


def test_out_of_fold_codes_follow_cross_fitting_order() -> None:
    experiment = benchmark("experiment_class_thresholds")
    target = np.array([[0, 1, -100], [1, 0, 2]])
    folds = np.array([[1, 0, -1], [1, 0, 0]])
    # fold 0 row-major: (0,1)=1, (1,1)=0, (1,2)=2; then fold 1: (0,0)=0, (1,0)=1
    np.testing.assert_array_equal(experiment.out_of_fold_codes({"a": target}, {"a": folds}), [1, 0, 2, 0, 1])


def test_the_quick_class_threshold_experiment() -> None:
    experiment = benchmark("experiment_class_thresholds", "sklearn")
    result = experiment.main(["--quick"])
    assert {row[2] for row in result["rows"]} == set(experiment.RULES)
    assert {row[1] for row in result["rows"]} == {"soil", "tree", "water"}  # Samson, each leaf held out
    assert all(0 <= row[3] <= 1 and 0 <= row[4] <= 1 for row in result["rows"])
    assert "| per class |" in result["report"]
