"""Scores computed from the logits alone (no fitting): max softmax, max logit, energy."""

from __future__ import annotations

from typing import Any

import torch

from hsiseg.ood.base import OOD_SCORES, OodScore, PixelOutputs


@OOD_SCORES.register()
class MaxSoftmax(OodScore):
    """max_c softmax(z)_c (Hendrycks & Gimpel, ICLR 2017)."""

    name = "max_softmax"

    def __call__(self, outputs: PixelOutputs) -> torch.Tensor:
        return torch.softmax(outputs.logits.float(), 1).max(1).values


@OOD_SCORES.register()
class MaxLogit(OodScore):
    """max_c z_c (Hendrycks et al., "Scaling out-of-distribution detection for real-world settings", ICML 2022)."""

    name = "max_logit"

    def __call__(self, outputs: PixelOutputs) -> torch.Tensor:
        return outputs.logits.float().max(1).values


@OOD_SCORES.register()
class Energy(OodScore):
    """Negative free energy T logsumexp(z / T) (Liu et al., "Energy-based out-of-distribution detection",
    NeurIPS 2020); ``temperature`` T > 0."""

    name = "energy"

    def __init__(self, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def options(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def __call__(self, outputs: PixelOutputs) -> torch.Tensor:
        return self.temperature * torch.logsumexp(outputs.logits.float() / self.temperature, 1)
