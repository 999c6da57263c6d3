"""The guided spatial context on full-size frames: computed in cache-sized bands of rows against the whole frame
at once (what hsiseg did before; the numbers are bit-identical, tested in tests/test_models.py).

Run: ``python benchmarks/bench_context.py`` (``--repeats 5``). Frames of 480 x 640 (Tivita) and 96 x 128 (the
demo) with 14 classes (the demo tree) and 100 (the rich tree); medians of pairwise ratios in one process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from hsiseg.models.spectral_spatial import guided_average

sys.path.insert(0, str(Path(__file__).parent))
from common import paired_ratio  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; sigma 2, tau 1 (the default context)")
    print("| frame | classes | banded s | whole frame s | ratio (median) |")
    print("|---|---|---|---|---|")
    for height, width in ((96, 128), (480, 640)):
        for classes in (14, 100):
            probabilities = torch.softmax(torch.randn(1, classes, height, width), 1)
            guide = torch.randn(1, classes, height, width)

            def banded(p=probabilities, g=guide) -> torch.Tensor:
                return guided_average(p, g, 2.0, 1.0)

            def whole(p=probabilities, g=guide, rows=height) -> torch.Tensor:
                return guided_average(p, g, 2.0, 1.0, block_rows=rows)

            ratio, ours, base = paired_ratio(banded, whole, args.repeats)
            print(f"| {height} x {width} | {classes} | {ours / 1e3:.2f} | {base / 1e3:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
