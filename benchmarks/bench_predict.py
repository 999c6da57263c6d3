"""Batch prediction of a recording: is reading and writing hidden behind compute, and is memory flat?

Run: ``python benchmarks/bench_predict.py`` (``--cubes 20 --height 480 --width 640``: Tivita-size cubes;
``--threads N``: the network's torch threads, by default one per core).

- Writes ``--cubes`` Tivita cubes (100 bands) and an untrained checkpoint: ``--model default`` (the default
  network, ``spectral-spatial`` with its guided context, and its default unknown-tissue score ``mahalanobis``
  fitted on random pixels) or ``--model unet`` (the earlier default: a U-Net of width 32 and depth 4 with
  ``max_softmax``).
- Time: total wall time of ``predict_batch`` over all cubes (reading, preprocessing, inference, the
  unknown-tissue score, writing maps, overlays and panels) divided by the pure network time for the same number
  of cubes (``Predictor.logits`` on preprocessed inputs already in memory; target <= 1.15x), and divided by the
  in-memory prediction time (``Predictor.predict``: network and unknown-tissue score, no reading or writing):
  the second ratio is what the pipeline's read-ahead and write-behind fail to hide. Per-frame times are
  averaged over 5 frames, measured in the same process just before and just after the batch.
- Memory: peak resident memory of a batch of all cubes against a batch of a quarter of them, each in a fresh
  process (target: within 10%).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hsiseg.io import Cube, read_cube, write_cube
from hsiseg.models import DEFAULT_MODEL
from hsiseg.models.checkpoint import save_model
from hsiseg.predict import PredictOptions, Predictor, predict_batch
from hsiseg.predict.untrained import untrained
from hsiseg.synthetic.dataset import demo_tree

sys.path.insert(0, str(Path(__file__).parent))
from common import measure_peak_rise, peak_in_child  # noqa: E402


def make_inputs(folder: Path, cubes: int, height: int, width: int, name: str) -> tuple[Path, list[Path]]:
    wavelengths = np.linspace(500, 1000, 100)
    unet = name == "unet"
    network = untrained(DEFAULT_MODEL if name == "default" else name, demo_tree(), wavelengths,
                        score="max_softmax" if unet else "mahalanobis",
                        options={"width": 32, "depth": 4} if unet else None)  # fmt: skip
    save_model(folder / "model", network.model, network.card, network.scores)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(cubes):
        data = (0.3 + 0.4 * rng.random((height, width, 100), dtype=np.float32)).astype(np.float32)
        paths.append(write_cube(folder / "frames" / f"frame{index:03d}_SpecCube.dat", Cube(data, wavelengths)))
    return folder / "model.json", paths


def child(folder: str, count: int) -> None:
    """In a fresh process: peak RSS rise of predicting the first ``count`` frames."""
    frames = sorted((Path(folder) / "frames").glob("*.dat"))[:count]
    output = Path(folder) / f"memory_{count}"
    print(
        measure_peak_rise(
            lambda: predict_batch(Path(folder) / "model.json", frames, output, PredictOptions(overwrite=True))
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cubes", type=int, default=20)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--model", choices=("default", "unet"), default="default")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for the network (default: torch's own, one per core); with fewer threads "
                        "than cores, the pipeline's reading and writing have a core of their own")  # fmt: skip
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        model_path, frames = make_inputs(folder, args.cubes, args.height, args.width, args.model)
        predictor = Predictor.from_checkpoint(model_path)  # with its fitted unknown-tissue score, as predict_batch
        loaded = [(cube, predictor.prepare(cube)) for cube in map(read_cube, frames[:4])]  # 4 inputs, cycled

        def per_frame(task, count: int = 5) -> float:
            start = time.perf_counter()
            for index in range(count):
                task(*loaded[index % len(loaded)])
            return (time.perf_counter() - start) / count

        def network(cube, prepared) -> None:
            predictor.logits(prepared.image)

        def compute(cube, prepared) -> None:
            predictor.predict(cube, prepared)

        per_frame(network, 2)  # warm-up
        before = per_frame(network), per_frame(compute)
        start = time.perf_counter()
        results = predict_batch(model_path, frames, folder / "out", PredictOptions())
        total = time.perf_counter() - start
        after = per_frame(network), per_frame(compute)
        # measured before and after the batch: drift cancels
        pure, alone = (len(frames) * (b + a) / 2 for b, a in zip(before, after, strict=True))
        assert all(r.status == "done" for r in results)
        quarter = max(1, args.cubes // 4)
        peak_all = peak_in_child(__file__, str(folder), str(args.cubes))
        peak_quarter = peak_in_child(__file__, str(folder), str(quarter))
    shape = f"{args.cubes} cubes of {args.height} x {args.width} x 100"
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads; {shape}; model {args.model}")
    print("| measure | value | target |")
    print("|---|---|---|")
    times = f"{total:.1f} s / {pure:.1f} s = {total / pure:.3f}x"
    print(f"| batch wall time / sum of pure network times | {times} | <= 1.15x |")
    hidden = f"{total:.1f} s / {alone:.1f} s = {total / alone:.3f}x"
    print(f"| batch wall time / sum of in-memory prediction times (network + unknown-tissue score) | {hidden} | |")
    print(f"| in-memory prediction / pure network | {alone / pure:.3f}x | |")
    print(f"| frames per second | {args.cubes / total:.2f} | |")
    memory = f"{peak_all / 2**20:.0f} MiB / {peak_quarter / 2**20:.0f} MiB = {peak_all / peak_quarter:.2f}x"
    print(f"| peak memory, {args.cubes} cubes / {quarter} cubes | {memory} | <= 1.10x |")


if __name__ == "__main__":
    main()
