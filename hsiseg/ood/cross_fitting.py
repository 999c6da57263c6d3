"""Cross-fitted thresholds for the input-space unknown-tissue scores: every stroke calibrates, as one never seen.

Held-out strokes calibrate a threshold on 25% of each class's strokes: with a small stroke budget that is one
or two strokes per class, and the promise ("keep 95% of known tissue") was measured as 80% kept on a real
scene (``benchmarks/experiment_calibration.py``). Cross-fitting uses every stroke instead:

1. every annotated pixel of the training and validation targets (their union per image) gets a fold
   (:func:`hsiseg.dataset.strokes.subject_folds`): where the images come from several subjects (patients,
   surgeries), the fold of its subject, so that a fold is scored as a new patient will be; from a single
   subject (one scene), the fold of its stroke (5 folds, each class's strokes dealt round-robin);
2. for each fold, the score is fitted on the other folds' pixels and its map (with the network's spatial
   context, as prediction computes it) is read at the fold's pixels: every annotated pixel gets a value from a
   score that never saw its stroke;
3. the threshold is the ``1 - keep`` quantile of these out-of-fold values (:func:`~hsiseg.ood.calibration.calibrate`
   with ``method="cross-fitted"``), and the score kept in the card is fitted on every annotated pixel.

Only scores that read the input spectra alone qualify (``spectral_mahalanobis``, ``spectral_knn``): a score on
the network's features would need the features of strokes the *network* never trained on, i.e. one training
per fold. Measured on four real scenes, the threshold then keeps its promise on average in 16 of 16 cases
against 6 of 16 for held-out strokes, at the cost of flagging less than promised; with folds by surgery on the
demo, in 4 of 4 cases against 2 of 4 for a validation surgery, flagging 0.5-1.5% for a 5% promise
(docs/unknown-tissue.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from hsiseg.dataset.strokes import subject_folds
from hsiseg.labels import UNLABELLED
from hsiseg.ood.base import OodScore, PixelOutputs
from hsiseg.ood.calibration import fit_scores, image_outputs
from hsiseg.ood.maps import pixel_outputs, score_maps

FOLDS = 5


def cross_fittable(score: OodScore) -> bool:
    """Whether the score reads the input spectra alone (its fit then does not involve the network)."""
    return score.spaces == ("inputs",)


def cross_fitted(
    model: nn.Module, names: list[str], datasets: list, num_leaves: int, device: torch.device, seed: int = 0,
    autocast_dtype=None,
) -> tuple[dict[str, OodScore], dict[str, np.ndarray]]:  # fmt: skip
    """The scores ``names`` fitted on every annotated pixel of the full-image ``datasets`` (training images,
    validation images), and each one's out-of-fold map values at those pixels (see module docstring); a score
    that cannot be fitted on some fold (a fold holding every leaf pixel) is left out."""
    targets = union_targets(datasets)
    folds = subject_folds(targets, subjects_of(datasets), FOLDS, seed)
    pixels, pixel_folds = annotated_spectra(datasets, targets, folds)
    final = fit_scores(names, pixels, num_leaves)
    keyed: dict[str, OodScore] = {}  # "name/k" -> the score fitted without fold k
    usable = []
    for name in final:
        fitted = {k: fit_scores([name], pixels.select(torch.from_numpy(pixel_folds != k)), num_leaves)
                  for k in np.unique(pixel_folds).tolist()}  # fmt: skip
        if all(name in scores for scores in fitted.values()):
            keyed.update({f"{name}/{k}": scores[name] for k, scores in fitted.items()})
            usable.append(name)
    values: dict[str, list[np.ndarray]] = {name: [] for name in usable}
    for sample_id, _, logits, features, inputs in image_outputs(model, datasets, device, autocast_dtype):
        shape = (int(logits.shape[1]), int(logits.shape[2]))
        maps = score_maps(model, keyed, pixel_outputs(logits, features, inputs), features, shape)
        for key, score_map in maps.items():
            name, k = key.rsplit("/", 1)
            values[name].append(score_map.numpy()[folds[sample_id] == int(k)].astype(np.float64))
    return {name: final[name] for name in usable}, {name: np.concatenate(parts) for name, parts in values.items()}


def union_targets(datasets: Iterable) -> dict[str, np.ndarray]:
    """(H, W) annotated codes per sample id over every dataset (an image's training and held-out strokes)."""
    targets: dict[str, np.ndarray] = {}
    for dataset in datasets:
        for index, sample_id in enumerate(dataset.sample_ids):
            target = np.asarray(dataset.sample(index).target)
            known = targets.get(sample_id)
            targets[sample_id] = target.copy() if known is None else np.where(known != UNLABELLED, known, target)
    return targets


def subjects_of(datasets: Iterable) -> dict[str, str]:
    """Sample id -> subject (patient, surgery) of every sample of the datasets, from their data spec."""
    return {sample_id: dataset.spec.samples[sample_id].subject for dataset in datasets
            for sample_id in dataset.sample_ids}  # fmt: skip


def annotated_spectra(
    datasets: Iterable, targets: dict[str, np.ndarray], folds: dict[str, np.ndarray]
) -> tuple[PixelOutputs, np.ndarray]:
    """The input spectra and codes of every annotated pixel (no logits: input-space scores read none), and
    each pixel's fold, (P,) in the same order."""
    spectra, codes, pixel_folds = [], [], []
    for sample_id, image in _each_image(datasets):
        chosen = targets[sample_id] != UNLABELLED
        spectra.append(torch.from_numpy(np.ascontiguousarray(image[chosen])).float())
        codes.append(torch.from_numpy(targets[sample_id][chosen].astype(np.int64)))
        pixel_folds.append(folds[sample_id][chosen])
    inputs = torch.cat(spectra)
    return PixelOutputs(torch.zeros(len(inputs), 1), None, inputs, torch.cat(codes)), np.concatenate(pixel_folds)


def _each_image(datasets: Iterable) -> Iterator[tuple[str, np.ndarray]]:
    """(sample id, (H, W, B) preprocessed image) of every sample, each sample id once."""
    seen = set()
    for dataset in datasets:
        for index, sample_id in enumerate(dataset.sample_ids):
            if sample_id not in seen:
                seen.add(sample_id)
                yield sample_id, dataset.sample(index).image
