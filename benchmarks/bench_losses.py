"""Forward+backward time and peak memory of the tree losses against plain ``ce`` and MONAI's GWDL.

Run: ``python benchmarks/bench_losses.py`` (options: ``--classes 16 107 256 --repeats 15 --size 128``).

These machines are noisy, so every comparison is made in one process, alternating candidate and baseline
call by call, and the reported figure is the median of the pairwise time ratios. Peak memory is the
rise of peak resident memory over one forward+backward, measured in a fresh process per loss.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hsiseg import LabelTree, build_loss

sys.path.insert(0, str(Path(__file__).parent))
from common import measure_peak_rise, paired_ratio, peak_in_child  # noqa: E402

TARGETS = {  # (baseline, maximum ratio) from issue 2
    "tree-wasserstein": ("ce", 1.5),
    "tree-ce": ("ce", 1.8),
    "tree-gwdl": ("monai-gwdl", 1.0),
}
MEMORY_TARGET = 2.0  # peak memory of every tree loss <= 2x ce


def make_tree(num_leaves: int) -> LabelTree:
    """A 3-level tree (4 families of ~5 groups) for up to ~120 leaves, a 4-level one above."""
    depth = 3 if num_leaves <= 128 else 4
    branching = round(num_leaves ** (1 / depth)) if depth == 4 else None
    counter = iter(range(num_leaves))

    def split(leaves: list[int], level: int) -> list:
        if level == depth:
            return [f"leaf{leaf}" for leaf in leaves]
        parts = 4 if level == 1 else (branching or max(2, round(len(leaves) ** 0.5)))
        groups = [list(group) for group in np.array_split(leaves, min(parts, len(leaves))) if len(group)]
        return [
            {"name": f"n{level}_{group[0]}", "children": split(group, level + 1)}
            if len(group) > 1
            else f"leaf{group[0]}"
            for group in groups
        ]

    leaves = [next(counter) for _ in range(num_leaves)]
    return LabelTree.from_dict({"name": "root", "children": split(leaves, 1)})


def step(loss: Callable, logits: torch.Tensor, target: torch.Tensor) -> None:
    logits.grad = None
    loss(logits, target).backward()


def peak_memory(name: str, num_classes: int, size: int, batch: int) -> int:
    """Peak extra resident memory (bytes) of one forward+backward, measured in a fresh process."""
    return peak_in_child(__file__, name, str(num_classes), str(size), str(batch))


def child_peak_memory(name: str, num_classes: int, size: int, batch: int) -> None:
    """Run in the child process: print the rise of peak RSS (bytes) over one forward+backward."""
    loss, logits, target = setup(name, num_classes, size, batch)
    print(measure_peak_rise(partial(step, loss, logits, target)))


def inputs(num_classes: int, size: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (batch, C, size, size) and targets with half the pixels unannotated (seeded)."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, num_classes, size, size, generator=generator).requires_grad_()
    target = torch.randint(0, num_classes, (batch, size, size), generator=generator)
    target[torch.rand(target.shape, generator=generator) < 0.5] = -100
    return logits, target


def setup(name: str, num_classes: int, size: int, batch: int) -> tuple[Callable, torch.Tensor, torch.Tensor]:
    """The loss called ``name`` (an hsiseg loss, ``torch-ce`` or ``monai-gwdl``) and its inputs."""
    tree = make_tree(num_classes)
    logits, target = inputs(num_classes, size, batch)
    if name == "torch-ce":
        return (lambda z, t: F.cross_entropy(z, t, ignore_index=-100)), logits, target
    if name == "monai-gwdl":
        from monai.losses import GeneralizedWassersteinDiceLoss

        monai = GeneralizedWassersteinDiceLoss(dist_matrix=tree.distance_matrix().copy())
        return (lambda z, t: monai(z, t.clamp(min=0))), logits, target  # MONAI has no ignore index
    return build_loss(name, tree), logits, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[16, 107, 256])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, num_classes, size, batch = args.child
        child_peak_memory(name, int(num_classes), int(size), int(batch))
        return
    try:
        import monai  # noqa: F401
    except ImportError:
        print("monai is not installed (pip install '.[bench]'): the tree-gwdl comparison is skipped")
        TARGETS.pop("tree-gwdl")

    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, logits {args.batch} x C x {args.size}^2")
    print("| C | levels | loss | baseline | time ratio | loss ms | base ms | peak MiB | peak / ce | target |")
    print("|" + "---|" * 10)
    for num_classes in args.classes:
        depth = make_tree(num_classes).depth
        shape = (num_classes, args.size, args.batch)
        ce_peak = peak_memory("ce", *shape)
        for name, (baseline, limit) in TARGETS.items():
            loss, logits, target = setup(name, *shape)
            reference, _, _ = setup(baseline, *shape)
            ratio, ms, base_ms = paired_ratio(
                partial(step, loss, logits, target), partial(step, reference, logits, target), args.repeats
            )
            peak = peak_memory(name, *shape)
            verdict = "ok" if ratio <= limit and peak <= MEMORY_TARGET * ce_peak else "missed"
            print(
                f"| {num_classes} | {depth} | {name} | {baseline} | {ratio:.2f}x | {ms:.1f} | {base_ms:.1f} "
                f"| {peak / 2**20:.0f} | {peak / ce_peak:.2f}x "
                f"| time <= {limit}x, memory <= {MEMORY_TARGET}x: {verdict} |"
            )
        for name in ("ce", "torch-ce", "monai-gwdl"):
            if name == "monai-gwdl" and "tree-gwdl" not in TARGETS:
                continue
            peak = peak_memory(name, *shape)
            print(f"| {num_classes} | {depth} | {name} | | | | | {peak / 2**20:.0f} | {peak / ce_peak:.2f}x | |")


if __name__ == "__main__":
    main()
