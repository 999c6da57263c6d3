"""How fast can the prediction pipeline feed a network? Frames per second of ``predict_batch`` when the network
takes no time, with 1 worker against more (``--workers``), in one process.

Run: ``python benchmarks/bench_pipeline.py`` (``--cubes 12 --height 480 --width 640``: Tivita-size cubes;
``--workers 1 2 4``; ``--repeats 2``).

On a GPU the network pass of a Tivita frame takes a few milliseconds, and what limits frames per second is the
pipeline around it: reading the cube, normalising it, rendering its RGB image (the read-ahead), and writing
the maps, overlays and panels (the write-behind). This benchmark measures that ceiling on any machine: the
default network's checkpoint (untrained, as in ``bench_predict.py``) is loaded as usual, but
``Predictor.predict`` returns the prediction of the first frame, computed once before timing. Everything else
is the real ``predict_batch``: the cube files from disk, every output written. Runs of each worker count
alternate (``--repeats`` rounds), each into a fresh folder; the table gives the best round of each and its
ratio to 1 worker. A machine with fewer cores than workers cannot gain past its core count.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from hsiseg.io import read_cube
from hsiseg.predict import PredictOptions, Predictor, predict_batch

sys.path.insert(0, str(Path(__file__).parent))
from bench_predict import make_inputs  # noqa: E402


def frames_per_second(model: Path, frames: list[Path], output: Path, workers: int) -> float:
    start = time.perf_counter()
    results = predict_batch(model, frames, output, PredictOptions(workers=workers))
    seconds = time.perf_counter() - start
    assert all(result.status == "done" for result in results), [r.error for r in results]
    return len(frames) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cubes", type=int, default=12)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    counts = sorted({1, *args.workers})
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        model, frames = make_inputs(folder, args.cubes, args.height, args.width, "default")
        predictor = Predictor.from_checkpoint(model)
        cube = read_cube(frames[0])
        instant = predictor.predict(cube, predictor.prepare(cube))  # the one network pass, before timing
        Predictor.predict = lambda self, cube, prepared: instant  # type: ignore[method-assign]
        frames_per_second(model, frames[:2], folder / "warm-up", 1)
        best = dict.fromkeys(counts, 0.0)
        for round_ in range(args.repeats):
            for workers in counts:
                rate = frames_per_second(model, frames, folder / f"out_{round_}_{workers}", workers)
                best[workers] = max(best[workers], rate)
    shape = f"{args.cubes} cubes of {args.height} x {args.width} x 100"
    print(f"torch {torch.__version__}, {os.cpu_count()} cores; {shape}; network: instant (see docstring)")
    print(f"| workers | frames per second (best of {args.repeats}) | ratio to 1 worker |")
    print("|---|---|---|")
    for workers in counts:
        print(f"| {workers} | {best[workers]:.2f} | {best[workers] / best[1]:.2f}x |")


if __name__ == "__main__":
    main()
