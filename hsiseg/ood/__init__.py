"""Unknown-tissue (out-of-distribution) scores, by name: one registry for calibration and prediction alike.

Every score maps a pixel's network output to a number, **higher = more like the trained classes**; a pixel
is *unknown* when its score is below the threshold calibrated for that score on held-out annotated pixels
(:mod:`hsiseg.ood.calibration`).

========================  ==========================================================  =========================
name                      score (z: logits, f: penultimate features, x: input)          paper
========================  ==========================================================  =========================
``max_softmax``           max_c softmax(z)_c                                            Hendrycks & Gimpel, 2017
``max_logit``             max_c z_c                                                     Hendrycks et al., 2022
``energy``                T logsumexp(z / T), negative free energy (``temperature``)    Liu et al., 2020
``mahalanobis``           -min_c (f - mu_c)^T S^-1 (f - mu_c), class means and one      Lee et al., 2018
                          shared covariance S of the annotated training pixels
``knn``                   -|| u - u_(k) ||: distance of the unit-normalised feature u   Sun et al., 2022
                          to its k-th nearest unit-normalised training feature (``k``)
``spectral_mahalanobis``  ``mahalanobis`` on the network's input spectra x (after the   Lee et al., 2018
                          card's preprocessing) instead of its features
``spectral_knn``          -|| z - z_(k) ||: distance of the standardised input spectrum   Sun et al., 2022, in
                          z to its k-th nearest standardised training spectrum (``k``)  the input space
``combined``              min over parts (``mahalanobis``, ``spectral_knn``) of each    this project
                          part scaled by its spread on the training pixels: flags what
                          either space finds unusual (:mod:`hsiseg.ood.combined`)
========================  ==========================================================  =========================

The fitted scores learn from the annotated training pixels (:meth:`OodScore.fit`); what they learn is a few
tensors stored with the network's weights (``ood.<name>.<tensor>`` in the safetensors file). A network with
a parameter-free spatial context (the default ``spectral-spatial`` network) averages score maps with the same
context it applies to its class probabilities (:func:`hsiseg.models.smooth_maps`), so calibration and
prediction see the same maps. A new score is one class with ``@register``: a name, the ``space`` it reads,
``__call__`` and, if it learns something, ``fit``/``state_dict``/``load_state_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from hsiseg.errors import HsisegError

Space = Literal["logits", "features", "inputs"]


@dataclass
class PixelOutputs:
    """What a network gives for P pixels (pixel-major)."""

    logits: torch.Tensor  # (P, C) float32
    features: torch.Tensor | None  # (P, F) penultimate features; None for networks without them
    inputs: torch.Tensor | None  # (P, B) network input spectra
    targets: torch.Tensor | None = None  # (P,) int64 target codes, where known (training pixels)

    def leaf_pixels(self, num_leaves: int) -> PixelOutputs:
        """The pixels whose target is a leaf (partial labels left out)."""
        keep = self.targets < num_leaves
        return PixelOutputs(*(None if t is None else t[keep] for t in (self.logits, self.features, self.inputs,
                                                                          self.targets)))  # fmt: skip

    def space(self, name: Space, score: str) -> torch.Tensor:
        """(P, D) float32 values of one space; a clear error when the network does not provide it."""
        values = getattr(self, name)
        if values is None:
            raise HsisegError(f"OOD score {score!r} needs the network's {name}; this network has none")
        return values.float()


class OodScore:
    """One unknown-tissue score (see module docstring). Options are constructor keyword arguments."""

    name: ClassVar[str]
    space: ClassVar[Space] = "logits"

    @property
    def spaces(self) -> tuple[Space, ...]:
        """Every space the score reads (one for most; ``combined`` reads two)."""
        return (self.space,)

    @property
    def fitted(self) -> bool:
        """Whether the score learns from training pixels (then it needs :meth:`fit` or a loaded state)."""
        return bool(self.state_dict())

    def options(self) -> dict[str, Any]:
        """The constructor options, as stored in the model card."""
        return {}

    def fit(self, training: PixelOutputs) -> None:
        """Learn from the leaf-labelled training pixels (``training.targets``: their leaf codes)."""

    def __call__(self, outputs: PixelOutputs) -> torch.Tensor:
        """(P,) scores; higher = more in-distribution."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What :meth:`fit` learnt, as named tensors."""
        return {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`fit` learnt."""


OOD_SCORES: dict[str, type[OodScore]] = {}


def register(cls: type[OodScore]) -> type[OodScore]:
    """Class decorator: make a score available by its ``name``."""
    OOD_SCORES[cls.name] = cls
    return cls


def build_score(name: str, **options: Any) -> OodScore:
    """The score ``name`` with ``options``; unknown names or options raise :class:`HsisegError`."""
    if name not in OOD_SCORES:
        raise HsisegError(f"unknown OOD score {name!r}; choose one of {sorted(OOD_SCORES)}")
    try:
        return OOD_SCORES[name](**options)
    except (TypeError, ValueError) as error:
        raise HsisegError(f"OOD score {name!r}: {error}") from None


from hsiseg.ood import combined, feature_scores, logit_scores  # noqa: E402, F401  - registers the built-in scores

DEFAULT_SCORE = "mahalanobis"  # best measured (README, "Unknown tissue")
# Calibrated by every training run; ``combined`` (measured no better than its parts, README) is opt-in.
DEFAULT_SCORES = ("max_softmax", "max_logit", "energy", "mahalanobis", "knn", "spectral_mahalanobis", "spectral_knn")
__all__ = ["DEFAULT_SCORE", "DEFAULT_SCORES", "OOD_SCORES", "OodScore", "PixelOutputs", "build_score", "register"]
