"""hsiseg.training.selection and model="auto": candidates never train on the strokes they are scored on, the choice and
every candidate's score round-trip through the model card, --model forces one network; the RBF spectral part
against a brute-force reference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as imageio
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import hsiseg.training.data as training
from hsiseg.annotations import UNLABELLED
from hsiseg.dataset.scenes import write_real_scene
from hsiseg.dataset.spec import DataSpec
from hsiseg.models import build_model
from hsiseg.models.card import CandidateScore, Selection
from hsiseg.models.checkpoint import read_card
from hsiseg.models.kernel import KernelPixelNet
from hsiseg.predict.inference import Predictor
from hsiseg.training import TrainConfig, final_checkpoint, train
from hsiseg.training.selection import CONTEXTS, SPECTRAL_CANDIDATES, HeldOut, beats_default, choose
from hsiseg_cli.main import app

SHORT = {"steps": 6, "validate_every": 3, "pixels_per_step": 64, "model_options": {"width": 16, "centres": 32}}


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """Samson (a real scene shipped with hsiseg) with 3% scribbles: one image, held-out strokes."""
    return write_real_scene("samson", tmp_path_factory.mktemp("samson"), fraction=0.03, seed=2)


def test_candidates_never_train_on_the_strokes_they_are_scored_on(scene: Path, tmp_path: Path, monkeypatch) -> None:
    trained_on: list[np.ndarray] = []
    original = training.pixel_steps

    def spy(train_set, config, world_size=1):
        images = range(len(train_set.sample_ids))
        trained_on.append(np.stack([train_set.sample(i).target != UNLABELLED for i in images]))
        return original(train_set, config, world_size)

    monkeypatch.setattr(training, "pixel_steps", spy)
    run = tmp_path / "run"
    train(scene, run, TrainConfig(**SHORT))
    assert len(trained_on) == len(SPECTRAL_CANDIDATES) + 1  # every candidate, then the refit of the winner
    for index, candidate in enumerate(SPECTRAL_CANDIDATES):
        held_out = imageio.imread(run / "candidates" / candidate.name / "validation_strokes" / "samson.png") > 0
        assert held_out.any()
        assert not (trained_on[index][0] & held_out).any(), candidate.name
        assert (trained_on[index][0] | held_out).sum() == trained_on[-1][0].sum()  # together: every scribble
    scribbled = imageio.imread(scene.parent / "scribbles.png") > 0
    np.testing.assert_array_equal(trained_on[-1][0], scribbled)  # the refit sees every scribble


def test_the_choice_round_trips_through_the_card(scene: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(scene, run, TrainConfig(**SHORT))
    selection = Selection.model_validate_json((run / "selection.json").read_text())
    expected = {f"{c.name}, {context}" for c in SPECTRAL_CANDIDATES for context, _ in CONTEXTS}
    assert set(selection.candidates) == expected
    for name, score in selection.candidates.items():
        spectral = read_card(run / "candidates" / name.split(",")[0] / "checkpoints" / "best.json")
        assert score.step == spectral.step and score.model == spectral.model.name
        context = dict(CONTEXTS)[name.split(", ")[1]]
        assert score.options == {**spectral.model.options, **context}
        assert 0 <= score.mean_dice <= 1
    first, chosen = next(iter(selection.candidates)), selection.candidates[selection.chosen]
    assert selection.chosen == first or (chosen.beats_default >= selection.evidence and chosen.mean_dice == max(
        s.mean_dice for s in selection.candidates.values() if (s.beats_default or 0) >= selection.evidence))
    assert selection.candidates[first].beats_default == 0.0  # never beats itself
    for checkpoint in ("best.json", "final.json"):
        card = read_card(run / "checkpoints" / checkpoint)
        assert card.selection == selection
        assert card.model.options == chosen.options
        assert card.metrics["mean_dice"] == pytest.approx(chosen.mean_dice)  # the winner's held-out score
    assert final_checkpoint(run) == run / "checkpoints" / "final.json"
    final = read_card(run / "checkpoints" / "final.json")
    assert final.refit.steps == selection.candidates[selection.chosen].step
    held_out = int((imageio.imread(run / "validation_strokes" / "samson.png") > 0).sum())
    assert final.probability_calibration.held_out_pixels == held_out and final.temperature != 1.0
    predictor = Predictor.from_checkpoint(run / "checkpoints" / "final.json")
    cube = DataSpec.from_file(scene).read_cube("samson")
    logits, _ = predictor.outputs(predictor.prepare(cube).image)
    expected = torch.softmax(logits / final.temperature, 0).numpy()  # predictions apply the card's temperature
    np.testing.assert_allclose(predictor.predict(cube).probabilities, expected, rtol=1e-5, atol=1e-6)


def test_an_explicit_context_is_kept(scene: Path, tmp_path: Path) -> None:
    options = {**SHORT["model_options"], "sigma": 2.0}
    train(scene, tmp_path / "run", TrainConfig(**{**SHORT, "model_options": options}))
    selection = read_card(tmp_path / "run" / "checkpoints" / "final.json").selection
    assert list(selection.candidates) == ["mlp"] and selection.candidates["mlp"].options["sigma"] == 2.0


def test_model_forces_one_network(scene: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    flags = ["--model", "spectral-spatial", "--steps", "4", "--val-every", "2", "--pixels-per-step", "32", "--quiet"]
    result = CliRunner().invoke(app, ["train", str(scene), "-o", str(run), *flags])
    assert result.exit_code == 0, result.output
    assert not (run / "candidates").exists() and not (run / "selection.json").exists()
    card = read_card(run / "checkpoints" / "final.json")
    assert card.selection is None and card.model.name == "spectral-spatial" and "spectral" not in card.model.options


def test_choose_keeps_the_first_unless_another_wins_with_evidence() -> None:
    def score(dice: float, share: float | None) -> CandidateScore:
        return CandidateScore(model="spectral-spatial", mean_dice=dice, step=10, beats_default=share)

    assert choose({"a": score(0.5, 0.0), "b": score(0.7, 0.98), "c": score(0.6, 0.5)}).chosen == "a"  # not enough
    assert choose({"a": score(0.5, 0.0), "b": score(0.7, 0.995), "c": score(0.8, 0.999)}).chosen == "c"
    assert choose({"a": score(0.5, 0.0), "b": score(0.7, 0.995), "c": score(0.6, 1.0)}).chosen == "b"
    assert choose({"a": score(math.nan, 0.0), "b": score(math.nan, 1.0)}).chosen == "a"
    assert choose({"a": score(0.5, 0.0), "b": score(0.6, 0.9)}, evidence=0.8).chosen == "b"
    with pytest.raises(ValueError, match="not among the candidates"):
        Selection(chosen="z", candidates={"a": score(0.5, None)})


def test_beats_default_matches_a_brute_force_bootstrap() -> None:
    rng = np.random.default_rng(0)
    strokes = np.repeat(np.arange(12), 5)  # 12 strokes of 5 pixels, 3 classes
    targets = np.repeat(rng.integers(0, 3, 12), 5)
    good = np.where(rng.random(60) < 0.9, targets, (targets + 1) % 3)
    bad = np.where(rng.random(60) < 0.5, targets, (targets + 1) % 3)
    held_out = HeldOut(targets, strokes, {"first": bad, "better": good, "same": bad.copy()})
    shares = beats_default(held_out, 3, resamples=200, seed=4)
    weights = np.random.default_rng(4).multinomial(12, np.full(12, 1 / 12), size=200)

    def mean_dice(prediction: np.ndarray, counts: np.ndarray) -> float:
        w = counts[strokes]
        dice = []
        for c in range(3):
            wanted = (w * (targets == c)).sum()
            if wanted:
                tp = (w * ((prediction == c) & (targets == c))).sum()
                dice.append(2 * tp / ((w * (prediction == c)).sum() + wanted))
        return float(np.mean(dice))

    for name, prediction in held_out.predictions.items():
        wins = np.mean([mean_dice(prediction, w) > mean_dice(bad, w) for w in weights])
        assert shares[name] == pytest.approx(wins)
    assert shares["first"] == shares["same"] == 0.0 and shares["better"] > 0.9


def test_rbf_features_match_a_brute_force_reference() -> None:
    torch.manual_seed(0)
    spectra = torch.rand(50, 6) * torch.linspace(1, 3, 6)
    net = KernelPixelNet(6, 3, centres=8, gamma_scale=2.0)
    net.fit_input_statistics(spectra)
    mean, std = spectra.mean(0), spectra.std(0)
    centres = net.centres.numpy().astype(np.float64)
    # every centre is a standardised training spectrum
    standardised = ((spectra - mean) / std).numpy()
    assert all(np.abs(standardised - c).max(1).min() < 1e-5 for c in centres)
    pairs = [((a - b) ** 2).sum() for i, a in enumerate(centres) for j, b in enumerate(centres) if i != j]
    positive = np.sort([p for p in pairs if p > 0])
    gamma = 2.0 / positive[(len(positive) - 1) // 2]  # the lower median (torch's)
    assert net.gamma.item() == pytest.approx(gamma, rel=1e-4)
    image = torch.rand(1, 6, 3, 4)
    features = net.features(image)[0].numpy()
    for row in range(3):
        for column in range(4):
            z = ((image[0, :, row, column] - mean) / std).numpy()
            expected = [math.exp(-gamma * ((z - c) ** 2).sum()) for c in centres]
            np.testing.assert_allclose(features[:, row, column], expected, rtol=1e-4, atol=1e-6)


def test_rbf_spectral_part_in_the_spectral_spatial_network() -> None:
    model = build_model("spectral-spatial", 5, 4, spectral="rbf", centres=16)
    model.eval()
    assert model(torch.rand(2, 5, 7, 9)).shape == (2, 4, 7, 9)
    net = KernelPixelNet(5, 4, centres=16)
    net.fit_input_statistics(torch.rand(3, 5))  # fewer spectra than centres: drawn with replacement
    assert torch.isfinite(net.centres).all() and net.gamma.item() > 0
    with pytest.raises(Exception, match="spectral must be one of"):
        build_model("spectral-spatial", 5, 4, spectral="svm")
    assert json.dumps(SHORT)  # the options the tests train with are plain JSON (args.json)


def test_an_auto_run_resumes_for_longer(scene: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(scene, run, TrainConfig(**SHORT))
    train(scene, run, TrainConfig(**{**SHORT, "steps": 9}), resume=True)
    rounds = (run / "candidates" / "mlp" / "metrics.csv").read_text().strip().splitlines()[1:]
    assert len(rounds) == 3  # the candidate continued from round 2 to round 3
    assert json.loads((run / "args.json").read_text())["config"]["steps"] == 9
    final = read_card(run / "checkpoints" / "final.json")
    assert final.selection is not None and final.refit.steps == final.selection.candidates[final.selection.chosen].step
