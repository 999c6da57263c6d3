"""Which unknown-tissue score a run makes the card's default, and how its threshold is calibrated, when the
configuration says ``auto`` (the default for both).

Where the held-out pixels come from decides (measured in docs/unknown-tissue.md):

- **strokes held out of the training images** (one scene, or splits that share images): the threshold of a
  feature score rests on the few held-out strokes and broke its promise by up to 4x on real scenes (Samson:
  20% of known tissue flagged where 5% was promised). An input-space score needs no network, so it is
  calibrated on *every* stroke, each scored as an unseen one (cross-fitting); ``spectral_knn`` cross-fitted
  kept the promise in 16 of 16 experiment cases and scored the best AUROC on the real scenes (0.932, 0.959).
- **a validation split of other images** (other patients or surgeries): a whole unseen subject calibrates the
  threshold honestly, and the feature score ``mahalanobis`` is the best measured there (0.989 on the demo's
  held-out surgery).
"""

from __future__ import annotations

from hsiseg.ood import DEFAULT_SCORE
from hsiseg.training.selection import AUTO  # the same word as model="auto"

CALIBRATIONS = ("held-out", "cross-fitted")
SCENE_CHOICE = ("spectral_knn", "cross-fitted")  # validation on strokes held out of the training images
SPLIT_CHOICE = (DEFAULT_SCORE, "held-out")  # validation on a split of other images


def unknown_tissue_choice(
    score: str, calibration: str, fitted: list[str], strokes_held_out: bool
) -> tuple[str, str]:
    """(score, calibration) a run uses: ``score`` and ``calibration`` as configured, each ``"auto"`` resolved
    by where the held-out pixels come from (``strokes_held_out``: strokes of the training images); an automatic
    score that is not among the ``fitted`` scores gives way to the other regime's, then to the first fitted."""
    preferred_score, preferred_calibration = SCENE_CHOICE if strokes_held_out else SPLIT_CHOICE
    if score == AUTO:
        ranked = [preferred_score, *(choice[0] for choice in (SCENE_CHOICE, SPLIT_CHOICE)), *fitted]
        score = next((name for name in ranked if name in fitted), preferred_score)
    return score, preferred_calibration if calibration == AUTO else calibration
