"""Torch datasets over a data-spec split: annotated-biased patches for training, full images for validation.

With sparse scribbles a uniform random crop is mostly empty, so a patch is centred on an annotated pixel
with probability ``annotated_bias`` (else anywhere); the annotated centre is drawn with class-balanced
weights (:func:`class_balanced_weights`), so rare classes get their share. Augmentation (training only)
flips and rotates image and labels together by multiples of 90 degrees, so labels never leave their
pixels, and scales each pixel's spectrum slightly and adds noise to the image only.

Samples are read, preprocessed (``spec.preprocessing``) and cached once: in memory (``cache="memory"``,
filled before workers fork, shared copy-on-write), or as float16/float32 HDF5 files in a folder
(``cache=Path``; reused across runs, keyed by the preprocessing and the source file's size and mtime).

Items are dicts: ``image`` (B, h, w) float32, ``target`` (h, w) int64 (-100 = unlabelled), ``index`` (the
sample's position in ``dataset.sample_ids``), and in full-image mode ``truth`` (h, w) int64 when the spec
has dense ground truth (else all -100).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hsiseg.annotations import UNLABELLED
from hsiseg.dataset.spec import DataSpec
from hsiseg.errors import HsisegError
from hsiseg.io import Cube, read_cube, write_cube
from hsiseg.spectral import Preprocessing


@dataclass
class LoadedSample:
    """A preprocessed sample: image (H, W, B) float32, sparse target and optional dense truth (H, W) int32."""

    sample_id: str
    image: np.ndarray
    target: np.ndarray
    truth: np.ndarray | None


@dataclass
class Augmentation:
    """Training augmentation; geometric transforms act on image and labels alike, spectral ones on the image."""

    flips: bool = True
    rotations: bool = True
    spectral_scale: float = 0.05  # std of a per-pixel multiplicative factor on the spectrum
    noise: float = 0.01  # std of additive noise, relative to the image's mean absolute value
    noise_bank_size: int = 1 << 22  # Gaussian values drawn once; each image takes a random slice (8x cheaper)

    def _noise(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """``size`` standard normal values: a random slice of a bank drawn once (drawing fresh Gaussians for
        every patch costs more than the rest of the data pipeline)."""
        bank = getattr(self, "_bank", None)
        if bank is None or bank.size < size:
            bank = np.random.default_rng(0).standard_normal(max(self.noise_bank_size, 2 * size), dtype=np.float32)
            self._bank = bank
        start = int(rng.integers(bank.size - size + 1))
        return bank[start : start + size]

    def __call__(
        self, image: np.ndarray, labels: list[np.ndarray], rng: np.random.Generator
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """image (H, W, B), labels [(H, W), ...] -> augmented copies."""
        if self.flips and rng.random() < 0.5:
            image, labels = image[:, ::-1], [label[:, ::-1] for label in labels]
        if self.rotations:
            turns = int(rng.integers(4))
            image, labels = np.rot90(image, turns), [np.rot90(label, turns) for label in labels]
        image = np.array(image, dtype=np.float32, order="C")  # always a copy: never change the caller's array
        if self.spectral_scale:
            image *= (1 + self.spectral_scale * rng.standard_normal(image.shape[:2], dtype=np.float32))[..., None]
        if self.noise:
            scale = float(np.abs(image).mean()) or 1.0
            image += (self.noise * scale) * self._noise(image.size, rng).reshape(image.shape)
        return image, [np.ascontiguousarray(label) for label in labels]


class SpecDataset(Dataset):
    """Patches or full images of one split of a :class:`DataSpec`.

    Parameters
    ----------
    spec: the data spec.
    split: ``train``, ``val`` or ``test``; ``fold`` picks the fold.
    mode: ``patches`` (random annotated-biased crops, ``patches_per_epoch`` items) or ``full`` (one item per image).
    patch_size: side of square patches (images smaller than it are padded with zeros / unlabelled).
    annotated_bias: probability that a patch is centred on an annotated pixel.
    augmentation: an :class:`Augmentation` (patch mode only), or None.
    cache: ``"memory"``, ``"none"`` or a folder for preprocessed HDF5 files.
    seed: with :meth:`set_epoch`, makes the patch stream reproducible (and different per epoch).
    preprocessing: default: the spec's, with z-score statistics fitted on the fold's training split.
    targets: sample id -> (H, W) target replacing the spec's annotations (e.g. after a stroke hold-out).
    class_balance: exponent of the class-balanced choice of annotated patch centres (0: by area).
    sample_ids: these samples instead of the split's (e.g. training and validation images together).
    """

    def __init__(
        self,
        spec: DataSpec,
        split: str,
        fold: int = 0,
        mode: Literal["patches", "full"] = "patches",
        patch_size: int = 64,
        patches_per_epoch: int | None = None,
        annotated_bias: float = 0.9,
        augmentation: Augmentation | None = None,
        cache: str | Path = "memory",
        seed: int = 0,
        preprocessing: Preprocessing | None = None,
        on_load: Callable[[str], None] | None = None,
        targets: Mapping[str, np.ndarray] | None = None,
        class_balance: float = 0.0,
        sample_ids: list[str] | None = None,
    ) -> None:
        self.spec = spec
        self.preprocessing = preprocessing if preprocessing is not None else spec.fitted_preprocessing(fold)
        self.sample_ids = list(sample_ids) if sample_ids is not None else spec.split(split, fold)
        if not self.sample_ids:
            raise HsisegError(f"{spec.path}: split {split!r} (fold {fold}) is empty")
        self.mode = mode
        self.patch_size = int(patch_size)
        self.annotated_bias = float(annotated_bias)
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0
        self.targets = dict(targets or {})
        self.class_balance = float(class_balance)
        self._centres: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.cache = cache
        self._memory: dict[int, LoadedSample] = {}
        self.patches_per_epoch = patches_per_epoch or 8 * len(self.sample_ids)
        if cache == "memory":
            for index, sample_id in enumerate(self.sample_ids):
                self._memory[index] = self._load(index)
                if on_load is not None:
                    on_load(sample_id)
            annotated = sum(int((s.target != UNLABELLED).sum()) for s in self._memory.values())
            if mode == "patches" and annotated == 0:
                raise HsisegError(f"{spec.path}: split {split!r} (fold {fold}) has no annotated pixel to train on")

    def whole_images(self) -> SpecDataset:
        """The same samples and targets as one full-image item each (shares the loaded samples)."""
        view = copy.copy(self)
        view.mode = "full"
        return view

    # --- loading -----------------------------------------------------------------------------------------

    @property
    def num_bands(self) -> int:
        return self.sample(0).image.shape[-1]

    def sample(self, index: int) -> LoadedSample:
        """The preprocessed sample at ``index`` (from the cache when there is one)."""
        if index in self._memory:
            return self._memory[index]
        return self._load(index)

    def _load(self, index: int) -> LoadedSample:
        sample_id = self.sample_ids[index]
        cube = self._cached_cube(sample_id)
        target = self.targets.get(sample_id)
        if target is None:
            target = self.spec.read_annotation(sample_id, cube.shape[:2])
        truth = self.spec.read_truth(sample_id, cube.shape[:2])
        for kind, label_map in (("annotation", target), ("truth", truth)):
            if label_map is not None and label_map.shape != cube.shape[:2]:
                raise HsisegError(
                    f"{self.spec.path}: sample {sample_id!r}: its {kind} is {label_map.shape[0]} x "
                    f"{label_map.shape[1]} but its cube is {cube.shape[0]} x {cube.shape[1]}; fix the {kind} file "
                    "(hsiseg check lists every problem)"
                )
        return LoadedSample(sample_id, cube.data, target, truth)

    def _cached_cube(self, sample_id: str) -> Cube:
        if self.cache in ("memory", "none"):
            return self._preprocessed(sample_id)
        folder = Path(self.cache)
        source = self.spec.resolve(self.spec.samples[sample_id].cube)
        stat = source.stat()
        key = json.dumps(
            [str(source), stat.st_size, stat.st_mtime_ns, self.spec.preprocessing.model_dump()], sort_keys=True
        )
        path = folder / f"{sample_id}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.h5"
        if path.is_file():
            return read_cube(path)
        cube = self._preprocessed(sample_id)
        write_cube(path, cube)
        return cube

    def _preprocessed(self, sample_id: str) -> Cube:
        raw = self.spec.read_cube(sample_id)
        data, wavelengths = self.preprocessing.apply(raw.data, raw.wavelengths)
        return Cube(data, wavelengths, {"source": raw.meta.get("source", sample_id)})

    # --- items -------------------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Change the patch stream (call once per epoch, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.patches_per_epoch if self.mode == "patches" else len(self.sample_ids)

    def __getitem__(self, item: int) -> dict[str, Any]:
        if self.mode == "full":
            sample = self.sample(item)
            truth = sample.truth if sample.truth is not None else np.full(sample.target.shape, UNLABELLED)
            return _item(sample.image, sample.target, item, truth)
        rng = np.random.default_rng([self.seed, self.epoch, item])
        index = int(rng.integers(len(self.sample_ids)))
        sample = self.sample(index)
        image, target = self._crop(sample, self._annotated_centres(index), rng)
        if self.augmentation is not None:
            image, (target,) = self.augmentation(image, [target], rng)
        return _item(image, target, index)

    def _annotated_centres(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices of the annotated pixels of sample ``index`` and their class-balanced probabilities."""
        if index not in self._centres:
            target = self.sample(index).target.ravel()
            annotated = np.flatnonzero(target != UNLABELLED)
            weights = class_balanced_weights(target[annotated], self.class_balance)
            self._centres[index] = (annotated, weights / weights.sum() if annotated.size else weights)
        return self._centres[index]

    def _crop(
        self, sample: LoadedSample, centres: tuple[np.ndarray, np.ndarray], rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        height, width = sample.target.shape
        size = self.patch_size
        annotated, probabilities = centres
        if annotated.size and rng.random() < self.annotated_bias:
            row, column = divmod(int(rng.choice(annotated, p=probabilities)), width)
        else:
            row, column = int(rng.integers(height)), int(rng.integers(width))
        top = int(np.clip(row - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, max(height - size, 0)))
        left = int(np.clip(column - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, max(width - size, 0)))
        image = np.zeros((size, size, sample.image.shape[-1]), dtype=np.float32)
        target = np.full((size, size), UNLABELLED, dtype=np.int32)
        crop_h, crop_w = min(size, height), min(size, width)
        image[:crop_h, :crop_w] = sample.image[top : top + crop_h, left : left + crop_w]
        target[:crop_h, :crop_w] = sample.target[top : top + crop_h, left : left + crop_w]
        return image, target


def class_balanced_weights(codes: np.ndarray, balance: float) -> np.ndarray:
    """Sampling weight of each annotated pixel (codes (P,)): count(its class) ** -balance.

    ``balance`` 0 samples pixels uniformly (classes by area), 1 gives every class the same share, values in
    between temper the imbalance (0.5: a class with 100x the pixels is drawn 10x as often).
    """
    if codes.size == 0:
        return np.zeros(0)
    _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    relative = counts / counts.min()  # >= 1, so the weights stay in (0, 1]: no overflow for a large balance
    return relative[inverse].astype(np.float64) ** -float(balance)


def _item(image: np.ndarray, target: np.ndarray, index: int, truth: np.ndarray | None = None) -> dict[str, Any]:
    item = {
        "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
        "target": torch.from_numpy(target.astype(np.int64)),
        "index": index,
    }
    if truth is not None:
        item["truth"] = torch.from_numpy(truth.astype(np.int64))
    return item


def make_loader(
    dataset: SpecDataset, batch_size: int, workers: int = 0, shuffle: bool = False, device: str = "cpu"
) -> DataLoader:
    """A DataLoader with pinned memory on CUDA and persistent workers when there are any."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        pin_memory=device.startswith("cuda"),
        persistent_workers=workers > 0,
    )
