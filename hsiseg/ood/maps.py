"""Per-pixel outputs of a network on whole images, and the unknown-tissue score maps computed from them with the
network's spatial context: what calibration (:mod:`hsiseg.ood.calibration`) and prediction
(:mod:`hsiseg.predict.inference`) share, so both see the same maps."""

from __future__ import annotations

import torch
from torch import nn

from hsiseg.models import AnySize, smooth_maps
from hsiseg.ood.base import OodScore, PixelOutputs


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
