"""Temperature scaling: class probabilities a user can read as probabilities (Guo et al., "On calibration of
modern neural networks", ICML 2017).

One scalar T > 0 divides the logits before the softmax, p = softmax(z / T); it is fitted by minimising the
negative log-likelihood of the leaf labels of *held-out* annotated pixels (never training pixels), so an
over-confident network (T > 1) is softened and an under-confident one sharpened. The argmax, hence every
label map, is unchanged. hsiseg fits T after training on the same held-out pixels as the unknown-tissue
thresholds, keeps it in the model card (:class:`hsiseg.models.card.TemperatureScaling`) and applies it when it
predicts probabilities.
"""

from __future__ import annotations

import math

import torch
from scipy.optimize import minimize_scalar

from hsiseg.models.card import TemperatureScaling

LOG_T_BOUNDS = (math.log(0.05), math.log(50.0))


def negative_log_likelihood(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> float:
    """Mean -log softmax(z / T)[y] over P pixels: ``logits`` (P, C) float, ``targets`` (P,) leaf codes."""
    return float(torch.nn.functional.cross_entropy(logits.double() / temperature, targets.long()))


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, num_leaves: int) -> TemperatureScaling | None:
    """The temperature minimising the held-out NLL of the leaf-labelled pixels among ``logits`` (P, C) and
    ``targets`` (P,) (partial labels left out); None without such a pixel. Bounded search over log T in
    [log 0.05, log 50] (Brent's method)."""
    keep = (targets >= 0) & (targets < num_leaves)
    if not keep.any():
        return None
    logits, targets = logits[keep].double(), targets[keep]
    found = minimize_scalar(lambda log_t: negative_log_likelihood(logits, targets, math.exp(log_t)),
                            bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})  # fmt: skip
    return TemperatureScaling(
        temperature=float(math.exp(found.x)),
        held_out_pixels=int(keep.sum()),
        nll_before=negative_log_likelihood(logits, targets, 1.0),
        nll_after=float(found.fun),
    )
