"""Training throughput on CPU for the default network, and the data pipeline's overhead.

Run: ``python benchmarks/bench_train.py`` (``--steps 10 --rounds 5 --workers 0``).

- Steps per second and pixels per second of one optimisation step (forward, tree-ce loss, backward, AdamW)
  of the default U-Net (width 32, depth 4) on batches of 8 patches of 64 x 64 x 100 bands.
- Pipeline overhead: time of ``--steps`` steps fed by the real dataset (synthetic demo scenes, annotated-biased
  patch sampling, augmentation, collation) divided by the same number of steps on one batch already in
  memory, alternating the two in one process; the median ratio over ``--rounds`` is reported (target <= 1.1x).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hsiseg.dataset.spec import DataSpec
from hsiseg.dataset.torch_datasets import Augmentation, SpecDataset, make_loader
from hsiseg.losses import build_loss
from hsiseg.models import build_model
from hsiseg.synthetic.dataset import generate_demo_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        spec = DataSpec.from_file(generate_demo_data(Path(folder), surgeries=4, frames=3, shape=(96, 128)))
        dataset = SpecDataset(
            spec, "train", patch_size=args.patch_size, patches_per_epoch=10**6, augmentation=Augmentation()
        )
        loader = make_loader(dataset, args.batch_size, workers=args.workers)
        model = build_model("unet", dataset.num_bands, spec.tree.num_leaves, width=32, depth=4)
        loss_fn = build_loss("tree-ce", spec.tree)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        fixed = next(iter(loader))

        def step(batch) -> None:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(batch["image"]), batch["target"]).backward()
            optimizer.step()

        def from_memory() -> float:
            start = time.perf_counter()
            for _ in range(args.steps):
                step(fixed)
            return time.perf_counter() - start

        stream = iter(loader)

        def from_dataset() -> float:
            start = time.perf_counter()
            for _ in range(args.steps):
                step(next(stream))
            return time.perf_counter() - start

        from_memory(), from_dataset()  # warm-up
        ratios, memory_times = [], []
        for i in range(args.rounds):
            first, second = (from_memory, from_dataset) if i % 2 == 0 else (from_dataset, from_memory)
            a, b = first(), second()
            memory, real = (a, b) if first is from_memory else (b, a)
            ratios.append(real / memory)
            memory_times.append(memory / args.steps)
    seconds = statistics.median(memory_times)
    pixels = args.batch_size * args.patch_size**2
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads, workers {args.workers}")
    print("| measure | value |")
    print("|---|---|")
    shape = f"{args.batch_size} x 100 x {args.patch_size} x {args.patch_size}"
    print(f"| steps per second (batch {shape}) | {1 / seconds:.2f} |")
    print(f"| pixels per second | {pixels / seconds:,.0f} |")
    ratio = statistics.median(ratios)
    print(f"| step time, dataset-fed / in-memory (median of {args.rounds}) | {ratio:.3f}x (target <= 1.1x) |")


if __name__ == "__main__":
    main()
