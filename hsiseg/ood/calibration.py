"""Fitting and calibrating the unknown-tissue scores of a trained network.

- :func:`annotated_outputs`: logits, penultimate features and input spectra of the annotated pixels of whole
  images (what prediction sees: the spatial context included; :func:`hsiseg.ood.maps.network_outputs`).
- :func:`fit_scores`: every requested score, the fitted ones on the *training* pixels.
- :func:`hsiseg.ood.maps.score_maps`: the (H, W) map of every score for one image, averaged with the network's
  spatial context where it has a parameter-free one (prediction uses the same function).
- :func:`calibrate`: each score's threshold is the ``(1 - keep)`` quantile of its map values on *held-out*
  annotated pixels (validation strokes or the validation split; never training pixels), so ``keep`` of the
  known tissue is kept.
- :func:`transfer`: a refit network has trained on every annotated pixel, so none is held out. Its threshold
  is set so that it flags the same share of a fixed sample of the training images' pixels (annotated or
  not: the tissue of the scene, which neither network was fitted to) as the validated network's threshold
  flagged (:func:`reference_values`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from typing import Literal

import numpy as np
import torch
from torch import nn

from hsiseg.labels import UNLABELLED
from hsiseg.models.card import OodCalibration
from hsiseg.ood.base import OodScore, PixelOutputs, build_score
from hsiseg.ood.maps import network_outputs, pixel_outputs, score_maps

REFERENCE_PIXELS = 4096  # pixels per image in the transfer sample


def image_outputs(model: nn.Module, datasets: Iterable, device: torch.device, autocast_dtype=None):
    """(sample id, target (H, W), logits, features, inputs) of every image of full-image datasets, each
    sample id once, in eval mode."""
    seen = set()
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for dataset in datasets:
            for index in range(len(dataset)):
                sample_id = dataset.sample_ids[index]
                if sample_id in seen:
                    continue
                seen.add(sample_id)
                item = dataset[index]
                image = item["image"][None].to(device)
                with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    logits, features = network_outputs(model, image)
                features = None if features is None else features[0].float().cpu()
                yield sample_id, item["target"], logits[0].float().cpu(), features, item["image"]
    model.train(was_training)


def annotated_outputs(model: nn.Module, dataset, device: torch.device, autocast_dtype=None) -> PixelOutputs:
    """Logits, features, inputs and targets at the annotated pixels of every image of a full-image ``dataset``
    (:class:`~hsiseg.dataset.torch_datasets.SpecDataset` in ``full`` mode)."""
    parts: list[PixelOutputs] = []
    for _, target, logits, features, inputs in image_outputs(model, [dataset], device, autocast_dtype):
        keep = target.flatten() != UNLABELLED
        outputs = pixel_outputs(logits, features, inputs)
        parts.append(PixelOutputs(outputs.logits, outputs.features, outputs.inputs, target.flatten().long())
                     .select(keep))  # fmt: skip
    return PixelOutputs.concatenate(parts)


def map_values(
    model: nn.Module,
    scores: dict[str, OodScore],
    datasets: Iterable,
    pick: Callable,
    device: torch.device,
    autocast_dtype=None,
) -> dict[str, np.ndarray]:
    """Every score's map values at the pixels ``pick(sample_id, target)`` chooses ((H, W) bool) of every image
    of full-image ``datasets`` (each sample once)."""  # fmt: skip
    values: dict[str, list[np.ndarray]] = {name: [] for name in scores}
    needs_inputs = any("inputs" in score.spaces for score in scores.values())
    for sample_id, target, logits, features, inputs in image_outputs(model, datasets, device, autocast_dtype):
        outputs = pixel_outputs(logits, features, inputs if needs_inputs else None)
        maps = score_maps(model, scores, outputs, features, target.shape)
        chosen = pick(sample_id, target)
        for name, score_map in maps.items():
            values[name].append(score_map.numpy()[chosen].astype(np.float64))
    return {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in values.items()}


def annotated(sample_id: str, target: torch.Tensor) -> np.ndarray:
    """Pick the annotated pixels."""
    return (target != UNLABELLED).numpy()


def reference_sample(sample_id: str, target: torch.Tensor) -> np.ndarray:
    """Pick a fixed sample of :data:`REFERENCE_PIXELS` pixels of an image, the same for every network."""
    height, width = target.shape
    rng = np.random.default_rng(zlib.crc32(sample_id.encode()))
    chosen = np.zeros(height * width, dtype=bool)
    chosen[rng.choice(height * width, min(REFERENCE_PIXELS, height * width), replace=False)] = True
    return chosen.reshape(height, width)


def fit_scores(names: list[str], training: PixelOutputs, num_leaves: int) -> dict[str, OodScore]:
    """The scores ``names`` (with default options), fitted on the leaf-labelled training pixels; scores in a
    space the network does not provide (features of an smp network) and fitted scores without a leaf pixel
    are left out."""
    leaves = training.leaf_pixels(num_leaves)
    scores = {}
    for name in names:
        score = build_score(name)
        missing = any(getattr(leaves, space) is None for space in score.spaces)
        if missing or (score.fitted and not leaves.labels.numel()):
            continue
        if score.fitted:
            score.fit(leaves)
        scores[name] = score
    return scores


def calibrate(
    scores: dict[str, OodScore], held_out: dict[str, np.ndarray], reference: dict[str, np.ndarray], keep: float,
    method: Literal["held-out", "cross-fitted"] = "held-out",
) -> dict[str, OodCalibration]:  # fmt: skip
    """Thresholds that keep ``keep`` of the ``held_out`` pixels' values, for every score (none without held-out
    pixels); ``reference``: the score's values on the transfer sample (:func:`reference_sample`); ``method``:
    where the values come from (held-out strokes, or out-of-fold values: :mod:`hsiseg.ood.cross_fitting`)."""
    calibrations = {}
    for name, score in scores.items():
        if not held_out[name].size:
            continue
        threshold = float(np.quantile(held_out[name], 1 - keep))
        calibrations[name] = OodCalibration(
            options=score.options(), threshold=threshold, keep=keep, method=method,
            held_out_pixels=int(held_out[name].size), reference_share=float((reference[name] < threshold).mean()),
            reference_low=_low(reference[name]),
        )  # fmt: skip
    return calibrations


def transfer(calibrations: dict[str, OodCalibration], reference: dict[str, np.ndarray]) -> dict[str, OodCalibration]:
    """Thresholds for a refit network that flag the validated network's ``reference_share`` of the transfer
    sample (see module docstring); scores without a validated calibration are left out."""
    transferred = {}
    for name, values in reference.items():
        if name in calibrations and values.size:
            threshold = float(np.quantile(values, calibrations[name].reference_share))
            update = {"threshold": threshold, "method": "transferred", "reference_low": _low(values),
                      "transferred_from": calibrations[name].origin}
            transferred[name] = calibrations[name].model_copy(update=update)
    return transferred


def _low(values: np.ndarray) -> float | None:
    """The 5% quantile of a score's values on the transfer sample (None without values)."""
    return float(np.quantile(values, 0.05)) if values.size else None
