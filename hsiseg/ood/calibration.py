"""Fitting and calibrating the unknown-tissue scores of a trained network.

- :func:`network_outputs` / :func:`annotated_outputs`: logits, penultimate features and input spectra of whole
  images (what prediction sees: the spatial context included), and of their annotated pixels.
- :func:`fit_scores`: every requested score, the fitted ones on the *training* pixels.
- :func:`score_maps`: the (H, W) map of every score for one image, averaged with the network's spatial
  context where it has a parameter-free one (prediction uses the same function).
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

import numpy as np
import torch
from torch import nn

from hsiseg.card import OodCalibration
from hsiseg.labels import UNLABELLED
from hsiseg.models import AnySize, smooth_maps
from hsiseg.ood.base import OodScore, PixelOutputs, build_score

REFERENCE_PIXELS = 4096  # pixels per image in the transfer sample


def network_outputs(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (N, C, H, W) and penultimate features (N, F, H, W) or None, of a model built by ``build_model``."""
    if isinstance(model, AnySize) and model.has_features:
        return model.forward_features(images)
    return model(images), None


def pixel_outputs(logits: torch.Tensor, features: torch.Tensor | None, inputs: torch.Tensor | None) -> PixelOutputs:
    """Pixel-major outputs of one image: (C, H, W) logits, (F, H, W) features, (B, H, W) inputs (each may be
    None where no score needs it)."""

    def flat(values: torch.Tensor) -> torch.Tensor:
        return values.reshape(values.shape[0], -1).T.float()

    return PixelOutputs(flat(logits), None if features is None else flat(features), None if inputs is None else
                        flat(inputs))  # fmt: skip


@torch.no_grad()
def score_maps(
    model: nn.Module,
    scores: dict[str, OodScore],
    outputs: PixelOutputs,
    features: torch.Tensor | None,
    shape: tuple[int, int],
    invalid: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """(H, W) map of every score of one image's pixel ``outputs``, with the network's spatial context
    (:func:`hsiseg.models.smooth_maps`, guided by the image's (F, H, W) ``features``). Pixels marked in
    ``invalid`` (H, W) take no part in their neighbours' averages (a normalised, masked average)."""
    if not scores:
        return {}
    maps = per_pixel_maps(scores, outputs, shape)
    guide = None if features is None else features[None].float()
    smoothed = unmask(smooth_maps(model, masked(maps, invalid), guide), maps, invalid)
    return dict(zip(scores, smoothed[0], strict=True))


def per_pixel_maps(scores: dict[str, OodScore], outputs: PixelOutputs, shape: tuple[int, int]) -> torch.Tensor:
    """(1, K, H, W) every score of one image's pixel ``outputs``, before any spatial context."""
    return torch.stack([score(outputs).reshape(shape) for score in scores.values()])[None]


def masked(maps: torch.Tensor, invalid: torch.Tensor | None) -> torch.Tensor:
    """What the context averages so that ``invalid`` (H, W) pixels take no part: (1, K, H, W) maps as they are
    when every pixel is valid, else (1, K + 1, H, W): the maps times the valid mask, then the mask itself."""
    if invalid is None or not invalid.any():
        return maps
    valid = (~invalid).float()[None, None]
    return torch.cat([maps * valid, valid], 1)


def unmask(averaged: torch.Tensor, maps: torch.Tensor, invalid: torch.Tensor | None) -> torch.Tensor:
    """The normalised masked average from the context's output of :func:`masked` (pixels with no valid
    neighbour keep their own value)."""
    if invalid is None or not invalid.any():
        return averaged
    weights = averaged[:, -1:]
    smoothed = averaged[:, :-1] / weights.clamp_min(1e-12)
    return torch.where(weights > 1e-6, smoothed, maps)


def _images(model: nn.Module, datasets: Iterable, device: torch.device, autocast_dtype=None):
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
    (:class:`~hsiseg.data.SpecDataset` in ``full`` mode)."""
    parts: list[PixelOutputs] = []
    for _, target, logits, features, inputs in _images(model, [dataset], device, autocast_dtype):
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
    for sample_id, target, logits, features, inputs in _images(model, datasets, device, autocast_dtype):
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
    scores: dict[str, OodScore], held_out: dict[str, np.ndarray], reference: dict[str, np.ndarray], keep: float
) -> dict[str, OodCalibration]:
    """Thresholds that keep ``keep`` of the ``held_out`` pixels' values, for every score (none without held-out
    pixels); ``reference``: the score's values on the transfer sample (:func:`reference_sample`)."""
    calibrations = {}
    for name, score in scores.items():
        if not held_out[name].size:
            continue
        threshold = float(np.quantile(held_out[name], 1 - keep))
        calibrations[name] = OodCalibration(
            options=score.options(), threshold=threshold, keep=keep, method="held-out",
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
            update = {"threshold": threshold, "method": "transferred", "reference_low": _low(values)}
            transferred[name] = calibrations[name].model_copy(update=update)
    return transferred


def _low(values: np.ndarray) -> float | None:
    """The 5% quantile of a score's values on the transfer sample (None without values)."""
    return float(np.quantile(values, 0.05)) if values.size else None
