"""The guided spatial context (the default network's) on full-size frames: each offset's pair weights computed
once for the pixel pairs at +d and -d (today's :func:`~hsiseg.models.spectral_spatial.guided_average`) against
computing them for every offset (the previous code, kept here as the baseline). Both run in the same
cache-sized bands of rows; they agree to float rounding (checked here, and against a brute-force reference in
tests/test_models.py).

Run: ``python benchmarks/bench_context.py`` (``--repeats 5``). Frames of 480 x 640 (Tivita), 217 x 409 (a
snapshot-mosaic recording) and 96 x 128 (the demo) with 14 classes (the demo tree) and 100 (the rich tree);
medians of pairwise ratios in one process. Then the whole prediction of the default network (untrained, as
in bench_predict.py) on a recording frame and a Tivita frame with today's kernel and the previous one.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

import hsiseg.models.spectral_spatial as spectral_spatial
from hsiseg.models.spectral_spatial import guided_average

sys.path.insert(0, str(Path(__file__).parent))
from common import paired_ratio  # noqa: E402

T = TypeVar("T")


def every_offset_band(
    padded_p: torch.Tensor, padded_g: torch.Tensor, guide: torch.Tensor, sigma: float, scale: torch.Tensor, radius: int
) -> torch.Tensor:
    """The previous band kernel: the weights of all (2 r + 1)^2 offsets, each computed for its own direction."""
    height, width = guide.shape[-2:]
    total = torch.zeros((*padded_p.shape[:2], height, width), dtype=padded_p.dtype, device=padded_p.device)
    weight_sum = torch.zeros_like(total[:, :1])
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            rows, columns = slice(radius + dy, radius + dy + height), slice(radius + dx, radius + dx + width)
            difference = (padded_g[..., rows, columns] - guide).pow(2).sum(1, keepdim=True)
            weight = math.exp(-(dy * dy + dx * dx) / (2 * sigma**2)) * torch.exp(
                -difference / (2 * scale.view(-1, 1, 1, 1))
            )
            total += weight * padded_p[..., rows, columns]
            weight_sum += weight
    return total / weight_sum


def previous(function: Callable[[], T]) -> T:
    """``function()`` with the previous band kernel in place of today's."""
    today = spectral_spatial._guided_band
    spectral_spatial._guided_band = every_offset_band
    try:
        return function()
    finally:
        spectral_spatial._guided_band = today


def context_alone(repeats: int) -> None:
    print("| frame | classes | pairs s | every offset s | ratio (median) | largest difference |")
    print("|---|---|---|---|---|---|")
    for height, width in ((96, 128), (217, 409), (480, 640)):
        for classes in (14, 100):
            probabilities = torch.softmax(torch.randn(1, classes, height, width), 1)
            guide = 3 * torch.randn(1, classes, height, width)

            def pairs(p=probabilities, g=guide) -> torch.Tensor:
                return guided_average(p, g, 2.0, 1.0)

            def before(run=pairs) -> torch.Tensor:
                return previous(run)

            difference = (pairs() - before()).abs().max().item()
            ratio, ours, base = paired_ratio(pairs, before, repeats)
            print(f"| {height} x {width} | {classes} | {ours / 1e3:.3f} | {base / 1e3:.3f} | {ratio:.2f}x | "
                  f"{difference:.1e} |")  # fmt: skip


def whole_prediction(repeats: int) -> None:
    """``Predictor.predict`` of the default network (untrained) on a recording frame and a Tivita frame."""
    from bench_predict import make_inputs
    from bench_stream import default_model, recording

    from hsiseg.io import read_cube
    from hsiseg.predict import Predictor

    print("\n| frame (default network) | predict s | with the previous kernel s | ratio (median) | labels equal |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        video = recording(root, 1, (1088, 2048))
        model, frames = make_inputs(root, 1, 480, 640, "default")
        cases = [("recording, 217 x 409 x 25", default_model(root), video.cube(0)),
                 ("Tivita, 480 x 640 x 100", model, read_cube(frames[0]))]  # fmt: skip
        for name, checkpoint, cube in cases:
            predictor = Predictor.from_checkpoint(checkpoint)
            prepared = predictor.prepare(cube)

            def today(p=predictor, c=cube, x=prepared):
                return p.predict(c, x)

            def before(run=today):
                return previous(run)

            equal = float((today().labels == before().labels).mean())
            ratio, ours, base = paired_ratio(today, before, repeats)
            print(f"| {name} | {ours / 1e3:.3f} | {base / 1e3:.3f} | {ratio:.2f}x | {equal:.4%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; sigma 2, tau 1 (the default context)")
    context_alone(args.repeats)
    whole_prediction(args.repeats)


if __name__ == "__main__":
    main()
