"""Fitting and calibrating the unknown-tissue scores of a trained network.

- :func:`annotated_outputs`: the network's logits and penultimate features at the annotated pixels of whole
  images (what prediction sees: the spatial context included).
- :func:`fit_scores`: every requested score, the feature-space ones fitted on the *training* pixels.
- :func:`calibrate`: each score's threshold is the ``(1 - keep)`` quantile of its values on *held-out*
  annotated pixels (validation strokes or the validation split; never training pixels), so ``keep`` of the
  known tissue is kept. Also recorded: the share of training pixels the threshold keeps.
- :func:`transfer`: a refit network has trained on every annotated pixel, so none is held out. The validated
  network's threshold is expressed in robust units of its own training pixels' scores (offset from their
  median in interquartile ranges); the refit network's threshold lies at the same offset from its training
  pixels' median. The train-versus-held-out gap measured on the validated network carries over, also when the
  threshold lies below every training pixel (as for ``knn``, whose bank holds training pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hsiseg.card import OodCalibration
from hsiseg.labels import UNLABELLED
from hsiseg.models import AnySize
from hsiseg.ood import OodScore, build_score


@dataclass
class PixelOutputs:
    """Network outputs at P annotated pixels."""

    logits: torch.Tensor  # (P, C) float32
    features: torch.Tensor | None  # (P, F) float32, None for networks without penultimate features
    targets: torch.Tensor  # (P,) int64 target codes (leaves, or internal nodes for partial labels)

    def leaf_pixels(self, num_leaves: int) -> PixelOutputs:
        keep = self.targets < num_leaves
        features = self.features[keep] if self.features is not None else None
        return PixelOutputs(self.logits[keep], features, self.targets[keep])


def forward_features(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (N, C, H, W) and penultimate features (N, F, H, W) or None, of a model built by ``build_model``."""
    if isinstance(model, AnySize) and model.has_features:
        return model.forward_features(images)
    return model(images), None


@torch.no_grad()
def annotated_outputs(model: nn.Module, dataset, device: torch.device, autocast_dtype=None) -> PixelOutputs:
    """Logits, features and targets at the annotated pixels of every image of a full-image ``dataset``
    (:class:`~hsiseg.data.SpecDataset` in ``full`` mode), the model in ``eval()`` mode."""
    was_training = model.training
    model.eval()
    logits, features, targets = [], [], []
    for index in range(len(dataset)):
        item = dataset[index]
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            image_logits, image_features = forward_features(model, item["image"][None].to(device))
        target = item["target"].flatten()
        keep = target != UNLABELLED
        logits.append(image_logits[0].flatten(1).T[keep.to(device)].float().cpu())
        if image_features is not None:
            features.append(image_features[0].flatten(1).T[keep.to(device)].float().cpu())
        targets.append(target[keep].long())
    model.train(was_training)
    return PixelOutputs(torch.cat(logits), torch.cat(features) if features else None, torch.cat(targets))


def fit_scores(names: list[str], training: PixelOutputs, num_leaves: int) -> dict[str, OodScore]:
    """The scores ``names`` (with default options), fitted on the leaf-labelled training pixels; feature scores
    are left out when the network has no features or there is no leaf pixel."""
    leaves = training.leaf_pixels(num_leaves)
    scores = {}
    for name in names:
        score = build_score(name)
        if score.needs_features:
            if leaves.features is None or not leaves.targets.numel():
                continue
            score.fit(leaves.features, leaves.targets)
        scores[name] = score
    return scores


def _values(score: OodScore, outputs: PixelOutputs) -> np.ndarray:
    return score(outputs.logits, outputs.features).numpy().astype(np.float64)


def calibrate(
    scores: dict[str, OodScore], held_out: PixelOutputs, training: PixelOutputs, keep: float
) -> dict[str, OodCalibration]:
    """Thresholds that keep ``keep`` of the held-out pixels, for every score (none without held-out pixels)."""
    if not held_out.targets.numel():
        return {}
    calibrations = {}
    for name, score in scores.items():
        threshold = float(np.quantile(_values(score, held_out), 1 - keep))
        values = _values(score, training) if training.targets.numel() else _values(score, held_out)
        calibrations[name] = OodCalibration(
            options=score.options(), threshold=threshold, keep=keep, method="held-out",
            held_out_pixels=int(held_out.targets.numel()), training_keep=float((values >= threshold).mean()),
            training_offset=(threshold - np.median(values)) / _spread(values),
        )  # fmt: skip
    return calibrations


def transfer(
    scores: dict[str, OodScore], calibrations: dict[str, OodCalibration], training: PixelOutputs
) -> dict[str, OodCalibration]:
    """Thresholds for a refit network at the validated network's ``training_offset`` from the median of its own
    training pixels' scores (see module docstring); scores without a validated calibration are left out."""
    transferred = {}
    for name, score in scores.items():
        if name not in calibrations or not training.targets.numel():
            continue
        validated = calibrations[name]
        values = _values(score, training)
        threshold = float(np.median(values) + validated.training_offset * _spread(values))
        kept = float((values >= threshold).mean())
        transferred[name] = validated.model_copy(
            update={"threshold": threshold, "method": "transferred", "training_keep": kept}
        )
    return transferred


def _spread(values: np.ndarray) -> float:
    """Interquartile range (a small positive number when the scores are constant)."""
    low, high = np.quantile(values, [0.25, 0.75])
    return float(max(high - low, 1e-12 * max(1.0, abs(high))))
