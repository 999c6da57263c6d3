"""The typed model card: every corruption of a checkpoint is one clear error naming the file and the field."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hsiseg import HsisegError
from hsiseg.models.card import ModelCard, tree_hash
from hsiseg.models.checkpoint import load_model, load_ood_scores, read_card
from hsiseg.ood import DEFAULT_SCORE, DEFAULT_SCORES
from hsiseg.synthetic.dataset import generate_demo_data
from hsiseg.training import TrainConfig, final_checkpoint, train
from hsiseg_cli.main import app


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """(final checkpoint card of a tiny pixel-network run, a cube to predict)."""
    folder = tmp_path_factory.mktemp("card")
    spec = generate_demo_data(folder / "data", surgeries=3, frames=1, shape=(24, 32), seed=2)
    train(spec, folder / "run", TrainConfig(steps=4, validate_every=2, model="pixel", model_options={"width": 8},
                                            pixels_per_step=64))  # fmt: skip
    cube = next((folder / "data" / "cubes" / "surgery03").glob("*.dat"))
    return final_checkpoint(folder / "run"), cube


def test_card_round_trip_and_contents(checkpoint) -> None:
    path, _ = checkpoint
    card = read_card(path)
    assert isinstance(card, ModelCard) and card.tree_hash == tree_hash(card.label_tree)
    assert card.model.classes == card.tree.num_leaves and card.trained_classes
    assert set(card.ood.scores) == set(DEFAULT_SCORES) and card.ood.default == DEFAULT_SCORE
    assert ModelCard.model_validate_json(card.to_json()) == card
    model, loaded = load_model(path)
    scores = load_ood_scores(path, loaded)
    assert scores["knn"].bank.shape[1] == 8 and scores["mahalanobis"].means.shape[1] == 8


def edit(field: str, value) -> Callable[[dict], None]:
    def change(card: dict) -> None:
        *parents, last = field.split(".")
        target = card
        for key in parents:
            target = target[key]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value

    return change


DELETE = object()


def rename_leaf(card: dict, rehash: bool) -> None:
    card["label_tree"]["children"][0]["children"][1] = {"name": "renamed", "weight": 1.0}
    if rehash:
        card["tree_hash"] = tree_hash(card["label_tree"])


def malformed_tree(card: dict) -> None:
    card["label_tree"] = {"children": "x"}
    card["tree_hash"] = tree_hash(card["label_tree"])


CORRUPTIONS = {
    "wrong band count": (edit("model.in_channels", 50), r"input_mean has shape \(100,\), .*'model'.*expects \(50,\)"),
    "wrong width": (edit("model.options", {"width": 16}), r"has shape \(8,.*expects \(16,"),
    "absurd band count": (edit("model.in_channels", 10**9), r"input_mean has shape \(100,\), .*\(1000000000,\)"),
    "absurd width": (edit("model.options", {"width": 10**9}), r"has shape \(8,.*expects \(1000000000,"),
    "classes not leaves": (edit("model.classes", 13), "model.classes is 13, the label tree has 14 leaves"),
    "missing field": (edit("preprocessing", DELETE), "field 'preprocessing': Field required"),
    "bad type": (edit("model.in_channels", "ninety"), "field 'model.in_channels': Input should be a valid integer"),
    "unknown field": (edit("colour", "red"), "field 'colour': Extra inputs are not permitted"),
    "unknown model": (edit("model.name", "vit"), "unknown model 'vit'"),
    "bad calibration": (edit("ood.scores.knn.keep", 1.5), "field 'ood.scores.knn.keep': Input should be less"),
    "default uncalibrated": (edit("ood.default", "entropy"), "default score 'entropy' has no calibration"),
    "tree edited": (lambda card: rename_leaf(card, False), "tree_hash does not match label_tree"),
    "tree of another run": (lambda card: rename_leaf(card, True), "trained with another label tree"),
    "malformed tree": (lambda card: malformed_tree(card), "field 'label_tree'"),
    "not a card": (lambda card: card.clear(), "not an hsiseg model card"),
    "newer format": (edit("format", 99), "format 99 .* upgrade hsiseg"),
    "bad preprocessing": (edit("preprocessing.normalization", "log"), "field 'preprocessing.normalization'"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_every_corruption_is_one_clear_error(checkpoint, tmp_path: Path, name: str) -> None:
    path, cube = checkpoint
    change, message = CORRUPTIONS[name]
    shutil.copy(path.with_suffix(".safetensors"), tmp_path / "model.safetensors")
    card = json.loads(path.read_text())
    change(card)
    (tmp_path / "model.json").write_text(json.dumps(card))
    with pytest.raises(HsisegError, match=message):
        load_model(tmp_path / "model.json")
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "model.json"), str(cube), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("hsiseg: error:")]
    assert len(error_lines) == 1 and str(tmp_path / "model") in error_lines[0]


def test_unreadable_card_files(checkpoint, tmp_path: Path) -> None:
    path, _ = checkpoint
    shutil.copy(path.with_suffix(".safetensors"), tmp_path / "model.safetensors")
    card = tmp_path / "model.json"
    card.write_bytes(b"\xff\xfe not text")
    with pytest.raises(HsisegError, match="not UTF-8"):
        read_card(card)
    card.write_text("{ nope")
    with pytest.raises(HsisegError, match="line 1: not a valid model card"):
        read_card(card)
    shutil.copy(path, card)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(HsisegError, match="unreadable weights"):
        load_model(card)


def test_ood_tensors_missing_from_the_weights(checkpoint, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    path, _ = checkpoint
    shutil.copy(path, tmp_path / "model.json")
    weights = {k: v for k, v in load_file(str(path.with_suffix(".safetensors"))).items() if not k.startswith("ood.")}
    save_file(weights, str(tmp_path / "model.safetensors"))
    model, card = load_model(tmp_path / "model.json")  # the network itself is fine
    with pytest.raises(HsisegError, match="OOD score 'mahalanobis' is calibrated in the card but its fitted"):
        load_ood_scores(tmp_path / "model.json", card)


def test_format_1_cards_keep_their_threshold(checkpoint) -> None:
    """hsiseg 0.1 cards had no tree hash or trained classes, and one max-softmax threshold."""
    path, _ = checkpoint
    card = json.loads(path.read_text())
    for field in ("tree_hash", "trained_classes"):
        del card[field]
    card.update(format=1, ood={"score": "max_softmax", "threshold": 0.42, "kept_fraction": 0.95,
                               "calibration_pixels": 120})  # fmt: skip
    parsed = ModelCard.parse(card, "old.json")
    assert parsed.ood.default == "max_softmax" and parsed.ood.scores["max_softmax"].threshold == 0.42
    assert parsed.trained_classes == list(parsed.tree.leaves) and parsed.tree_hash == tree_hash(card["label_tree"])


def test_a_run_without_validation_pixels_keeps_nan_metrics(tmp_path: Path) -> None:
    """No validation pixel: metrics are NaN, the cards still load, nothing is calibrated, prediction runs."""
    import imageio.v3 as imageio
    import numpy as np
    import yaml

    from hsiseg.io import read_cube
    from hsiseg.predict import Predictor

    spec_path = generate_demo_data(tmp_path / "demo", surgeries=3, frames=1, shape=(24, 32), seed=3)
    spec = yaml.safe_load(spec_path.read_text())
    spec["root"], spec["label_tree"] = str(spec_path.parent), str(spec_path.parent / "label_tree.yaml")
    ids = [sample["id"] for sample in spec["samples"]]
    spec["splits"] = {"train": [ids[0]], "val": [ids[1]]}
    imageio.imwrite(tmp_path / "empty.png", np.zeros((24, 32), dtype=np.uint8))
    spec["samples"][1]["annotations"] = [str(tmp_path / "empty.png")]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    settings = TrainConfig(steps=4, validate_every=2, model="pixel", model_options={"width": 8}, pixels_per_step=32)
    train(tmp_path / "spec.yaml", tmp_path / "run", settings)
    best = read_card(tmp_path / "run" / "checkpoints" / "best.json")
    assert np.isnan(best.metrics["mean_dice"]) and not best.ood.scores and best.ood.default is None
    cube = read_cube(spec_path.parent / spec["samples"][2]["cube"])
    prediction = Predictor.from_checkpoint(final_checkpoint(tmp_path / "run")).predict(cube)
    assert not prediction.unknown.any()
