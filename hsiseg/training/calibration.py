"""The model card of a run and the unknown-tissue calibration of its best checkpoint."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from hsiseg.dataset.spec import DataSpec
from hsiseg.dataset.torch_datasets import SpecDataset
from hsiseg.models import AnySize
from hsiseg.models.card import InputScaling, ModelCard, NetworkConfig, OodSettings
from hsiseg.models.checkpoint import (
    load_model,
    save_model,
)
from hsiseg.ood import OodScore
from hsiseg.ood.calibration import (
    annotated,
    annotated_outputs,
    calibrate,
    fit_scores,
    map_values,
    reference_sample,
)
from hsiseg.ood.cross_fitting import cross_fittable, cross_fitted
from hsiseg.training.config import TrainConfig
from hsiseg.training.data import TrainingData
from hsiseg.training.step import _autocast_dtype
from hsiseg.training.temperature import fit_temperature


def card_base(config, spec: DataSpec, preprocessing, model: AnySize, train_images: SpecDataset) -> ModelCard:
    """The card every checkpoint of this run shares (round, metrics and OOD calibration are added per round)."""
    network = NetworkConfig(
        name=config.model,
        in_channels=train_images.num_bands,
        classes=spec.tree.num_leaves,
        options=config.model_options,
        input_multiple=model.input_multiple,
    )
    targets = [train_images.sample(i).target for i in range(len(train_images.sample_ids))]
    reader = spec.document.reader
    scaling = InputScaling(scale=reader.get("scale"), offset=reader.get("offset"))
    return ModelCard.create(spec.tree, model=network, preprocessing=preprocessing, input_scaling=scaling,
                            training={**asdict(config), "spec": str(spec.path)},
                            trained_classes=trained_classes(targets, spec.tree))  # fmt: skip


def calibrate_best(checkpoints: Path, data: TrainingData, config: TrainConfig, device: torch.device) -> ModelCard:
    """Fit the unknown-tissue scores of the best checkpoint on its training pixels, calibrate them on the
    held-out validation pixels and rewrite ``best.*`` with them (once, after the last round); its new card."""
    model, card = load_model(checkpoints / "best", device)
    card, scores = with_ood(card, model, data, config, device, _autocast_dtype(device, config.amp, config.amp_dtype))
    save_model(checkpoints / "best", model, card, scores)
    return card


def with_ood(
    card: ModelCard, model, data: TrainingData, config: TrainConfig, device, autocast_dtype
) -> tuple[ModelCard, dict[str, OodScore]]:
    """The card with every unknown-tissue score fitted on the training pixels and calibrated on the held-out
    validation pixels (:mod:`hsiseg.ood.calibration`), or, for input-space scores under cross-fitted calibration,
    on every annotated pixel's out-of-fold value; its default score as :mod:`hsiseg.training.unknown_tissue`
    chooses it; and the fitted scores."""
    training = annotated_outputs(model, data.train_images, device, autocast_dtype)
    scores = fit_scores(config.ood_scores, training, card.model.classes)
    default, calibration = config.unknown_tissue(strokes_held_out=bool(data.held_out))
    crossed: dict[str, OodScore] = {}
    names = [name for name, score in scores.items() if cross_fittable(score)]
    if calibration == "cross-fitted" and names:
        crossed, out_of_fold = cross_fitted(model, names, [data.train_images, data.validation], card.model.classes,
                                            device, config.seed, autocast_dtype)  # fmt: skip
        scores.update(crossed)  # fitted on every annotated pixel
    held_out = map_values(model, {n: s for n, s in scores.items() if n not in crossed}, [data.validation],
                          annotated, device, autocast_dtype)  # fmt: skip
    reference = map_values(model, scores, [data.train_images, data.validation], reference_sample, device,
                           autocast_dtype)  # fmt: skip
    found = calibrate({n: s for n, s in scores.items() if n not in crossed}, held_out, reference, config.ood_keep)
    if crossed:
        found.update(calibrate(crossed, out_of_fold, reference, config.ood_keep, method="cross-fitted"))
    calibrations = {name: found[name] for name in scores if name in found}  # the configured order
    ood = OodSettings(default=default_score(default, calibrations), scores=calibrations)
    validation = annotated_outputs(model, data.validation, device, autocast_dtype)
    temperature = fit_temperature(validation.logits, validation.labels, card.model.classes)
    update = {"ood": ood, "probability_calibration": temperature}
    return card.model_copy(update=update), {name: scores[name] for name in calibrations}


def default_score(wanted: str | None, calibrations: dict) -> str | None:
    """``wanted`` when it could be calibrated (feature scores need a network with features), else the first
    calibrated score."""
    if wanted in calibrations:
        return wanted
    return next(iter(calibrations), None)


def trained_classes(targets: list[np.ndarray], tree) -> list[str]:
    """Leaves with annotated pixels in the target maps."""
    codes = np.unique(np.concatenate([t.ravel() for t in targets]))
    return [tree.leaves[c] for c in codes if 0 <= c < tree.num_leaves]
