"""A per-pixel kernel classifier: RBF similarities to training spectra, then a linear layer (an RBF network).

The spectral counterpart of an RBF support-vector machine, written as a network so that it trains with every
hsiseg loss (the tree losses, partial labels), carries unknown-tissue scores and goes through the same
spatial context as the MLP (``spectral-spatial`` with ``spectral="rbf"``). Each pixel's spectrum x (B bands)
is standardised per band, z = (x - mean) / std, and compared with ``centres`` spectra c_j drawn from the
annotated training pixels:

    k_j(x) = exp(-gamma * ||z - c_j||^2),   logits = W k(x) + b,

with gamma = ``gamma_scale`` / median ||c_i - c_j||^2 (the median heuristic: the kernel's width follows the
data, as an SVM's cross-validated gamma would). The centres, mean, std and gamma are buffers set from the
training spectra by :meth:`KernelPixelNet.fit_input_statistics` (centres drawn with replacement when there are
fewer annotated pixels than centres); W and b are learned. Far from every training spectrum all similarities
vanish and the logits fall back to the bias: unlike an MLP, the classifier cannot be confident there.

Input (N, B, H, W) float, output (N, C, H, W) logits; receptive field one pixel (trained on pixel batches).
"""

from __future__ import annotations

import torch
from torch import nn

from hsiseg.models.network import Network


class KernelPixelNet(Network):
    """RBF network per pixel (see module docstring).

    Parameters
    ----------
    in_channels: number of spectral bands B.
    classes: number of output channels C (leaves).
    centres: number of kernel centres M (the feature width).
    gamma_scale: multiplies the median-heuristic gamma (larger: narrower kernels).
    """

    input_multiple = 1
    has_features = True
    pixelwise_training = True

    input_mean: torch.Tensor  # buffer
    input_std: torch.Tensor  # buffer
    centres: torch.Tensor  # buffer
    gamma: torch.Tensor  # buffer

    def __init__(self, in_channels: int, classes: int, centres: int = 512, gamma_scale: float = 1.0) -> None:
        super().__init__()
        if in_channels < 1 or classes < 2 or centres < 2 or not gamma_scale > 0:
            raise ValueError("KernelPixelNet needs in_channels >= 1, classes >= 2, centres >= 2, gamma_scale > 0")
        self.gamma_scale = float(gamma_scale)
        self.register_buffer("input_mean", torch.zeros(in_channels))
        self.register_buffer("input_std", torch.ones(in_channels))
        self.register_buffer("centres", torch.zeros(centres, in_channels))
        self.register_buffer("gamma", torch.tensor(1.0 / in_channels))
        self.head = nn.Conv2d(centres, classes, 1)

    @torch.no_grad()
    def fit_input_statistics(self, spectra: torch.Tensor) -> None:
        """Standardisation, centres and gamma from training spectra (P, B); centres drawn with torch's RNG."""
        spectra = spectra.float()
        self.input_mean.copy_(spectra.mean(0))
        self.input_std.copy_(_spread(spectra).clamp_min(1e-6 * spectra.abs().mean().clamp_min(1e-12)))
        count = self.centres.shape[0]
        replace = spectra.shape[0] < count
        chosen = (torch.randint(spectra.shape[0], (count,)) if replace else torch.randperm(spectra.shape[0])[:count])
        centres = (spectra[chosen] - self.input_mean) / self.input_std
        self.centres.copy_(centres)
        distances = torch.cdist(centres, centres).pow(2)
        off_diagonal = distances[~torch.eye(count, dtype=torch.bool)]
        median = off_diagonal[off_diagonal > 0].median() if (off_diagonal > 0).any() else torch.tensor(1.0)
        self.gamma.copy_(self.gamma_scale / median.clamp_min(1e-12))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, B, H, W) spectra -> (N, M, H, W) RBF similarities to the centres."""
        z = ((x.float() - self.input_mean.view(1, -1, 1, 1)) / self.input_std.view(1, -1, 1, 1)).movedim(1, -1)
        squared = (z.pow(2).sum(-1, keepdim=True) - 2 * z @ self.centres.T + self.centres.pow(2).sum(-1))
        return torch.exp(-self.gamma * squared.clamp_min(0)).movedim(-1, 1).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, C, H, W) and the kernel features (N, M, H, W) they are computed from."""
        features = self.features(x)
        return self.head(features), features


def _spread(spectra: torch.Tensor) -> torch.Tensor:
    """(B,) standard deviation of training spectra (P, B) per band; 0 for a single spectrum (not NaN)."""
    return spectra.std(0) if spectra.shape[0] > 1 else torch.zeros_like(spectra[0])
