"""Scores that learn the annotated training pixels: in the network's penultimate feature space, or in its
input space (the preprocessed spectra)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from hsiseg.ood.base import OOD_SCORES, OodScore, PixelOutputs, Space

CHUNK = 4096  # pixels per distance block: bounds memory at CHUNK x (classes or bank) floats


def _kth_distance(points: torch.Tensor, references: torch.Tensor, k: int = 1) -> torch.Tensor:
    """(P,) Euclidean distance of each of ``points`` (P, D) to its k-th nearest row of ``references`` (R, D)."""
    out = torch.empty(points.shape[0], dtype=torch.float32, device=points.device)
    for start in range(0, points.shape[0], CHUNK):
        block = torch.cdist(points[start : start + CHUNK], references)
        out[start : start + CHUNK] = block.topk(k, 1, largest=False).values[:, -1]
    return out


@OOD_SCORES.register()
class Mahalanobis(OodScore):
    """-min_c (f - mu_c)^T S^-1 (f - mu_c) with class means mu_c and a shared covariance S (Lee et al., "A simple
    unified framework for detecting out-of-distribution samples and adversarial attacks", NeurIPS 2018), on
    the penultimate features. ``shrinkage`` s: S is (1 - s) S + s (trace(S) / D) I, so few pixels or correlated
    dimensions stay invertible."""

    name = "mahalanobis"
    space: ClassVar[Space] = "features"

    def __init__(self, shrinkage: float = 0.1) -> None:
        if not 0 <= shrinkage <= 1:
            raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
        self.shrinkage = float(shrinkage)
        self.means = torch.zeros(0, 0)  # (K, D): means of the classes seen in training
        self.whitening = torch.zeros(0, 0)  # (D, D): W with W W^T = S^-1

    def options(self) -> dict[str, Any]:
        return {"shrinkage": self.shrinkage}

    def fit(self, training: PixelOutputs) -> None:
        values, labels = training.space(self.space, self.name).double(), training.labels
        classes = labels.unique()
        means = torch.stack([values[labels == c].mean(0) for c in classes])
        centred = values - means[torch.searchsorted(classes, labels)]
        covariance = centred.T @ centred / max(1, values.shape[0] - len(classes))
        dims = covariance.shape[0]
        scale = covariance.trace() / dims
        covariance = (1 - self.shrinkage) * covariance + self.shrinkage * scale * torch.eye(dims)
        covariance += (1e-6 * scale + 1e-12) * torch.eye(dims)  # invertible even for one pixel per class
        # W = L^-T with S = L L^T gives W W^T = S^-1; factoring S (kept well-conditioned by the shrinkage) rather
        # than its inverse stays positive definite in floating point even for a handful of pixels
        factor = torch.linalg.cholesky(covariance)
        self.means = means.float()
        identity = torch.eye(dims, dtype=factor.dtype)
        self.whitening = torch.linalg.solve_triangular(factor, identity, upper=False).T.float()

    def __call__(self, outputs: PixelOutputs) -> torch.Tensor:
        """(P,) minus the squared distance to the nearest class mean in whitened space, as |p|^2 - 2 p.m + |m|^2
        (one matrix product with the K means, not K differences of every pixel), on values centred on the
        means' centroid after whitening, so that the expansion cancels little even for uncentred inputs."""
        values = outputs.space(self.space, self.name)
        whitening = self.whitening.to(values.device)
        whitened_means = self.means.to(values.device) @ whitening
        centre = whitened_means.mean(0)
        points, references = torch.addmm(-centre, values, whitening), whitened_means - centre  # (P, D), (K, D)
        cross = torch.addmm(references.square().sum(1), points, references.T, alpha=-2)  # |m|^2 - 2 p.m: (P, K)
        squared = cross + torch.einsum("pd,pd->p", points, points)[:, None]
        return -squared.clamp_min(0).min(1).values

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"means": self.means, "whitening": self.whitening}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        self.means, self.whitening = tensors["means"].float(), tensors["whitening"].float()


@OOD_SCORES.register()
class SpectralMahalanobis(Mahalanobis):
    """:class:`Mahalanobis` on the network's input spectra (after the model card's preprocessing)."""

    name = "spectral_mahalanobis"
    space: ClassVar[Space] = "inputs"


@OOD_SCORES.register()
class NearestNeighbours(OodScore):
    """-|| u - u_(k) || for unit-normalised features u and a bank of unit-normalised training features (Sun et
    al., "Out-of-distribution detection with deep nearest neighbors", ICML 2022). The bank holds at most
    ``bank_size`` training pixels, drawn evenly across classes (seeded), so rare classes are represented."""

    name = "knn"
    space: ClassVar[Space] = "features"

    def __init__(self, k: int = 10, bank_size: int = 4096, seed: int = 0) -> None:
        if k < 1 or bank_size < 1:
            raise ValueError(f"need k >= 1 and bank_size >= 1, got {k} and {bank_size}")
        self.k, self.bank_size, self.seed = int(k), int(bank_size), int(seed)
        self.bank = torch.zeros(0, 0)  # (R, D) unit vectors

    def options(self) -> dict[str, Any]:
        return {"k": self.k, "bank_size": self.bank_size, "seed": self.seed}

    def fit(self, training: PixelOutputs) -> None:
        values = training.space(self.space, self.name)
        self.bank = _unit(values[balanced_bank(training.labels, self.bank_size, self.seed)])

    def __call__(self, outputs: PixelOutputs) -> torch.Tensor:
        values = outputs.space(self.space, self.name)
        return -_kth_distance(_unit(values), self.bank.to(values.device), min(self.k, self.bank.shape[0]))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"bank": self.bank}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        self.bank = tensors["bank"].float()


def balanced_bank(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Sorted indices of at most ``size`` of the pixels ``labels`` (P,), drawn evenly across classes (seeded):
    small classes first, what they leave goes to the others, so rare classes are represented."""
    generator = torch.Generator().manual_seed(seed)
    classes = sorted(labels.unique().tolist(), key=lambda c: int((labels == c).sum()))
    chosen, remaining = [], size
    for position, code in enumerate(classes):
        members = torch.nonzero(labels == code).flatten()
        share = remaining // (len(classes) - position)
        take = members[torch.randperm(members.numel(), generator=generator)[:share]]
        chosen.append(take)
        remaining -= take.numel()
    return torch.cat(chosen).sort().values


@OOD_SCORES.register()
class SpectralNearestNeighbours(NearestNeighbours):
    """-|| z - z_(k) ||: distance of the standardised input spectrum z = (x - mean) / std (per band, statistics of
    the training pixels) to its k-th nearest standardised training spectrum, in a class-balanced bank of at most
    ``bank_size`` (an input-space density score: it sees what the network's features may have collapsed, a
    spectrum unlike every scribbled one). Default k = 5: robust to a few mixed or mislabelled stroke pixels."""

    name = "spectral_knn"
    space: ClassVar[Space] = "inputs"

    def __init__(self, k: int = 5, bank_size: int = 4096, seed: int = 0) -> None:
        super().__init__(k, bank_size, seed)
        self.mean = torch.zeros(0)
        self.std = torch.zeros(0)

    def fit(self, training: PixelOutputs) -> None:
        values = training.space(self.space, self.name)
        self.mean, self.std = values.mean(0), values.std(0).clamp_min(1e-6 * values.abs().mean().clamp_min(1e-12))
        self.bank = self._standardised(values[balanced_bank(training.labels, self.bank_size, self.seed)])

    def _standardised(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean.to(values.device)) / self.std.to(values.device)

    def __call__(self, outputs: PixelOutputs) -> torch.Tensor:
        values = self._standardised(outputs.space(self.space, self.name))
        return -_kth_distance(values, self.bank.to(values.device), min(self.k, self.bank.shape[0]))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"bank": self.bank, "mean": self.mean, "std": self.std}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        self.bank, self.mean, self.std = (tensors[key].float() for key in ("bank", "mean", "std"))


def _unit(values: torch.Tensor) -> torch.Tensor:
    return values / values.norm(dim=1, keepdim=True).clamp_min(1e-12)
