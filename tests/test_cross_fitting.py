"""Cross-fitted unknown-tissue thresholds (``hsiseg train --ood-calibration cross-fitted``): every annotated pixel
calibrates, each scored by a score fitted without its stroke's fold; recomputed here by a plain loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hsiseg import HsisegError
from hsiseg.dataset.scenes import write_real_scene
from hsiseg.dataset.spec import DataSpec
from hsiseg.dataset.strokes import subject_folds
from hsiseg.labels import UNLABELLED
from hsiseg.models.checkpoint import load_model
from hsiseg.ood import PixelOutputs, build_score
from hsiseg.ood.cross_fitting import FOLDS
from hsiseg.ood.maps import network_outputs, pixel_outputs, score_maps
from hsiseg.ood.trust import promise
from hsiseg.synthetic.dataset import generate_demo_data
from hsiseg.training import TrainConfig, train
from hsiseg.training.data import build_training_data, network_preprocessing
from hsiseg_cli.main import app

SCORES = ["mahalanobis", "spectral_mahalanobis"]


@pytest.fixture(scope="module", params=["demo", "samson"])
def trained(tmp_path_factory, request) -> tuple[Path, Path, TrainConfig]:
    """The demo (training and validation on separate images) and a real scene (one image: held-out strokes)."""
    folder = tmp_path_factory.mktemp("cross")
    if request.param == "demo":
        spec = generate_demo_data(folder / "data", surgeries=3, frames=1, shape=(48, 64), seed=2)
    else:
        spec = write_real_scene("samson", folder / "data", 0.02, 8, 0, "class")
    config = TrainConfig(steps=6, validate_every=3, model="pixel", model_options={"width": 8}, pixels_per_step=64,
                         refit=False, ood_calibration="cross-fitted", ood_scores=SCORES)  # fmt: skip
    train(spec, folder / "run", config)
    return spec, folder / "run" / "checkpoints" / "best.json", config


def out_of_fold_values(spec_path: Path, checkpoint: Path, config: TrainConfig, name: str) -> np.ndarray:
    """The out-of-fold map values of every annotated pixel of the training and validation images, by a loop."""
    spec = DataSpec.from_file(spec_path)
    data = build_training_data(spec, config, network_preprocessing(spec, config.fold))
    model, _ = load_model(checkpoint, "cpu")
    model.eval()
    images = {}
    for dataset in (data.train_images, data.validation):
        for index, sample_id in enumerate(dataset.sample_ids):
            images[sample_id] = dataset.sample(index).image  # (H, W, B)
    targets = {sample_id: spec.read_annotation(sample_id, image.shape[:2]) for sample_id, image in images.items()}
    subjects = {sample_id: spec.samples[sample_id].subject for sample_id in images}
    folds = subject_folds(targets, subjects, FOLDS, config.seed)
    values = []
    for k in range(FOLDS):
        spectra = np.concatenate([images[s][(folds[s] >= 0) & (folds[s] != k)] for s in images])
        codes = np.concatenate([targets[s][(folds[s] >= 0) & (folds[s] != k)] for s in images])
        leaf = codes < spec.tree.num_leaves
        score = build_score(name)
        score.fit(PixelOutputs(torch.zeros(int(leaf.sum()), 1), None, torch.from_numpy(spectra[leaf]).float(),
                               torch.from_numpy(codes[leaf]).long()))  # fmt: skip
        for sample_id, image in images.items():
            tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
            with torch.no_grad():
                logits, features = network_outputs(model, tensor[None])
            features = None if features is None else features[0]
            outputs = pixel_outputs(logits[0], features, tensor)
            score_map = score_maps(model, {name: score}, outputs, features, image.shape[:2])[name].numpy()
            values.append(score_map[folds[sample_id] == k])
    return np.concatenate(values)


def test_cross_fitted_thresholds_are_the_quantile_of_out_of_fold_values(trained) -> None:
    spec_path, checkpoint, config = trained
    _, card = load_model(checkpoint, "cpu")
    assert card.ood.scores["mahalanobis"].method == "held-out"  # a feature score: the network saw every stroke
    calibration = card.ood.scores["spectral_mahalanobis"]
    assert calibration.method == "cross-fitted"
    values = out_of_fold_values(spec_path, checkpoint, config, "spectral_mahalanobis")
    spec = DataSpec.from_file(spec_path)
    samples = set(spec.split("train")) | set(spec.split("val"))
    annotated = sum(int((spec.read_annotation(s) != UNLABELLED).sum()) for s in samples)
    assert calibration.held_out_pixels == values.size == annotated  # every annotated pixel calibrates
    np.testing.assert_allclose(calibration.threshold, np.quantile(values, 1 - config.ood_keep), rtol=1e-5)
    assert "each scored without its stroke" in promise("spectral_mahalanobis", calibration.threshold, calibration)


def test_an_unknown_calibration_is_refused_before_data_is_read(tmp_path: Path) -> None:
    with pytest.raises(HsisegError, match="ood_calibration must be auto, held-out or cross-fitted"):
        TrainConfig(ood_calibration="crossfit").check()
    result = CliRunner().invoke(app, ["train", str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "run"),
                                      "--ood-calibration", "crossfit"])  # fmt: skip
    assert result.exit_code == 2 and "ood_calibration" in result.output and "Traceback" not in result.output


def test_the_automatic_choice_by_where_the_held_out_pixels_come_from() -> None:
    from hsiseg.training.unknown_tissue import unknown_tissue_choice

    every = ["max_softmax", "mahalanobis", "spectral_knn"]
    assert unknown_tissue_choice("auto", "auto", every, strokes_held_out=True) == ("spectral_knn", "cross-fitted")
    assert unknown_tissue_choice("auto", "auto", every, strokes_held_out=False) == ("mahalanobis", "held-out")
    assert unknown_tissue_choice("knn", "held-out", every, strokes_held_out=True) == ("knn", "held-out")
    # the preferred score not fitted: the other regime's, then the first fitted, never silently the worst
    assert unknown_tissue_choice("auto", "auto", ["max_softmax", "mahalanobis"], True)[0] == "mahalanobis"
    assert unknown_tissue_choice("auto", "auto", ["energy", "max_softmax"], False)[0] == "energy"
    with pytest.raises(HsisegError, match="ood_scores must name at least one"):
        TrainConfig(ood_scores=[]).check()


def test_a_run_written_before_the_automatic_choice_resumes_as_it_was_configured(tmp_path: Path) -> None:
    """An args.json from before 'auto' has no ood_calibration (and may have no ood_score): the resumed run keeps
    the defaults of its time, and asking for them again is no difference."""
    import json
    from dataclasses import asdict

    from hsiseg.training.run_folder import check_resume_options, stored_config

    old = {k: v for k, v in asdict(TrainConfig()).items() if k not in ("ood_calibration", "ood_score")}
    (tmp_path / "args.json").write_text(json.dumps({"spec": "spec.yaml", "config": old}))
    stored = stored_config(tmp_path, None)
    assert (stored.ood_score, stored.ood_calibration) == ("mahalanobis", "held-out")
    check_resume_options(tmp_path, {"ood_calibration": "held-out"})
    with pytest.raises(HsisegError, match="'held-out' in the run, 'cross-fitted' asked"):
        check_resume_options(tmp_path, {"ood_calibration": "cross-fitted"})
