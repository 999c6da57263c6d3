"""Do input-space unknown-tissue scores separate a held-out class better when averaged over regions?

Run: ``python benchmarks/experiment_region_scores.py [--data ...] [--seeds 2] [--quick]`` (CPU, under a minute).

A held-out tillage variant of the Indian Pines crops is inseparable pixel by pixel by every score
(docs/unknown-tissue.md). Crops grow in fields, so a small but consistent spectral shift of a whole field
might show when pixels are pooled: averaging N pixels' noise shrinks it by sqrt(N). This experiment scores the
input-space scores (``spectral_knn``, ``spectral_mahalanobis``; fitted on the strokes of every class but the
held-out one, no network) pixel by pixel (the baseline, in the same run) and pooled three ways: the mean score
over superpixels of about 25 and 100 pixels (SLIC on the first 8 principal components, as ``hsiseg suggest``
builds them), the score of each superpixel's mean spectrum, and a Gaussian average of the score map (sigma 2
pixels). AUROC of the held-out class's pixels against the known classes' unscribbled pixels, each leaf held
out in turn, mean (and worst) over leaves and seeds.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from skimage.segmentation import slic
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
from experiment_calibration import fitted, scored  # noqa: E402
from ood import held_out_sets, scored_pixels  # noqa: E402
from quality import REAL_SCENES, features, scene_experiment  # noqa: E402

from hsiseg.active.suggest import _principal_components  # noqa: E402
from hsiseg.labels import UNLABELLED  # noqa: E402

SCORES = ("spectral_knn", "spectral_mahalanobis")
REGION_SIZES = (25, 100)


def superpixels(image: np.ndarray, pixels_each: int) -> np.ndarray:
    """(H, W) labels of SLIC superpixels of about ``pixels_each`` pixels on an (H, W, B) image."""
    height, width, bands = image.shape
    components = _principal_components(image.reshape(-1, bands).astype(np.float64), 8, 0)
    return slic(components.reshape(height, width, -1), n_segments=max(1, height * width // pixels_each),
                compactness=0.1, channel_axis=-1, start_label=0, enforce_connectivity=True)  # fmt: skip


def region_mean(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each pixel's (H, W) ``values`` replaced by the mean over its region."""
    count = labels.max() + 1
    sums = np.bincount(labels.ravel(), values.ravel(), count)
    return (sums / np.maximum(np.bincount(labels.ravel(), None, count), 1))[labels]


def pooled_variants(score, values: np.ndarray, image: np.ndarray, regions: dict[int, np.ndarray]) -> dict:
    variants = {"pixel by pixel (baseline)": values}
    for size, labels in regions.items():
        variants[f"mean score over ~{size}-pixel superpixels"] = region_mean(values, labels)
        means = np.stack([region_mean(image[..., band], labels) for band in range(image.shape[2])], -1)
        spectra = torch.from_numpy(means.reshape(-1, image.shape[2])).float()
        variants[f"score of the mean spectrum of ~{size}-pixel superpixels"] = scored(score, spectra, values.shape)
    variants["Gaussian average of the score (sigma 2)"] = ndimage.gaussian_filter(values, 2)
    return variants


def run(data, seed: int) -> list[tuple[str, str, str, float]]:
    spec, sample_id = data.spec, data.train_ids[0]
    image = features(spec, sample_id, spec.fitted_preprocessing())
    shape = image.shape[:2]
    spectra = torch.from_numpy(np.ascontiguousarray(image.reshape(-1, image.shape[2]))).float()
    scribbles = spec.read_annotation(sample_id, shape)
    regions = {size: superpixels(image, size) for size in REGION_SIZES}
    rows = []
    for _, held_out in held_out_sets(data, quick=False):
        if len(held_out) > 1:
            continue
        target = scribbles.copy()
        target[(target >= spec.tree.num_leaves) | (target == spec.tree.index(held_out[0]))] = UNLABELLED
        unknown, known = scored_pixels(data, sample_id, held_out)
        truth = np.r_[np.ones(unknown.sum()), np.zeros(known.sum())]
        for name in SCORES:
            score = fitted(name, spectra, target, target != UNLABELLED)
            for variant, values in pooled_variants(score, scored(score, spectra, shape), image, regions).items():
                auroc = roc_auc_score(truth, -np.r_[values[unknown], values[known]])
                rows.append((data.name, name, variant, float(auroc)))
    return rows


def summarise(rows: list[tuple[str, str, str, float]]) -> str:
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for scene, name, variant, auroc in rows:
        groups[(scene, name, variant)].append(auroc)
    lines = ["| scene | score | pooling | AUROC, mean (worst) |", "|---|---|---|---|"]
    for (scene, name, variant), values in groups.items():
        lines.append(f"| {scene} | {name} | {variant} | {np.mean(values):.3f} ({np.min(values):.3f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    return scene_experiment(argv, __doc__.splitlines()[0], list(REAL_SCENES), 2, run, summarise)

if __name__ == "__main__":
    main()
