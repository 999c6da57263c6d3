"""Where to scribble next (hsiseg.active): suggestions against brute-force references, their rules (never in
scribbled or invalid pixels, deterministic per seed, tree-aware), the simulated annotator's wall around the
truth, hsiseg suggest end to end, the page's suggestions, and the quick budget benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hsiseg.active import regions, suggest
from hsiseg.active.simulated_annotator import TruthOracle, first_strokes, stroke_in
from hsiseg.labels import UNLABELLED
from hsiseg.predict.inference import Prediction
from hsiseg.synthetic.dataset import demo_tree, generate_demo_data
from hsiseg_cli.main import app as cli

ROOT = Path(__file__).parents[1]


def prediction_of(probabilities: np.ndarray, invalid: np.ndarray | None = None) -> Prediction:
    """A Prediction from (C, H, W) probabilities (score: the confidence; nothing unknown)."""
    shape = probabilities.shape[1:]
    invalid = np.zeros(shape, dtype=bool) if invalid is None else invalid
    confidence = probabilities.max(0)
    return Prediction(probabilities.astype(np.float32), probabilities.argmax(0).astype(np.int32), confidence,
                      np.zeros(shape, dtype=bool), invalid, confidence)  # fmt: skip


def blocks(shape: tuple[int, int], size: int) -> np.ndarray:
    """(H, W) superpixels: square blocks of ``size`` pixels."""
    rows, columns = np.indices(shape)
    return (rows // size) * (-(-shape[1] // size)) + columns // size


@pytest.fixture
def scene() -> tuple[Prediction, np.ndarray]:
    rng = np.random.default_rng(0)
    tree = demo_tree()
    logits = rng.normal(0, 2, (tree.num_leaves, 32, 40))
    probabilities = np.exp(logits) / np.exp(logits).sum(0)
    return prediction_of(probabilities), blocks((32, 40), 8)


def test_uncertainty_ranks_regions_by_their_mean_margin(scene) -> None:
    prediction, superpixels = scene
    tree = demo_tree()
    scribbles = np.full(superpixels.shape, UNLABELLED, dtype=np.int32)
    found = suggest(prediction, scribbles, tree, 5, "uncertainty", superpixels=superpixels)
    top2 = np.sort(prediction.probabilities, axis=0)[-2:]
    margin = 1 - (top2[1] - top2[0])
    expected = sorted(np.unique(superpixels), key=lambda r: -margin[superpixels == r].mean())[:5]  # brute force
    assert [int(superpixels[s.mask][0]) for s in found] == expected
    assert [s.rank for s in found] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([s.score for s in found], [margin[superpixels == r].mean() for r in expected],
                               rtol=1e-6)  # fmt: skip


def test_stratified_takes_the_most_doubtful_region_of_the_first_least_scribbled_band(scene) -> None:
    prediction, superpixels = scene  # 4 x 5 blocks of 8 x 8 pixels: raster order of centres = block order
    tree = demo_tree()
    scribbles = np.full(superpixels.shape, UNLABELLED, dtype=np.int32)
    scribbles[1, 1:5] = 2  # one stroke in block 0
    scribbles[20, 20:24] = 5  # one stroke in block 12
    found = suggest(prediction, scribbles, tree, 4, "stratified", superpixels=superpixels)
    top2 = np.sort(prediction.probabilities, axis=0)[-2:]
    margin = {r: (1 - (top2[1] - top2[0]))[(superpixels == r) & (scribbles == UNLABELLED)].mean() for r in range(20)}
    strata = 2 + 4  # strokes + count: blocks 0-3 in the first band, 4-6 in the second, ...
    band = {r: r * strata // 20 for r in range(20)}
    cover = {b: 0.0 for b in range(strata)}
    cover[band[0]] += 4
    cover[band[12]] += 4
    expected = []
    for _ in range(4):  # brute force: the first of the least covered bands, its lowest-margin open region
        open_regions = [r for r in range(20) if r not in expected]
        least = min(cover[band[r]] for r in open_regions)
        first = min(band[r] for r in open_regions if cover[band[r]] == least)
        best = max((r for r in open_regions if band[r] == first), key=lambda r: margin[r])
        expected.append(best)
        cover[band[best]] += 4  # a pick counts as one more stroke of the mean stroke's pixels
    assert [int(superpixels[s.mask][0]) for s in found] == expected
    assert len({band[r] for r in expected}) == 4 and band[0] not in {band[r] for r in expected}
    np.testing.assert_allclose([s.score for s in found], [margin[r] for r in expected], rtol=1e-6)


def test_never_inside_scribbled_or_invalid_pixels(scene) -> None:
    prediction, superpixels = scene
    tree = demo_tree()
    invalid = np.zeros(superpixels.shape, dtype=bool)
    invalid[::3, ::5] = True
    prediction.invalid = invalid
    scribbles = np.full(superpixels.shape, UNLABELLED, dtype=np.int32)
    scribbles[2:6, :] = 3  # crosses the first row of blocks
    scribbles[8:16, 0:8] = 4  # a whole block: never suggested
    for strategy in ("mix", "uncertainty", "random", "grid", "stratified"):
        found = suggest(prediction, scribbles, tree, 20, strategy, seed=1, superpixels=superpixels)
        assert found and all(not (s.mask & ((scribbles != UNLABELLED) | invalid)).any() for s in found)
        assert all(not (s.mask & (superpixels == superpixels[8, 0])).any() for s in found)


def test_a_declined_region_is_not_suggested_again(scene) -> None:
    prediction, superpixels = scene
    tree = demo_tree()
    scribbles = np.full(superpixels.shape, UNLABELLED, dtype=np.int32)
    first = suggest(prediction, scribbles, tree, 3, "uncertainty", superpixels=superpixels)
    declined = first[0].mask | first[1].mask  # the annotator turned the two best down
    declined[30, 39] = True  # and one pixel of another block: the rest of that block stays offered
    again = suggest(prediction, scribbles, tree, 20, "uncertainty", superpixels=superpixels, declined=declined)
    assert all(not (s.mask & declined).any() for s in again)
    assert [int(superpixels[s.mask][0]) for s in again[:1]] == [int(superpixels[first[2].mask][0])]
    assert any(s.mask[31, 39] for s in again)  # a block with one declined pixel is still a candidate
    for strategy in ("mix", "random", "grid", "stratified"):
        found = suggest(prediction, scribbles, tree, 20, strategy, seed=2, superpixels=superpixels, declined=declined)
        assert found and all(not (s.mask & declined).any() for s in found)


def test_a_negative_seed_or_an_unknown_sample_is_one_clear_error(scene, tmp_path: Path) -> None:
    from hsiseg.active.files import suggest_for_spec
    from hsiseg.errors import HsisegError

    prediction, superpixels = scene
    scribbles = np.full(superpixels.shape, UNLABELLED, dtype=np.int32)
    with pytest.raises(HsisegError, match="seed must be >= 0, got -1"):
        suggest(prediction, scribbles, demo_tree(), 3, "random", seed=-1, superpixels=superpixels)
    spec = generate_demo_data(tmp_path / "data", surgeries=2, frames=1, shape=(16, 16), seed=2)
    with pytest.raises(HsisegError, match="no sample 'nope'"):  # found before the (missing) model is read
        suggest_for_spec(tmp_path / "no-model.json", spec, tmp_path / "out", ["nope"])


def test_suggestions_are_deterministic_per_seed(scene) -> None:
    prediction, _ = scene
    tree = demo_tree()
    rng = np.random.default_rng(3)
    image = rng.random((10, 32, 40)).astype(np.float32)
    scribbles = np.full((32, 40), UNLABELLED, dtype=np.int32)
    runs = [suggest(prediction, scribbles, tree, 6, "mix", seed=5, image=image) for _ in range(2)]
    assert [s.as_json() for s in runs[0]] == [s.as_json() for s in runs[1]]
    np.testing.assert_array_equal(regions(image, prediction.invalid, 5), regions(image, prediction.invalid, 5))
    other = suggest(prediction, scribbles, tree, 6, "random", seed=6, superpixels=blocks((32, 40), 8))
    again = suggest(prediction, scribbles, tree, 6, "random", seed=6, superpixels=blocks((32, 40), 8))
    assert [s.centre for s in other] == [s.centre for s in again]


def test_siblings_make_the_parent_an_accepted_label() -> None:
    tree = demo_tree()
    artery, vein, bone = (tree.index(name) for name in ("artery", "vein", "bone"))
    probabilities = np.full((tree.num_leaves, 8, 16), 0.01)
    probabilities[artery, :, :8], probabilities[vein, :, :8] = 0.45, 0.4  # siblings under 'vessel'
    probabilities[artery, :, 8:], probabilities[bone, :, 8:] = 0.45, 0.4  # not siblings
    probabilities /= probabilities.sum(0)
    found = suggest(prediction_of(probabilities), np.full((8, 16), UNLABELLED, dtype=np.int32), tree, 2,
                    "uncertainty", superpixels=blocks((8, 16), 8))  # fmt: skip
    by_side = {int(np.argwhere(s.mask)[0][1] >= 8): s for s in found}
    assert by_side[0].accept == ["artery", "vessel"] and any("'vessel'" in r for r in by_side[0].reasons)
    assert by_side[1].accept == ["artery"] and by_side[1].candidates == ["artery", "bone"]


def test_the_simulated_annotator_reads_the_truth_under_its_stroke_only() -> None:
    rng = np.random.default_rng(2)
    truth = np.repeat(np.arange(6), 10).reshape(6, 10).T.copy()  # (10, 6): bands of classes
    truth = np.kron(truth, np.ones((3, 3), dtype=int))  # (30, 18)
    oracle = TruthOracle(truth)
    scribbles = first_strokes(oracle, 6, rng)
    assert {int(c) for c in np.unique(scribbles)} == {UNLABELLED, 0, 1, 2, 3, 4, 5}
    oracle.forget()
    region = np.zeros(truth.shape, dtype=bool)
    region[5:25, 2:16] = True
    for _ in range(30):
        stroke = stroke_in(oracle, region, 8, rng)
        assert stroke is not None
        (rows, columns), leaf = stroke
        assert (truth[rows, columns] == leaf).all() and region[rows, columns].all() and len(rows) <= 8
        drawn = np.zeros(truth.shape, dtype=bool)
        drawn[rows, columns] = True
        near = np.zeros_like(drawn)  # the stroke and the pixel where it met another tissue or the region's edge
        for r, c in zip(rows, columns, strict=True):
            near[max(0, r - 1) : r + 2, max(0, c - 1) : c + 2] = True
        assert not (oracle.asked & ~near).any(), "read the truth outside its stroke"
        oracle.forget()


def test_hsiseg_suggest_end_to_end(tmp_path: Path) -> None:
    from hsiseg.dataset.spec import DataSpec
    from hsiseg.training import TrainConfig, final_checkpoint, train

    spec_path = generate_demo_data(tmp_path / "demo", surgeries=3, frames=1, shape=(40, 56), seed=2)
    train(spec_path, tmp_path / "run", TrainConfig(model="pixel", steps=30, validate_every=15))
    model = final_checkpoint(tmp_path / "run")
    sample = list(DataSpec.from_file(spec_path).samples)[0]
    result = CliRunner().invoke(cli, ["suggest", str(model), str(spec_path), "-o", str(tmp_path / "out"),
                                      "--sample", sample, "--count", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out" / f"{sample}.json").read_text())
    assert [s["rank"] for s in document["suggestions"]] == [1, 2, 3, 4]
    first = document["suggestions"][0]
    assert first["outline"] and first["pixels"] > 0 and first["reasons"] and first["accept"]
    assert (tmp_path / "out" / f"{sample}.png").stat().st_size > 1000
    assert json.loads((tmp_path / "out" / "suggestions.json").read_text())["files"] == [f"{sample}.json"]
    bad = CliRunner().invoke(cli, ["suggest", str(model), str(spec_path), "-o", str(tmp_path / "x"), "--strategy",
                                   "best"])  # fmt: skip
    assert bad.exit_code == 2 and "--strategy must be one of mix, uncertainty, random, grid" in bad.output


def test_the_quick_budget_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    output = tmp_path / "budget.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "annotation_budget.py"), "--quick", "--output",
                          str(output)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| demo | mix |" in run.stdout and output.with_suffix(".png").is_file()
    curves = json.loads(output.read_text())["results"]["demo"]
    assert set(curves) == {"mix", "uncertainty", "random", "grid", "stratified"}
    assert all(len(c["dice"]) == 5 and 0 <= min(c["dice"]) <= max(c["dice"]) <= 1 for s in curves.values() for c in s)


def test_the_quick_live_model_experiment_runs_every_variant_end_to_end(tmp_path: Path) -> None:
    output = tmp_path / "experiment.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "experiment_suggestions.py"), "--quick",
                          "--output", str(output)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(output.read_text())["results"]
    assert set(results) == {"demo / default / random", "demo / default / mix", "demo / every stroke / random",
                            "demo / every stroke / mix", "demo / weight average / random",
                            "demo / weight average / mix", "demo / map changes / mix"}  # fmt: skip
    assert all(len(c["dice"]) == 4 and 0 <= min(c["dice"]) <= max(c["dice"]) <= 1 for s in results.values() for c in s)


def test_the_budget_benchmark_loads_the_rich_scene_with_its_100_leaf_tree() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import annotation_budget

    cube, truth, tree = annotation_budget.load("rich", quick=True)
    assert tree.num_leaves == 100 and truth.shape == cube.data.shape[:2] == (48, 64)
    present = np.unique(truth[truth >= 0])
    assert present.max() < tree.num_leaves and present.size > 14  # richer than the demo's 14 leaves


def test_the_budget_annotator_asks_again_when_every_suggestion_was_declined() -> None:
    """A round whose suggestions all lie on background without truth asks for new ones (which never repeat a
    declined region) and draws its stroke there; with one ask it draws none. Declines are counted."""
    from types import SimpleNamespace

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import annotation_budget

    truth = np.full((12, 12), -1)
    truth[:, 6:] = 3  # left half: background without truth; right half: leaf 3
    background, tissue = np.zeros((12, 12), dtype=bool), np.zeros((12, 12), dtype=bool)
    background[:, :6], tissue[:, 6:] = True, True
    offered: list[int] = []

    def ask() -> list:
        offered.append(len(offered))
        return [SimpleNamespace(mask=background)] if len(offered) == 1 else [SimpleNamespace(mask=tissue)]

    declined = np.zeros((12, 12), dtype=bool)
    stroke, turned_down = annotation_budget._one_round(ask, TruthOracle(truth), 4, np.random.default_rng(0),
                                                       declined, asks=4)  # fmt: skip
    assert stroke is not None and stroke[1] == 3 and tissue[stroke[0]].all()
    assert turned_down == 1 and offered == [0, 1] and (declined == background).all()
    offered.clear()
    stroke, turned_down = annotation_budget._one_round(ask, TruthOracle(truth), 4, np.random.default_rng(0),
                                                       np.zeros((12, 12), dtype=bool), asks=1)  # fmt: skip
    assert stroke is None and turned_down == 1 and offered == [0]


def test_the_budget_table_reads_the_halving_target_from_the_mean_curves() -> None:
    """Random ends at 0.6 on average; mix's mean curve first reaches 0.6 after 2 strokes although one seed never
    does; the half-budget column is mix at stroke 2 minus random at stroke 4, paired, with a t interval."""
    from scipy import stats

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import annotation_budget

    def runs(*curves: list[float]) -> list[dict]:
        return [{"dice": curve, "svc_dice": [0.1] * len(curve)} for curve in curves]

    results = {"scene": {"random": runs([0.3, 0.4, 0.5, 0.5, 0.5], [0.3, 0.4, 0.5, 0.6, 0.7]),
                         "mix": runs([0.3, 0.5, 0.7, 0.7, 0.8], [0.3, 0.5, 0.5, 0.5, 0.55])}}  # fmt: skip
    rows = {line.split(" | ")[1]: line.split(" | ") for line in annotation_budget.summarise(results)[2:]}
    assert rows["mix"][4] == "2 (1 seeds never)" and rows["random"][4] == "4 (1 seeds never)"
    difference = np.array([0.7 - 0.5, 0.5 - 0.7])
    half = stats.t.ppf(0.975, 1) * difference.std(ddof=1) / np.sqrt(2)
    assert rows["mix"][5] == f"{difference.mean():+.3f} [{-half:+.3f}, {half:+.3f}]"
