"""One threshold per predicted class (class-conditional, "Mondrian" calibration) against hsiseg's pooled one.

Run: ``python benchmarks/experiment_class_thresholds.py [--data ...] [--seeds 3] [--quick]`` (CPU, about 20
min for the three real scenes and three seeds).

hsiseg's default on one scene (``spectral_knn``, cross-fitted) thresholds every pixel at the ``1 - keep``
quantile of the out-of-fold values of *all* strokes pooled. Per run that threshold is set by the few least
typical strokes, often of one heterogeneous class (docs/unknown-tissue.md, "Three seeds"). Class-conditional
conformal calibration (Vovk's Mondrian conformal prediction) takes the quantile per class instead, and judges
a pixel against the threshold of the class the network predicts there: each class then keeps ``keep`` of its
own tissue, and a homogeneous class is no longer judged by a heterogeneous class's tail. A class with fewer
than ``MIN_PIXELS`` out-of-fold values keeps the pooled threshold.

Protocol (``benchmarks/ood.py``'s: each leaf and each family held out in turn, hsiseg trained with its
defaults, scored on the labelled, unscribbled pixels of the scene). The out-of-fold values and their classes
are recorded while ``hsiseg.training.train`` calibrates (the library keeps only the threshold), and three
rules are applied to the final model's score map: the card's threshold (transferred to the refit), the pooled
out-of-fold quantile, and the per-class quantiles. Reported: known tissue flagged and unknown caught, mean and
worst over rotations and seeds, for keep = 0.95.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from ood import held_out_sets, scored_pixels, without  # noqa: E402
from quality import REAL_SCENES, DataSet, scene_experiment  # noqa: E402

import hsiseg.ood.cross_fitting as cross_fitting  # noqa: E402
import hsiseg.training.calibration as training_calibration  # noqa: E402
from hsiseg.predict.inference import Predictor  # noqa: E402
from hsiseg.training import TrainConfig, final_checkpoint, train  # noqa: E402

SCORE = "spectral_knn"
KEEP = 0.95
MIN_PIXELS = 20  # fewer out-of-fold values of a class: the pooled threshold
RULES = ("card (pooled, transferred)", "pooled out-of-fold", "per class")


def class_thresholds(values: np.ndarray, codes: np.ndarray, num_leaves: int, keep: float = KEEP,
                     min_pixels: int = MIN_PIXELS) -> np.ndarray:  # fmt: skip
    """(num_leaves,) thresholds: the ``1 - keep`` quantile of the (P,) out-of-fold ``values`` of each class
    (``codes`` (P,) leaf codes), the pooled quantile for a class with fewer than ``min_pixels`` values."""
    thresholds = np.full(num_leaves, np.quantile(values, 1 - keep))
    for code in np.unique(codes):
        if np.sum(codes == code) >= min_pixels:
            thresholds[code] = np.quantile(values[codes == code], 1 - keep)
    return thresholds


@contextmanager
def recorded_calibration():
    """While training calibrates: the folds and targets of cross-fitting and the out-of-fold values, recorded
    in the yielded dict (``targets``, ``folds``: sample id -> (H, W); ``values``: score -> (P,))."""
    seen: dict = {}
    folds_of, fitted = cross_fitting.subject_folds, training_calibration.cross_fitted

    def folds(targets, subjects, count, seed):
        seen["targets"], seen["folds"] = targets, folds_of(targets, subjects, count, seed)
        return seen["folds"]

    def crossed(*args, **kwargs):
        scores, seen["values"] = fitted(*args, **kwargs)
        return scores, seen["values"]

    cross_fitting.subject_folds, training_calibration.cross_fitted = folds, crossed
    try:
        yield seen
    finally:
        cross_fitting.subject_folds, training_calibration.cross_fitted = folds_of, fitted


def out_of_fold_codes(targets: dict[str, np.ndarray], folds: dict[str, np.ndarray]) -> np.ndarray:
    """(P,) leaf codes of the out-of-fold values, in cross-fitting's order (per image, per fold, row-major)."""
    return np.concatenate([targets[key][folds[key] == k] for key in targets for k in np.unique(folds[key])
                           if k >= 0])  # fmt: skip


def run(data: DataSet, seed: int, steps: int | None = None) -> list[tuple]:
    """(scene, held out, rule, known flagged, unknown caught) for every held-out set of one scene."""
    config = replace(TrainConfig() if steps is None else TrainConfig(steps=steps, validate_every=steps),
                     seed=seed, device="cpu")  # fmt: skip
    sample_id, leaves = data.train_ids[0], data.spec.tree.num_leaves
    rows = []
    for index, (name, held_out) in enumerate(held_out_sets(data, quick=False)):
        folder = data.spec.path.parent / f"without-{index}"
        torch.manual_seed(seed)
        with recorded_calibration() as seen:
            train(without(data.spec, held_out, folder), folder / "run", config)
        values = seen["values"][SCORE]
        per_class = class_thresholds(values, out_of_fold_codes(seen["targets"], seen["folds"]), leaves)
        predictor = Predictor.from_checkpoint(final_checkpoint(folder / "run"), ood_score=SCORE)
        prediction = predictor.predict(data.spec.read_cube(sample_id))
        unknown, known = scored_pixels(data, sample_id, held_out)
        pooled = float(np.quantile(values, 1 - KEEP))
        limits = {RULES[0]: np.full(leaves, predictor.ood_threshold), RULES[1]: np.full(leaves, pooled),
                  RULES[2]: per_class}  # fmt: skip
        for rule, limit in limits.items():
            below = prediction.score < limit[prediction.labels]  # each pixel against its predicted class's
            rows.append((data.name, name, rule, float(below[known].mean()), float(below[unknown].mean())))
    return rows


def summarise(rows: list[tuple]) -> str:
    groups: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for scene, _, rule, flagged, caught in rows:
        groups[(scene, rule)].append((flagged, caught))
    lines = [f"| scene | rule | known flagged, mean (worst; promise {1 - KEEP:.0%}) | unknown caught, mean (worst) |",
             "|---|---|---|---|"]  # fmt: skip
    for (scene, rule), values in groups.items():
        flagged, caught = np.array(values).T
        lines.append(f"| {scene} | {rule} | {flagged.mean():.1%} ({flagged.max():.1%}) | "
                     f"{caught.mean():.1%} ({caught.min():.1%}) |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    steps = 12 if argv and "--quick" in argv else None
    return scene_experiment(argv, __doc__.splitlines()[0], [*REAL_SCENES], 3, partial(run, steps=steps), summarise)


if __name__ == "__main__":
    main()
