"""Probability calibration of the top label: expected calibration error (ECE) and reliability-diagram bins.

Plain numpy, no plotting. Definitions (Guo et al. 2017, "On calibration of modern neural networks"; the same
binning as the DKFZ htc framework's ``ECELoss``):

- A pixel's **confidence** is its largest class probability, the class it names is the argmax, and the pixel
  is **correct** when that class is the truth (top-label calibration).
- ``B`` equal-width bins over [0, 1] with edges ``k / B``; bin ``b`` holds confidences in
  ``(b / B, (b + 1) / B]`` (right-closed; a confidence of exactly 0, impossible for a top label, falls in bin 0).
- Per bin: ``n_b`` pixels, mean confidence ``conf_b``, accuracy ``acc_b`` (share correct); empty bins are
  NaN and carry no weight.
- ``ECE = sum_b (n_b / N) |acc_b - conf_b|``: 0 for a perfectly calibrated model, at most 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ECE_BINS = 15


@dataclass(frozen=True)
class CalibrationBins:
    """Per-bin sums of a set of (confidence, correct) pairs; add two with ``+`` to pool images."""

    counts: np.ndarray  # (B,) int64 pixels per bin
    confidence_sums: np.ndarray  # (B,) float64 sum of the confidences in each bin
    correct_sums: np.ndarray  # (B,) int64 correct pixels per bin

    @property
    def bins(self) -> int:
        return len(self.counts)

    @property
    def edges(self) -> np.ndarray:
        """(B + 1,) bin edges ``k / B``."""
        return bin_edges(self.bins)

    @property
    def mean_confidence(self) -> np.ndarray:
        """(B,) mean confidence per bin; NaN for empty bins."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.confidence_sums / self.counts, np.nan)

    @property
    def accuracy(self) -> np.ndarray:
        """(B,) share of correct pixels per bin; NaN for empty bins."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.correct_sums / self.counts, np.nan)

    @property
    def ece(self) -> float:
        """Expected calibration error from these bins; NaN when they hold no pixel."""
        total = self.counts.sum()
        if not total:
            return float("nan")
        filled = self.counts > 0
        gaps = np.abs(self.accuracy[filled] - self.mean_confidence[filled])
        return float((self.counts[filled] / total * gaps).sum())

    def __add__(self, other: CalibrationBins) -> CalibrationBins:
        if other.bins != self.bins:
            raise ValueError(f"cannot pool {self.bins} bins with {other.bins}")
        return CalibrationBins(
            self.counts + other.counts,
            self.confidence_sums + other.confidence_sums,
            self.correct_sums + other.correct_sums,
        )


def bin_edges(bins: int = ECE_BINS) -> np.ndarray:
    """(bins + 1,) equal-width edges over [0, 1]: exactly ``k / bins`` (so ``0.2`` is an edge of 15 bins)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    return np.arange(bins + 1) / bins


def bin_index(confidence: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """Bin of each confidence, any shape -> same shape int64 in ``0 .. bins - 1`` (right-closed bins)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    index = np.searchsorted(bin_edges(bins), confidence, side="left") - 1  # an edge k/B goes to bin k - 1
    return np.clip(index, 0, bins - 1)


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> CalibrationBins:
    """Pixels, summed confidence and correct pixels per bin.

    ``confidence``: (N,) top-label probabilities in [0, 1]; ``correct``: (N,) bool, the top label is the truth.
    """
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=bool).ravel()
    if confidence.shape != correct.shape:
        raise ValueError(f"confidence {confidence.shape} and correct {correct.shape} differ in shape")
    if confidence.size and not (np.isfinite(confidence).all() and confidence.min() >= 0 and confidence.max() <= 1):
        raise ValueError("confidences must be finite probabilities in [0, 1]")
    index = bin_index(confidence, bins)
    return CalibrationBins(
        np.bincount(index, minlength=bins).astype(np.int64),
        np.bincount(index, weights=confidence, minlength=bins),
        np.bincount(index[correct], minlength=bins).astype(np.int64),
    )


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of (N,) top-label confidences and (N,) bool correctness over ``bins`` equal-width bins; NaN if N = 0."""
    return calibration_bins(confidence, correct, bins).ece


def top_label(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and predicted class of class probabilities (C, ...) with the class axis first (hsiseg's
    (C, H, W) maps, or (C, N)): returns (...,) float64 max probability and (...,) int64 argmax (the first of
    tied maxima)."""
    probabilities = np.asarray(probabilities)
    return probabilities.max(0).astype(np.float64), probabilities.argmax(0).astype(np.int64)


def ece_from_probabilities(probabilities: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE of (C, N) class probabilities against (N,) true class indices ``0 .. C-1``."""
    confidence, predicted = top_label(probabilities)
    return expected_calibration_error(confidence, predicted == np.asarray(truth), bins)
