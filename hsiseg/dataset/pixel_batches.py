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
        spectra, codes, owners = [], [], []
        for index in range(len(source.sample_ids)):
            sample = source.sample(index)
            annotated = sample.target != UNLABELLED
            spectra.append(sample.image[annotated])
            codes.append(sample.target[annotated])
            owners.append(np.full(int(annotated.sum()), index))
        if not sum(c.size for c in codes):
            raise HsisegError(f"{source.spec.path}: the training split has no annotated pixel to train on")
        self._setup(np.concatenate(spectra), np.concatenate(codes), np.concatenate(owners), source.sample_ids,
                    pixels_per_step, steps, class_balance, augmentation, seed)  # fmt: skip

    @classmethod
    def from_arrays(
        cls, spectra: np.ndarray, codes: np.ndarray, owners: np.ndarray, sample_ids: list[str], pixels_per_step: int,
        steps: int, class_balance: float = 1.0, augmentation: Augmentation | None = None, seed: int = 0,
    ) -> PixelBatches:  # fmt: skip
        """Batches of annotated pixels already gathered: ``spectra`` (P, B), their target ``codes`` (P,) and the
        index into ``sample_ids`` of the image each comes from, ``owners`` (P,)."""
        if not codes.size:
            raise HsisegError("pixel batches: no annotated pixel to train on")
        batches = cls.__new__(cls)
        batches._setup(spectra, codes, owners, sample_ids, pixels_per_step, steps, class_balance, augmentation, seed)
        return batches

    def _setup(
        self, spectra: np.ndarray, codes: np.ndarray, owners: np.ndarray, sample_ids: list[str], pixels_per_step: int,
        steps: int, class_balance: float, augmentation: Augmentation | None, seed: int,
    ) -> None:  # fmt: skip
        if pixels_per_step < 1 or steps < 1:
            raise HsisegError(f"pixels_per_step and steps must be >= 1, got {pixels_per_step} and {steps}")
        self.spectra = spectra.astype(np.float32, copy=False)  # (P_annotated, B)
        self.codes = codes.astype(np.int64)
        self.owners = owners
        weights = class_balanced_weights(self.codes, class_balance)
        self.probabilities = weights / weights.sum()
        self.sample_ids = sample_ids
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
