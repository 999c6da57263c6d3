"""An untrained network with the card and unknown-tissue score that training would write: what speed benchmarks
and tests of prediction need when the weights do not matter (no training run to wait for)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hsiseg.models import build_model
from hsiseg.models.card import ModelCard, NetworkConfig, OodCalibration, OodSettings
from hsiseg.ood import OodScore
from hsiseg.ood.calibration import fit_scores
from hsiseg.ood.maps import network_outputs, pixel_outputs
from hsiseg.spectral import Preprocessing
from hsiseg.tree import LabelTree


@dataclass
class Untrained:
    """A network with random weights (in eval mode), its card and its fitted unknown-tissue score."""

    model: nn.Module
    card: ModelCard
    scores: dict[str, OodScore]


def untrained(
    name: str, tree: LabelTree, wavelengths: Sequence[float], score: str = "mahalanobis", threshold: float = -1e9,
    options: dict[str, Any] | None = None, seed: int = 0,
) -> Untrained:  # fmt: skip
    """Build network ``name`` for ``len(wavelengths)`` bands and the leaves of ``tree`` (weights from ``seed``);
    fit ``score`` on the network's outputs for a random (1, bands, 64, 64) image with random leaf labels, as
    training fits it on scribbles; its calibration flags what scores below ``threshold`` (the default flags
    nothing)."""
    options = dict(options or {})
    bands = len(wavelengths)
    torch.manual_seed(seed)
    model = build_model(name, bands, tree.num_leaves, **options).eval()
    image = torch.rand(1, bands, 64, 64)
    with torch.no_grad():
        logits, features = network_outputs(model, image)
    outputs = pixel_outputs(logits[0], None if features is None else features[0], image[0])
    outputs.targets = torch.randint(tree.num_leaves, (outputs.logits.shape[0],))
    calibration = OodCalibration(threshold=threshold, keep=0.95, method="held-out", held_out_pixels=1,
                                 reference_share=0.05)  # fmt: skip
    card = ModelCard.create(
        tree, model=NetworkConfig(name=name, in_channels=bands, classes=tree.num_leaves, options=options,
                                  input_multiple=model.input_multiple),
        preprocessing=Preprocessing(wavelengths=[float(w) for w in wavelengths], normalization="l1"),
        trained_classes=tree.leaves, ood=OodSettings(default=score, scores={score: calibration}),
    )  # fmt: skip
    scores = fit_scores([score], outputs, tree.num_leaves)
    if score not in scores:  # a feature score on a network without features
        raise ValueError(f"untrained: score {score!r} cannot be fitted on network {name!r}")
    return Untrained(model, card, scores)
