"""The input-size contract, handled once for every network.

Networks that downsample need inputs whose height and width are multiples of some number (a U-Net of depth
d: 2^(d-1); segmentation_models_pytorch encoders: 32). :class:`AnySize` wraps any network: it pads the input
(reflect, or replicate when the image is too small to reflect) up to the network's ``input_multiple`` and
crops the logits back, so training crops, whole-image validation and tiled prediction work for every size
with every model. ``build_model`` returns networks wrapped in it; checkpoints store the inner network's
weights (:func:`unwrap`), so the wrapper adds no keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hsiseg.models.network import network_of, unwrap

__all__ = ["AnySize", "unwrap"]


class AnySize(nn.Module):
    """``network`` (N, B, H, W) -> (N, C, H, W) logits for any H, W (see module docstring)."""

    def __init__(self, network: nn.Module, input_multiple: int) -> None:
        super().__init__()
        if input_multiple < 1:
            raise ValueError(f"input_multiple must be >= 1, got {input_multiple}")
        self.network = network
        self.input_multiple = int(input_multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        return self.network(self._pad(x))[..., :height, :width]

    @property
    def has_features(self) -> bool:
        """Whether the network can also return its penultimate features (``forward_features``)."""
        return network_of(self.network).has_features

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, C, H, W) and penultimate features (N, F, H, W), both cropped back to the input size."""
        if not self.has_features:
            raise ValueError(f"{type(self.network).__name__} does not expose its penultimate features")
        height, width = x.shape[-2:]
        logits, features = network_of(self.network).forward_features(self._pad(x))
        return logits[..., :height, :width], features[..., :height, :width]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % self.input_multiple, (-width) % self.input_multiple
        if pad_h or pad_w:
            mode = "reflect" if height > pad_h and width > pad_w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return x

