"""A U-Net for hyperspectral cubes: a spectral stem, then a 2D encoder-decoder.

- Spectral stem: two 1x1 convolutions that learn band combinations (per pixel, like a learned spectral
  unmixing) before any spatial filtering.
- Encoder/decoder: ``depth`` levels of two 3x3 convolutions with GroupNorm (stable with the small batches HSI
  training uses) and SiLU; max-pool down, bilinear up, skip connections.
- Input sizes: multiples of ``input_multiple`` = 2^(depth-1); ``build_model`` wraps the network in
  :class:`~hsiseg.models.any_size.AnySize`, which pads any other size and crops back.

Input (N, B, H, W) float, output (N, C, H, W) logits, one channel per leaf of the label tree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hsiseg.models.network import MODELS, Network


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions with GroupNorm and SiLU."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            _norm(out_channels, groups),
            nn.SiLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            _norm(out_channels, groups),
            nn.SiLU(inplace=True),
        ]
        if dropout:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


@MODELS.register("unet")
class SpectralUNet(Network):
    """U-Net with a spectral stem (see module docstring).

    Parameters
    ----------
    in_channels: number of spectral bands B.
    classes: number of output channels C (leaves).
    width: channels of the first level; level k has ``width * 2**k``.
    depth: number of resolution levels (>= 1).
    stem_channels: channels of the spectral stem (default: ``width``).
    groups: GroupNorm groups.
    dropout: dropout before the classifier and in the bottleneck.
    """

    has_features = True

    def __init__(
        self,
        in_channels: int,
        classes: int,
        width: int = 32,
        depth: int = 4,
        stem_channels: int | None = None,
        groups: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 1 or width < 1 or in_channels < 1 or classes < 2:
            raise ValueError("SpectralUNet needs depth >= 1, width >= 1, in_channels >= 1 and classes >= 2")
        self.depth = depth
        self.input_multiple = 2 ** (depth - 1)
        stem = stem_channels or width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 1, bias=False),
            _norm(stem, groups),
            nn.SiLU(inplace=True),
            nn.Conv2d(stem, stem, 1, bias=False),
            _norm(stem, groups),
            nn.SiLU(inplace=True),
        )
        channels = [width * 2**k for k in range(depth)]
        self.encoder = nn.ModuleList()
        previous = stem
        for k, out in enumerate(channels):
            self.encoder.append(ConvBlock(previous, out, groups, dropout if k == depth - 1 else 0.0))
            previous = out
        self.decoder = nn.ModuleList(
            ConvBlock(channels[k + 1] + channels[k], channels[k], groups) for k in reversed(range(depth - 1))
        )
        self.head = nn.Sequential(
            nn.Dropout2d(dropout) if dropout else nn.Identity(), nn.Conv2d(channels[0], classes, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, C, H, W) and the last decoder features (N, width, H, W) the classifier reads."""
        x = self.stem(x)
        skips = []
        for k, block in enumerate(self.encoder):
            x = block(x)
            if k < self.depth - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for block in self.decoder:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x), x
