"""hsiseg.training.temperature: the fitted temperature minimises held-out NLL (grid reference), recovers a known
over-confidence, leaves partial labels out; predictions apply the card's temperature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hsiseg.training.temperature import fit_temperature, negative_log_likelihood


def overconfident(pixels: int = 4000, classes: int = 5, sharpening: float = 3.0, seed: int = 0):
    """Labels drawn from softmax(u); logits = sharpening * u (a network that is too sure by that factor)."""
    generator = torch.Generator().manual_seed(seed)
    true_logits = torch.randn(pixels, classes, generator=generator) * 1.5
    labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=generator).flatten()
    return true_logits * sharpening, labels


def test_recovers_a_known_overconfidence_and_matches_a_grid() -> None:
    logits, labels = overconfident()
    fitted = fit_temperature(logits, labels, 5)
    assert fitted.temperature == pytest.approx(3.0, rel=0.1)
    grid = np.exp(np.linspace(math.log(0.05), math.log(50), 4001))
    nll = [negative_log_likelihood(logits, labels, t) for t in grid]
    assert fitted.temperature == pytest.approx(grid[int(np.argmin(nll))], rel=0.01)
    assert fitted.nll_after <= min(nll) + 1e-6 and fitted.nll_after < fitted.nll_before
    assert fitted.nll_before == pytest.approx(negative_log_likelihood(logits, labels, 1.0))
    assert fitted.held_out_pixels == 4000


def test_partial_labels_are_left_out_and_no_pixel_gives_none() -> None:
    logits, labels = overconfident(pixels=500)
    marked = labels.clone()
    marked[:100] = 7  # internal nodes (codes >= classes) are not leaf labels
    fitted = fit_temperature(logits, marked, 5)
    assert fitted.held_out_pixels == 400
    assert fitted.temperature == pytest.approx(fit_temperature(logits[100:], labels[100:], 5).temperature, rel=1e-3)
    assert fit_temperature(logits, torch.full_like(labels, 9), 5) is None
