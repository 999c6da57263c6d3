"""Unknown-tissue (out-of-distribution) scores, by name: one registry for calibration and prediction alike.

Every score maps a pixel's network output to a number, **higher = more like the trained classes**; a pixel
is *unknown* when its score is below the threshold calibrated for that score on held-out annotated pixels
(:mod:`hsiseg.ood.calibration`).

================  =================================================================  ==========================
name              score (z: logits, f: penultimate features)                          paper
================  =================================================================  ==========================
``max_softmax``   max_c softmax(z)_c                                                  Hendrycks & Gimpel, 2017
``max_logit``     max_c z_c                                                           Hendrycks et al., 2022
``energy``        T logsumexp(z / T) (negative free energy; option ``temperature``)   Liu et al., 2020
``mahalanobis``   -min_c (f - mu_c)^T S^-1 (f - mu_c), class means and one shared     Lee et al., 2018
                  covariance S fitted on annotated training pixels
``knn``           -|| u - u_(k) ||: distance of the unit-normalised feature u to its  Sun et al., 2022
                  k-th nearest unit-normalised training feature (option ``k``)
================  =================================================================  ==========================

The feature-space scores are *fitted* (:meth:`OodScore.fit`) on the annotated training pixels; what they
learn is a few tensors stored with the network's weights (``ood.<name>.<tensor>`` in the safetensors file).
A new score is one class with ``@register``: a name, ``needs_features``, ``__call__`` and, if it learns
something, ``fit``/``state_dict``/``load_state_dict``.

Shapes: scores take pixel-major ``logits`` (P, C) and ``features`` (P, F) and return (P,) float32.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from hsiseg.errors import HsisegError

OOD_SCORES: dict[str, type[OodScore]] = {}


class OodScore:
    """One unknown-tissue score (see module docstring). Options are constructor keyword arguments."""

    name: ClassVar[str]
    needs_features: ClassVar[bool] = False

    def options(self) -> dict[str, Any]:
        """The constructor options, as stored in the model card."""
        return {}

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Learn from the annotated training pixels: ``features`` (P, F), leaf codes ``labels`` (P,)."""

    def __call__(self, logits: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """(P,) scores of (P, C) logits and (P, F) features; higher = more in-distribution."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What :meth:`fit` learnt, as named tensors."""
        return {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`fit` learnt."""


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


def image_score(score: OodScore, logits: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
    """(H, W) score map of one image's (C, H, W) logits and (F, H, W) features."""
    height, width = logits.shape[-2:]
    pixel_logits = logits.reshape(logits.shape[0], -1).T
    pixel_features = features.reshape(features.shape[0], -1).T if features is not None else None
    return score(pixel_logits, pixel_features).reshape(height, width)


from hsiseg.ood import feature_scores, logit_scores  # noqa: E402, F401  - registers the built-in scores

DEFAULT_SCORE = "knn"  # best measured (README, "Unknown tissue")
DEFAULT_SCORES = ("max_softmax", "max_logit", "energy", "mahalanobis", "knn")
__all__ = ["DEFAULT_SCORE", "DEFAULT_SCORES", "OOD_SCORES", "OodScore", "build_score", "image_score", "register"]
