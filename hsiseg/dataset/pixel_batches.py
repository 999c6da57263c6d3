"""Training batches of annotated pixels, for networks that see one pixel at a time while training.

A per-pixel network's output at a pixel depends on that pixel's spectrum only, so a forward pass over a whole
image with the loss on its annotated pixels computes exactly what a forward pass over the annotated pixels
alone computes, at the cost of every unannotated pixel (97% of an Indian Pines image at 3% scribbles).
:class:`PixelBatches` gathers the annotated spectra of a training split once and serves each step a batch of
``pixels_per_step`` of them, drawn with class-balanced weights
(:func:`~hsiseg.dataset.torch_datasets.class_balanced_weights`) and augmented spectrally (per-pixel scale
and noise; geometry means nothing to one pixel).

Items: ``image`` (B, 1, P) float32 (a 1 x P "image", so every loss, Dice-style ones included, sees one image
of P pixels), ``target`` (1, P) int64, ``index`` (P,) the sample each pixel comes from. Memory: the annotated
spectra, P_annotated x B float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hsiseg.annotations import UNLABELLED
from hsiseg.dataset.torch_datasets import Augmentation, SpecDataset, class_balanced_weights
from hsiseg.errors import HsisegError


class PixelBatches(Dataset):
    """``steps`` batches per epoch (round) of annotated pixels of ``source`` (see module docstring)."""

    def __init__(
        self,
        source: SpecDataset,
        pixels_per_step: int,
        steps: int,
        class_balance: float = 1.0,
        augmentation: Augmentation | None = None,
        seed: int = 0,
    ) -> None:
        if pixels_per_step < 1 or steps < 1:
            raise HsisegError(f"pixels_per_step and steps must be >= 1, got {pixels_per_step} and {steps}")
        spectra, codes, owners = [], [], []
        for index in range(len(source.sample_ids)):
            sample = source.sample(index)
            annotated = sample.target != UNLABELLED
            spectra.append(sample.image[annotated])
            codes.append(sample.target[annotated])
            owners.append(np.full(int(annotated.sum()), index))
        self.spectra = np.concatenate(spectra).astype(np.float32, copy=False)  # (P_annotated, B)
        self.codes = np.concatenate(codes).astype(np.int64)
        self.owners = np.concatenate(owners)
        if not self.codes.size:
            raise HsisegError(f"{source.spec.path}: the training split has no annotated pixel to train on")
        weights = class_balanced_weights(self.codes, class_balance)
        self.probabilities = weights / weights.sum()
        self.sample_ids = source.sample_ids
        self.pixels_per_step, self.steps = int(pixels_per_step), int(steps)
        self.augmentation = augmentation
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Change the batch stream (call once per round)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, item: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.epoch, item])
        chosen = rng.choice(self.codes.size, size=self.pixels_per_step, p=self.probabilities)
        spectra = self.spectra[chosen][None]  # (1, P, B)
        if self.augmentation is not None:
            spectra, _ = self.augmentation(spectra, [], rng)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(spectra.transpose(2, 0, 1))),
            "target": torch.from_numpy(self.codes[chosen][None]),
            "index": torch.from_numpy(self.owners[chosen]),
        }
