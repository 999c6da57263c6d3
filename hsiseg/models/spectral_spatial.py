"""A spectral-spatial network: a per-pixel spectral network, then a small, named amount of spatial context.

Sparse scribbles are thin strokes inside class regions; a network with a large receptive field learns the
shapes of the strokes instead of the spectra (a U-Net's training loss falls to ~0 while held-out pixels stay
wrong). Here the spectral part (:class:`~hsiseg.models.pixel.PixelNet`) sees one pixel, and the spatial
context is an explicit option with a small footprint:

=============  ================================================================================================
``context``    what it adds
=============  ================================================================================================
``guided``     an edge-aware (joint bilateral) average of the class probabilities, applied when the network
               predicts (``eval()``): each pixel averages its neighbours within ~3 ``sigma`` pixels, weighted by
               distance and by how similar their logits are (``tau``), so regions are smoothed and boundaries
               and thin structures (vessels) are kept. No parameters: it cannot memorise strokes, and the
               spectral part trains on annotated pixels alone. Measured best (docs/quality.md), the default.
``gaussian``   the same without the edge term: a fixed Gaussian average of the probabilities over ``sigma``
               pixels (blurs thin structures).
``conv``       a learned residual block (depthwise 3x3 and 1x1 convolutions) on the spectral features:
               receptive field 3 x 3, trained on crops.
``none``       no context: the per-pixel network alone.
=============  ================================================================================================

For ``guided`` and ``gaussian`` the output keeps each pixel's own log-partition: ``softmax`` of the output is
the averaged probability map and the energy score ``logsumexp`` is the spectral part's.

Input (N, B, H, W) float, output (N, C, H, W) logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hsiseg.models.kernel import KernelPixelNet
from hsiseg.models.network import MODELS, Network
from hsiseg.models.pixel import PixelNet

CONTEXTS = ("guided", "gaussian", "conv", "none")
SPECTRAL_PARTS = ("mlp", "rbf")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian average of every channel of (N, C, H, W), kernel radius ceil(3 sigma), reflect border
    (replicate when the image is smaller than the radius)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    for dim in (-1, -2):
        size = x.shape[dim]
        mode = "reflect" if size > radius else "replicate"
        padding = (radius, radius, 0, 0) if dim == -1 else (0, 0, radius, radius)
        weight = kernel.view(1, 1, 1, -1) if dim == -1 else kernel.view(1, 1, -1, 1)
        x = F.conv2d(F.pad(x, padding, mode=mode), weight.expand(channels, 1, *weight.shape[2:]), groups=channels)
    return x


def guided_average(
    probabilities: torch.Tensor, guide: torch.Tensor, sigma: float, tau: float, block_rows: int | None = None
) -> torch.Tensor:
    """Edge-aware average of ``probabilities`` (N, C, H, W) guided by ``guide`` (N, G, H, W).

    Pixel i gets sum_j w_ij p_j / sum_j w_ij over offsets |i - j| <= ceil(3 sigma) in each axis, with
    w_ij = exp(-|i - j|^2 / (2 sigma^2)) * exp(-||g_i - g_j||^2 / (2 (tau m)^2)), where m^2 is the (lower) median of
    ||g_i - g_j||^2 over horizontally adjacent pixels of the image (a scale for "similar" that follows the
    guide's own spread). Borders are reflected (replicated in images smaller than the radius).

    Computed in bands of ``block_rows`` output rows (default on a CPU: bands of about 4 MiB of probabilities,
    the best of 1, 4 and 16 MiB measured on a CPU with 32 MiB of L3, so the passes over each band stay in cache;
    on a GPU one band, since each band costs ((2 r + 1)^2 - 1) / 2 rounds of kernel launches); every pixel's sum
    runs in the same order, so the result does not depend on the band height (bit for bit in float64, tested).
    """
    height, width = probabilities.shape[-2:]
    radius = max(1, math.ceil(3 * sigma))
    adjacent = guide[..., :, 1:] - guide[..., :, :-1] if width > 1 else guide[..., 1:, :] - guide[..., :-1, :]
    if adjacent.numel() == 0:
        return probabilities
    scale = adjacent.pow(2).sum(1).flatten(1).median(1).values.clamp_min(1e-12) * tau**2  # (N,)
    mode = "reflect" if min(height, width) > radius else "replicate"
    padding = (radius, radius, radius, radius)
    padded_p, padded_g = F.pad(probabilities, padding, mode=mode), F.pad(guide, padding, mode=mode)
    if block_rows is None and probabilities.device.type != "cpu":
        block_rows = height
    elif block_rows is None:
        row_bytes = (
            probabilities.shape[0] * probabilities.shape[1] * (width + 2 * radius) * probabilities.element_size()
        )
        block_rows = max(1, (4 << 20) // max(1, row_bytes))
    bands = []
    for top in range(0, height, block_rows):
        rows = min(block_rows, height - top)
        bands.append(_guided_band(padded_p[..., top : top + rows + 2 * radius, :],
                                  padded_g[..., top : top + rows + 2 * radius, :],
                                  guide[..., top : top + rows, :], sigma, scale, radius))  # fmt: skip
    return bands[0] if len(bands) == 1 else torch.cat(bands, dim=-2)


def _guided_band(
    padded_p: torch.Tensor, padded_g: torch.Tensor, guide: torch.Tensor, sigma: float, scale: torch.Tensor, radius: int
) -> torch.Tensor:
    """:func:`guided_average` for one band of rows: ``guide`` (N, G, h, W) and the padded inputs around it.

    The weight of a pair of pixels is symmetric (w_ij = w_ji), so each offset d of one half-plane is computed
    once, over the band grown by d, and serves both the pixels whose partner lies at +d and those whose partner
    lies at -d: half the weight computations of visiting every offset. The offset 0 has weight 1.
    """
    height, width = guide.shape[-2:]
    factor = (-0.5 / scale).view(-1, 1, 1, 1)
    total = padded_p[..., radius : radius + height, radius : radius + width].clone()
    weight_sum = torch.ones_like(total[:, :1])
    for dy, dx in _half_plane(radius):
        # pair weights e[q] = w(q, q + d) over the rows and columns that both directions need
        top, left = radius - dy, radius - max(dx, 0)
        rows, columns = height + dy, width + abs(dx)
        here = padded_g[..., top : top + rows, left : left + columns]
        there = padded_g[..., top + dy : top + dy + rows, left + dx : left + dx + columns]
        pair = (here - there).square_().sum(1, keepdim=True)
        pair = pair.mul_(factor).add_(-(dy * dy + dx * dx) / (2 * sigma**2)).exp_()
        # the partner at +d: e at q = p; the partner at -d: e at q = p - d
        for (weight_top, weight_left), (partner_top, partner_left) in (
            ((dy, radius - left), (radius + dy, radius + dx)),
            ((0, radius - dx - left), (radius - dy, radius - dx)),
        ):
            weight = _window(pair, weight_top, weight_left, height, width)
            total.addcmul_(weight, _window(padded_p, partner_top, partner_left, height, width))
            weight_sum.add_(weight)
    return total.div_(weight_sum)


def _window(x: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The (..., height, width) view of ``x`` starting at row ``top`` and column ``left``."""
    return x[..., top : top + height, left : left + width]


def _half_plane(radius: int) -> list[tuple[int, int]]:
    """Offsets (dy, dx) with |dy|, |dx| <= radius in one half-plane: dy > 0, or dy = 0 and dx > 0."""
    return [(dy, dx) for dy in range(radius + 1) for dx in range(-radius, radius + 1) if dy > 0 or dx > 0]


@MODELS.register("spectral-spatial")
class SpectralSpatialNet(Network):
    """Per-pixel spectral network followed by a named spatial context (see module docstring).

    Parameters
    ----------
    in_channels: number of spectral bands B.
    classes: number of output channels C (leaves).
    spectral: the per-pixel part: ``mlp`` (:class:`PixelNet`) or ``rbf`` (:class:`KernelPixelNet`, an RBF
        network: the kernel counterpart of an SVM).
    width, depth, dropout: of the ``mlp`` spectral part.
    centres, gamma_scale: of the ``rbf`` spectral part.
    context: ``guided``, ``gaussian``, ``conv`` or ``none``.
    sigma: spatial standard deviation in pixels of the ``guided`` and ``gaussian`` contexts.
    tau: ``guided``: how different two pixels' logits may be and still be averaged, in units of the typical
        difference between adjacent pixels of the image (larger: smoother).
    """

    input_multiple = 1
    has_features = True

    def __init__(
        self,
        in_channels: int,
        classes: int,
        width: int = 128,
        depth: int = 2,
        dropout: float = 0.2,
        context: str = "guided",
        sigma: float = 3.0,
        tau: float = 3.0,
        spectral: str = "mlp",
        centres: int = 512,
        gamma_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
        if spectral not in SPECTRAL_PARTS:
            raise ValueError(f"spectral must be one of {SPECTRAL_PARTS}, got {spectral!r}")
        if not sigma > 0 or not tau > 0:
            raise ValueError(f"sigma and tau must be > 0, got {sigma} and {tau}")
        self.context, self.sigma, self.tau = context, float(sigma), float(tau)
        if spectral == "rbf":
            self.spectral: PixelNet | KernelPixelNet = KernelPixelNet(in_channels, classes, centres, gamma_scale)
            width = centres
        else:
            self.spectral = PixelNet(in_channels, classes, width, depth, dropout)
        if context == "conv":
            self.spatial = nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1, groups=width, padding_mode="reflect"),
                nn.SiLU(inplace=True),
                nn.Conv2d(width, width, 1),
            )

    def fit_input_statistics(self, spectra: torch.Tensor) -> None:
        """Set the spectral part's input standardisation from training spectra (P, B)."""
        self.spectral.fit_input_statistics(spectra)

    @property
    def has_context(self) -> bool:  # type: ignore[override]
        """True for the parameter-free contexts (``guided``, ``gaussian``): unknown-tissue maps take them too."""
        return self.context in ("guided", "gaussian")

    @property
    def pixelwise_training(self) -> bool:  # type: ignore[override]
        """True when training sees one pixel at a time (the context has no parameters)."""
        return self.context != "conv"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]

    def smooth_maps(self, maps: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Per-pixel maps (N, K, H, W), e.g. unknown-tissue scores, averaged by the parameter-free context
        exactly as the class probabilities are (the guide: the logits of ``features`` (N, F, H, W));
        unchanged for the ``conv`` and ``none`` contexts. The guide is computed where the network's weights are
        (features gathered on the CPU, network on a GPU) and the average where the maps are."""
        if self.context == "guided":
            weights = next(self.spectral.head.parameters())
            guide = self.spectral.head(features.to(weights.device, weights.dtype)).float().to(maps.device)
            return guided_average(maps.float(), guide, self.sigma, self.tau)
        if self.context == "gaussian":
            return gaussian_blur(maps.float(), self.sigma)
        return maps

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, C, H, W) with the context applied, and the per-pixel penultimate features (N, width, H, W)
        of the spectral part (before any spatial averaging)."""
        logits, features = self.forward_pixels(x)
        if self.training:
            return logits, features
        return self.apply_context(logits)[0], features

    def forward_pixels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, C, H, W) and features (N, width, H, W) before the parameter-free context (the ``conv``
        context, which has parameters, included)."""
        features = self.spectral.features(x)
        if self.context == "conv":
            features = features + self.spatial(features)
        return self.spectral.head(features), features

    def apply_context(
        self, logits: torch.Tensor, maps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ``guided`` or ``gaussian`` context on per-pixel logits (N, C, H, W): each pixel's probabilities
        averaged, its own log-partition kept; ``maps`` (N, K, H, W) averaged with the same weights in the same
        pass (unknown-tissue scores: one pass instead of two). Unchanged for ``conv`` and ``none``."""
        if self.context not in ("guided", "gaussian"):
            return logits, maps
        logits32 = logits.float()
        probabilities = torch.softmax(logits32, 1)
        channels = probabilities if maps is None else torch.cat([probabilities, maps.float()], 1)
        if self.context == "guided":
            averaged = guided_average(channels, logits32, self.sigma, self.tau)
        else:
            averaged = gaussian_blur(channels, self.sigma)
        classes = probabilities.shape[1]
        partition = torch.logsumexp(logits32, 1, keepdim=True)
        context = (torch.log(averaged[:, :classes].clamp_min(1e-30)) + partition).to(logits.dtype)
        return context, None if maps is None else averaged[:, classes:]
