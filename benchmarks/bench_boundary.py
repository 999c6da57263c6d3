"""Boundary metrics: hsiseg's NSD and ASD (``hsiseg.evaluation.boundary``, scipy distance transforms) against
MONAI's ``compute_surface_dice`` and ``compute_average_surface_distance(symmetric=True)``, values and time.

Run: ``python benchmarks/bench_boundary.py`` (``--images 20 --classes 10 --repeats 3``). Truth: smooth random
blobs on 480 x 640 (Tivita size); prediction: the truth shifted by a few pixels with 2% speckle and one class
never predicted (so NSD 0 / ASD inf cases occur). Both libraries get the same label maps in one process; MONAI's
time includes the one-hot encoding it needs. Each repeat times both on all images, alternating which goes first;
the ratio reported is the median of the per-repeat ratios hsiseg / MONAI.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch
from scipy import ndimage

from hsiseg.evaluation.boundary import boundary_scores

Pairs = list[tuple[np.ndarray, np.ndarray]]  # (H, W) prediction and truth label maps


def label_maps(images: int, classes: int, shape: tuple[int, int], seed: int) -> Pairs:
    """``images`` pairs of (H, W) prediction and truth label maps with values 0 .. classes - 1."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(images):
        noise = ndimage.gaussian_filter(rng.standard_normal((classes, *shape)).astype(np.float32), (0, 12, 12))
        truth = noise.argmax(0)
        prediction = np.roll(truth, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
        speckle = rng.random(shape) < 0.02
        prediction[speckle] = rng.integers(0, classes, int(speckle.sum()))
        prediction[prediction == classes - 1] = 0  # the last class is never predicted
        pairs.append((prediction, truth))
    return pairs


def hsiseg_scores(pairs: Pairs, classes: int, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    results = [boundary_scores(prediction, truth, range(classes), tolerance) for prediction, truth in pairs]
    return np.stack([r[0] for r in results]), np.stack([r[1] for r in results])


def monai_scores(pairs: Pairs, classes: int, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    from monai.metrics import compute_average_surface_distance, compute_surface_dice

    nsd, asd = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the prediction of class k is all 0": intended here
        for prediction, truth in pairs:
            p, t = (
                torch.nn.functional.one_hot(torch.from_numpy(x[None]), classes).permute(0, 3, 1, 2)
                for x in (prediction, truth)
            )
            nsd.append(compute_surface_dice(p, t, [tolerance] * classes, include_background=True)[0].numpy())
            asd.append(compute_average_surface_distance(p, t, include_background=True, symmetric=True)[0].numpy())
    return np.stack(nsd).astype(np.float64), np.stack(asd).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--tolerance", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import monai
    import scipy

    versions = f"monai {monai.__version__}, scipy {scipy.__version__}, torch {torch.__version__}"
    print(f"{versions} ({torch.get_num_threads()} threads); {args.images} label maps 480 x 640, {args.classes} "
          f"classes, NSD tolerance {args.tolerance:g} px")  # fmt: skip
    pairs = label_maps(args.images, args.classes, (480, 640), seed=0)
    hsiseg_scores(pairs[:1], args.classes, args.tolerance)  # warm-up: imports, allocator
    monai_scores(pairs[:1], args.classes, args.tolerance)
    ratios, ours_times, monai_times = [], [], []
    for repeat in range(args.repeats):
        runs = [("hsiseg", hsiseg_scores, ours_times), ("monai", monai_scores, monai_times)]
        if repeat % 2:
            runs.reverse()
        values = {}
        for name, function, times in runs:
            start = time.perf_counter()
            values[name] = function(pairs, args.classes, args.tolerance)
            times.append(time.perf_counter() - start)
        ratios.append(ours_times[-1] / monai_times[-1])
    (nsd, asd), (monai_nsd, monai_asd) = values["hsiseg"], values["monai"]
    same_pattern = np.array_equal(np.isnan(nsd), np.isnan(monai_nsd)) and np.array_equal(
        np.isinf(asd), np.isinf(monai_asd)
    )
    finite = np.isfinite(asd)
    nsd_gap = float(np.nanmax(np.abs(nsd - monai_nsd)))
    asd_gap = float(np.max(np.abs(asd[finite] - monai_asd[finite]) / np.maximum(monai_asd[finite], 1e-12)))
    agree = same_pattern and nsd_gap < 1e-6 and asd_gap < 1e-5
    print(f"values agree: {agree} (NaN/inf cases identical: {same_pattern}; max |NSD difference| {nsd_gap:.1e}, "
          f"max relative ASD difference {asd_gap:.1e}; {int(np.isinf(asd).sum())} of {asd.size} image-class "
          f"pairs ASD inf)")  # fmt: skip
    print(f"mean NSD {np.nanmean(nsd):.4f} (MONAI {np.nanmean(monai_nsd):.4f}); mean finite ASD "
          f"{asd[finite].mean():.4f} px (MONAI {monai_asd[finite].mean():.4f} px)")  # fmt: skip
    print("| | hsiseg | MONAI | ratio hsiseg / MONAI |")
    print("|---|---|---|---|")
    print(f"| {args.images} images, median of {args.repeats} | {statistics.median(ours_times):.2f} s | "
          f"{statistics.median(monai_times):.2f} s | {statistics.median(ratios):.3f}x "
          f"({min(ratios):.3f}-{max(ratios):.3f}) |")  # fmt: skip


if __name__ == "__main__":
    main()
