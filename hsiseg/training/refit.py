"""The refit: a fresh network trained on every scribble for the best validated number of steps."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from hsiseg.dataset.spec import DataSpec
from hsiseg.models import build_model, pixelwise_training
from hsiseg.models.card import ModelCard, OodSettings, Refit
from hsiseg.models.checkpoint import (
    read_card,
    save_model,
)
from hsiseg.ood.calibration import (
    annotated_outputs,
    fit_scores,
    map_values,
    reference_sample,
    transfer,
)
from hsiseg.spectral import Preprocessing
from hsiseg.training.calibration import default_score, trained_classes
from hsiseg.training.config import TrainConfig
from hsiseg.training.data import build_training_data, fit_input_statistics, for_network
from hsiseg.training.devices import Distributed, seed_everything
from hsiseg.training.reporting import Reporter
from hsiseg.training.step import TrainingStep


def refit(
    spec: DataSpec,
    config: TrainConfig,
    preprocessing: Preprocessing,
    steps: int,
    device: torch.device,
    world: Distributed,
    checkpoints: Path,
    reporter: Reporter,
) -> nn.Module:
    """Train a fresh network on *all* scribbles (of the training and validation images, held-out strokes
    included) for the best validated number of ``steps``, with the same seed; saved as ``checkpoints/final.*``
    with the best checkpoint's card (validation metrics and unknown-tissue threshold come from the held-out
    pixels, as they must)."""
    seed_everything(config.seed)
    refit_config = replace(config, steps=steps, validate_every=steps)
    data = build_training_data(spec, refit_config, preprocessing, world.world_size, final=True)
    model = build_model(config.model, data.train_set.num_bands, spec.tree.num_leaves, **config.model_options)
    data = for_network(data, model, refit_config, world.world_size)
    if pixelwise_training(model):
        fit_input_statistics(model, data.steps)
    reporter.message(f"refit on all annotated pixels for {steps} steps (the best validated budget)")
    reporter.start(steps, 0)
    TrainingStep.create(model, data, refit_config, device, world).run_round(0, reporter)
    if world.main:
        best = read_card(checkpoints / "best.json")
        training = annotated_outputs(model, data.train_images, device)
        scores = fit_scores(list(best.ood.scores), training, spec.tree.num_leaves)
        calibrations = transfer(best.ood.scores, map_values(model, scores, [data.train_images], reference_sample,
                                                            device))  # fmt: skip
        card = best.model_copy(update={
            "refit": Refit(steps=steps, annotated_pixels=int(training.labels.numel())),
            "trained_classes": trained_classes([training.labels.numpy()], spec.tree),
            "ood": OodSettings(default=default_score(best.ood.default, calibrations), scores=calibrations),
        })  # fmt: skip
        save_model(checkpoints / "final", model, ModelCard.model_validate(card.model_dump()), scores)
    return model
