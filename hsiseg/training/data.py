"""What training reads: the split into training and held-out strokes, batches of pixels or crops."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from hsiseg.annotations import UNLABELLED
from hsiseg.dataset.pixel_batches import PixelBatches
from hsiseg.dataset.spec import DataSpec
from hsiseg.dataset.strokes import Stroke, hold_out_strokes
from hsiseg.dataset.torch_datasets import Augmentation, SpecDataset
from hsiseg.models import network_of, pixelwise_training
from hsiseg.spectral import Preprocessing
from hsiseg.training.config import TrainConfig


@dataclass
class TrainingData:
    """What training reads: the stream of steps, the training split itself, its whole images with the training
    targets (to fit the unknown-tissue scores), the validation images (None for the refit, which validates
    nothing), and the strokes held out of training for validation (per sample id; empty when the splits share
    no image)."""

    steps: SpecDataset | PixelBatches  # what a round iterates: crops, or batches of annotated pixels
    train_set: SpecDataset
    train_images: SpecDataset
    validation: SpecDataset | None
    held_out: dict[str, list[Stroke]]

    def validation_pixels(self) -> int:
        """Annotated pixels in the validation images."""
        return annotated_pixels(self.validation) if self.validation is not None else 0


def annotated_pixels(dataset: SpecDataset) -> int:
    """Annotated pixels of every sample of ``dataset``."""
    return sum(int((dataset.sample(i).target != UNLABELLED).sum()) for i in range(len(dataset.sample_ids)))


def network_preprocessing(spec: DataSpec, fold: int) -> Preprocessing:
    """The spec's preprocessing with statistics fitted on the training split and the wavelength grid the
    network will expect from every future cube."""
    preprocessing = spec.fitted_preprocessing(fold)
    if preprocessing.wavelengths is None:
        first = spec.read_cube(spec.split("train", fold)[0])
        preprocessing = preprocessing.model_copy(update={"wavelengths": first.wavelengths.tolist()})
    return preprocessing


def build_training_data(
    spec: DataSpec, config: TrainConfig, preprocessing: Preprocessing, world_size: int = 1, final: bool = False
) -> TrainingData:
    """Training crops and validation images of ``config.fold``; where the training and validation splits share
    images, a seeded share of each class's strokes is moved from training to validation. ``final``: train on
    every annotated pixel of the training and validation images (the refit)."""
    train_ids, val_ids = spec.split("train", config.fold), spec.split("val", config.fold)
    train_targets, val_targets, held_out = {}, {}, {}
    for sample_id in sorted(set(train_ids) & set(val_ids)) if not final else []:
        split = hold_out_strokes(spec.read_annotation(sample_id), config.validation_strokes, config.seed, sample_id)
        train_targets[sample_id], val_targets[sample_id] = split.train, split.validation
        held_out[sample_id] = split.held_out
    per_round = config.validate_every * world_size
    train_set = SpecDataset(
        spec, "train", config.fold, "patches", config.patch_size, per_round * config.batch_size,
        augmentation=Augmentation(), seed=config.seed, preprocessing=preprocessing, targets=train_targets,
        class_balance=config.class_balance, sample_ids=list(dict.fromkeys(train_ids + val_ids)) if final else None,
    )  # fmt: skip
    if final:
        return TrainingData(train_set, train_set, train_set.whole_images(), None, held_out)
    validation = SpecDataset(spec, "val", config.fold, "full", preprocessing=preprocessing, targets=val_targets)
    return TrainingData(train_set, train_set, train_set.whole_images(), validation, held_out)


def pixel_steps(train_set: SpecDataset, config: TrainConfig, world_size: int = 1) -> PixelBatches:
    """Steps of annotated pixels (for networks trained pixel by pixel), with spectral augmentation only."""
    spectral_only = Augmentation(flips=False, rotations=False)
    per_round = config.validate_every * world_size
    return PixelBatches(train_set, config.pixels_per_step, per_round, config.class_balance, spectral_only, config.seed)


def for_network(data: TrainingData, model: nn.Module, config: TrainConfig, world_size: int = 1) -> TrainingData:
    """``data`` as ``model`` trains on it: steps of annotated pixels for a network trained pixel by pixel
    (:func:`hsiseg.models.pixelwise_training`), the crops of :func:`build_training_data` otherwise."""
    if not pixelwise_training(model):
        return data
    return replace(data, steps=pixel_steps(data.train_set, config, world_size))


def fit_input_statistics(model: nn.Module, steps: SpecDataset | PixelBatches) -> None:
    """Let a network that standardises its input learn the statistics of the annotated training spectra (of
    pixel steps; networks trained on crops learn none)."""
    if not isinstance(steps, PixelBatches):
        return
    network_of(model).fit_input_statistics(torch.from_numpy(steps.spectra))
