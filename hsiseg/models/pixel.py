"""A per-pixel spectral network: an MLP over the bands of each pixel, written as 1x1 convolutions.

The input is standardised per band with statistics of the annotated training pixels (buffers stored with the
weights, set by :meth:`PixelNet.fit_input_statistics` before training), so small differences between spectra
(e.g. of l1-normalised cubes) are visible whatever the preprocessing. Each layer is a 1x1 convolution, a
per-pixel layer normalisation over channels (no statistic is shared between pixels), SiLU and dropout.
The receptive field is one pixel: the network cannot learn the shape of a scribble, only spectra, and it can
be trained on batches of annotated pixels alone (``pixelwise_training``), which is what makes it fast.

Input (N, B, H, W) float, output (N, C, H, W) logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hsiseg.models.network import MODELS, Network


class ChannelNorm(nn.Module):
    """Layer normalisation over the channels of each pixel of (N, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.movedim(1, -1), x.shape[1:2], self.weight, self.bias)
        return x.movedim(-1, 1)


@MODELS.register("pixel")
class PixelNet(Network):
    """Spectral MLP per pixel (see module docstring).

    Parameters
    ----------
    in_channels: number of spectral bands B.
    classes: number of output channels C (leaves).
    width: hidden channels of every layer.
    depth: number of hidden layers (>= 1).
    dropout: dropout after every hidden layer (training only).
    """

    input_multiple = 1
    has_features = True
    pixelwise_training = True

    input_mean: torch.Tensor  # buffer
    input_std: torch.Tensor  # buffer

    def __init__(self, in_channels: int, classes: int, width: int = 128, depth: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        if depth < 1 or width < 1 or in_channels < 1 or classes < 2 or not 0 <= dropout < 1:
            raise ValueError("PixelNet needs depth >= 1, width >= 1, in_channels >= 1, classes >= 2, 0 <= dropout < 1")
        layers: list[nn.Module] = []
        previous = in_channels
        for _ in range(depth):
            layers += [nn.Conv2d(previous, width, 1), ChannelNorm(width), nn.SiLU(inplace=True), nn.Dropout(dropout)]
            previous = width
        self.register_buffer("input_mean", torch.zeros(in_channels))
        self.register_buffer("input_std", torch.ones(in_channels))
        self.layers = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, classes, 1)

    @torch.no_grad()
    def fit_input_statistics(self, spectra: torch.Tensor) -> None:
        """Set the input standardisation from training spectra (P, B)."""
        self.input_mean.copy_(spectra.mean(0))
        self.input_std.copy_(_spread(spectra).clamp_min(1e-6 * spectra.abs().mean().clamp_min(1e-12)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, B, H, W) spectra -> (N, width, H, W) features."""
        x = (x - self.input_mean.view(1, -1, 1, 1)) / self.input_std.view(1, -1, 1, 1)
        return self.layers(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, C, H, W) and the penultimate features (N, width, H, W) they are computed from."""
        features = self.features(x)
        return self.head(features), features


def _spread(spectra: torch.Tensor) -> torch.Tensor:
    """(B,) standard deviation of training spectra (P, B) per band; 0 for a single spectrum (not NaN)."""
    return spectra.std(0) if spectra.shape[0] > 1 else torch.zeros_like(spectra[0])
