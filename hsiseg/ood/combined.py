"""A score that sees both spaces: the network's features and the input spectra (``combined``).

Feature-space scores miss unseen tissue that the network maps onto a known class, input-space scores miss
unseen tissue whose spectrum resembles a known one while the network's features tell it apart (measured on
real scenes: docs/unknown-tissue.md). ``combined`` flags a pixel that *either* part finds unusual: each part
score s_i is put on a common scale by its own spread on the training pixels,

    z_i = (s_i - q_i) / (m_i - q_i),   q_i, m_i: the 5% quantile and the median of s_i on the training pixels,

so z_i < 0 means "further out than 95% of the training pixels by part i", and the score is min_i z_i (higher =
more known). Its threshold is calibrated on held-out pixels like any score's. Default parts: ``mahalanobis``
(features) and ``spectral_knn`` (inputs).
"""

from __future__ import annotations

from typing import Any

import torch

from hsiseg.ood.base import OOD_SCORES, OodScore, PixelOutputs, Space, build_score


@OOD_SCORES.register()
class Combined(OodScore):
    """min over ``parts`` of each part's score scaled by its spread on the training pixels (module docstring)."""

    name = "combined"
    space = "features"

    def __init__(self, parts: tuple[str, ...] | list[str] = ("mahalanobis", "spectral_knn")) -> None:
        if len(parts) < 1 or "combined" in parts:
            raise ValueError(f"parts must name at least one other score, got {list(parts)}")
        self.parts = {name: build_score(name) for name in parts}
        self.location = torch.zeros(0)  # (K,) 5% quantile of each part on the training pixels
        self.scale = torch.zeros(0)  # (K,) median - 5% quantile

    @property
    def spaces(self) -> tuple[Space, ...]:
        return tuple(dict.fromkeys(part.space for part in self.parts.values()))

    def options(self) -> dict[str, Any]:
        return {"parts": list(self.parts)}

    def fit(self, training: PixelOutputs) -> None:
        locations, scales = [], []
        for part in self.parts.values():
            part.fit(training)
            values = part(training).double()
            low, median = torch.quantile(values, 0.05), values.median()
            locations.append(low)
            scales.append((median - low).clamp_min(1e-12 * (values.abs().max() + 1e-12)))
        self.location, self.scale = torch.stack(locations).float(), torch.stack(scales).float()

    def __call__(self, outputs: PixelOutputs) -> torch.Tensor:
        scaled = [(part(outputs) - self.location[i]) / self.scale[i] for i, part in enumerate(self.parts.values())]
        return torch.stack(scaled).min(0).values

    def state_dict(self) -> dict[str, torch.Tensor]:
        tensors = {"location": self.location, "scale": self.scale}
        for name, part in self.parts.items():
            tensors |= {f"{name}.{key}": value for key, value in part.state_dict().items()}
        return tensors

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        self.location, self.scale = tensors["location"].float(), tensors["scale"].float()
        for name, part in self.parts.items():
            part.load_state_dict({k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{name}.")})
