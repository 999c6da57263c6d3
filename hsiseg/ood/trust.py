"""What a user can trust in a map's unknown tissue: the calibrated promise, and warnings for frames unlike the
data the calibration saw.

- :func:`promise`: one line per map: the score in use, its threshold and what it was calibrated to keep
  (``keep`` of held-out known tissue, on how many held-out pixels; transferred to a refit network), or that a
  hand-set threshold carries no promise.
- :func:`frame_warnings`: a frame whose typical pixel scores below what 95% of the training images' pixels
  scored (``reference_low``: median score < the 5% quantile of the transfer sample) is unlike the training
  data (another camera, illumination, calibration, or mostly new tissue): its unknown share and its
  classes deserve doubt. A frame flagging far more pixels than the training images did is named as well.
"""

from __future__ import annotations

import numpy as np

from hsiseg.models.card import OodCalibration

MOSTLY_INVALID = 0.5  # share of invalid pixels above which a frame is reported (saturated, dark, no white)
MANY_UNKNOWN = 0.25  # a frame flagging more than this share, and 4x the training images' share, is reported


def promise(score: str | None, threshold: float | None, calibration: OodCalibration | None) -> str:
    """The calibrated promise of the unknown-tissue map (see module docstring)."""
    if score is None:
        return "unknown tissue: no calibrated score; every pixel gets a class"
    if calibration is None or threshold != calibration.threshold:
        return f"unknown tissue by '{score}' below {threshold:.4g}: a threshold set by hand, no calibrated promise"
    how = {"cross-fitted": "annotated pixels, each scored without its stroke"}.get(calibration.origin or "",
                                                                                  "held-out pixels")
    if calibration.method == "transferred":
        how += ", transferred to the refit"
    return (f"unknown tissue by '{score}' below {threshold:.4g}: calibrated to keep {calibration.keep:.0%} of known "
            f"tissue ({calibration.held_out_pixels} {how}); the training images had "
            f"{calibration.reference_share:.1%} of their pixels flagged")  # fmt: skip


def invalid_warnings(invalid: np.ndarray) -> list[str]:
    """``mostly invalid: N% ...`` when more than :data:`MOSTLY_INVALID` of the (H, W) frame has no usable
    spectrum (saturated, dark, a white reference without signal), else nothing."""
    share = float(invalid.mean()) if invalid.size else 0.0
    return [f"mostly invalid: {share:.0%} of pixels have no usable spectrum"] if share > MOSTLY_INVALID else []


def frame_warnings(score: np.ndarray, unknown: np.ndarray, invalid: np.ndarray, calibration: OodCalibration | None
                   ) -> list[str]:  # fmt: skip
    """Warnings for one frame: ``score`` (H, W) float (higher = more known), ``unknown`` and ``invalid`` (H, W)
    bool masks; none without a calibration or a valid pixel (:func:`invalid_warnings` reports those)."""
    valid = ~invalid
    if calibration is None or not valid.any():
        return []
    warnings = []
    if calibration.reference_low is not None and float(np.median(score[valid])) < calibration.reference_low:
        warnings.append("unlike the training data: half of this frame's pixels score below what 95% of the "
                        "training images' pixels scored (another camera, light or calibration, or mostly new "
                        "tissue); check the frame before trusting its classes")  # fmt: skip
    share = float(unknown[valid].mean())
    if share > MANY_UNKNOWN and share > 4 * calibration.reference_share:
        had = f"{calibration.reference_share:.1%}"
        warnings.append(f"{share:.0%} flagged unknown where the training images had {had}: much tissue the model "
                        "never saw, or a shifted frame")  # fmt: skip
    return warnings
