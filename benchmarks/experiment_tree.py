"""Does the label tree pay at the paper's scale? Label-tree losses against cross-entropy on the 100-leaf scene.

Run: ``python benchmarks/experiment_tree.py --output benchmarks/results/experiment_tree.json`` (every regime,
5 seeds; about 45 min on 2 CPU cores), or ``--quick`` (2 seeds, 2 losses, 2 regimes, few steps: the smoke test
in the test suite).

Data: the rich synthetic surgical scene (:mod:`hsiseg.synthetic.rich`, the generator behind ``hsiseg demo-data
--scene rich``): 100 leaves, 23 groups, 4 families, long-tailed class areas, siblings spectrally close. Per seed
a new set of leaf spectra (``spectra_seed``) and scenes (7 surgeries x 3 frames of 96 x 128): 5 surgeries
train, 2 are scored on every pixel (dense truth).
Scribbles are simulated on the training scenes (random-walk strokes, every visible class at least once).
Two leaves (``lung metastasis``, ``needle holder``) and one whole group (``veins``) are never scribbled in any
run, and strokes in those leaves' groups are never coarsened. Their pixels measure unknown-tissue detection
with hsiseg's default score (``mahalanobis`` on the network's features, fitted on the annotated training
pixels), AUROC against the known tissue.

Regimes (each at 2% of the pixels scribbled unless named):
- label budget: 0.5%, 2%, 10%;
- long tail: every run reports Dice on the rare leaves (the 50 least common by prior) and the frequent ones
  (the 20 most common) separately;
- coarse labels: half of the strokes name only the leaf's group; ``ce`` drops them (a flat loss has no class
  for a group), ``ce, guessed leaf`` labels them with the group's commonest leaf; tree losses use them as they
  are;
- sibling distance: the same scenes with leaves drawn 2x closer to or 2x farther from their group centre.

Every loss trains hsiseg's default network and regime the same way (``experiment_losses.train_network``:
``TrainConfig()``, 1000 steps of 512 class-balanced annotated pixels); nothing is tuned per loss. Differences
to ``ce`` are paired by seed (same scenes, scribbles and initialisation), mean with a 95% t-interval.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hsiseg.annotations.simulate import simulate_scribbles
from hsiseg.evaluation.metrics import confusion_matrix, dice_per_class
from hsiseg.evaluation.scores import mistake_severity, ood_scores
from hsiseg.labels import UNLABELLED
from hsiseg.losses import build_loss
from hsiseg.ood.calibration import fit_scores
from hsiseg.ood.maps import network_outputs, pixel_outputs, score_maps
from hsiseg.synthetic.rich import SPECTRA_SEED, leaf_model, rich_scenes, rich_tree
from hsiseg.training import TrainConfig
from hsiseg.tree import LabelTree

sys.path.insert(0, str(Path(__file__).parent))
from common import finish, interval  # noqa: E402
from experiment_losses import coarsen, train_network  # noqa: E402

LOSSES = {
    "ce": ("ce", {}),
    "tree-ce": ("tree-ce", {}),
    "tree-ce top=4": ("tree-ce", {"top_level_weight": 4.0}),
    "tree-wasserstein": ("tree-wasserstein", {}),
    "tree-gwdl": ("tree-gwdl", {}),
    "tree-gwdl + ce": ("tree-gwdl", {"ce_weight": 1.0}),
}
GUESSED = "ce, guessed leaf"
HELD_OUT_LEAVES = ("lung metastasis", "needle holder")
HELD_OUT_GROUP = "veins"
RARE, FREQUENT = 50, 20  # the 50 least and the 20 most common leaves by prior
SCORE = "mahalanobis"
METRICS = {
    "leaf_dice": "leaf Dice",
    "leaf_accuracy": "leaf accuracy",
    "top_dice": "family Dice",
    "error_severity": "tree distance of errors (lower: milder)",
    "rare_dice": "rare-leaf Dice",
    "frequent_dice": "frequent-leaf Dice",
    "ood_leaf": "AUROC held-out leaves",
    "ood_group": "AUROC held-out group",
}


@dataclass(frozen=True)
class Regime:
    name: str
    budget: float = 0.02
    coarse: float = 0.0
    sibling_scale: float = 1.0


REGIMES = (
    Regime("0.5% scribbled", budget=0.005),
    Regime("2% scribbled"),
    Regime("10% scribbled", budget=0.10),
    Regime("2%, half of the strokes name only the group", coarse=0.5),
    Regime("2%, siblings 2x closer", sibling_scale=0.5),
    Regime("2%, siblings 2x farther", sibling_scale=2.0),
)


@dataclass
class Data:
    """Training mosaic (B, H, W) with its (H, W) truth, and the test scenes as (B, h, w) images and truths."""

    image: np.ndarray
    truth: np.ndarray
    test_images: list[np.ndarray]
    test_truths: list[np.ndarray]


def network_input(cube: np.ndarray) -> np.ndarray:
    """(H, W, 100) reflectance -> (100, H, W) float32, L1-normalised spectra x 100 (the demo's preprocessing)."""
    return (cube / np.abs(cube).sum(-1, keepdims=True) * 100).transpose(2, 0, 1).astype(np.float32)


def make_data(seed: int, sibling_scale: float, surgeries: int, frames: int, test_surgeries: int) -> Data:
    scenes = rich_scenes(surgeries, frames, seed=seed, sibling_scale=sibling_scale, spectra_seed=SPECTRA_SEED + seed)
    test_subjects = {f"surgery{s + 1:02d}" for s in range(surgeries - test_surgeries, surgeries)}
    train = [s for s in scenes if s.subject not in test_subjects]
    test = [s for s in scenes if s.subject in test_subjects]
    return Data(
        np.concatenate([network_input(s.cube) for s in train], axis=2),
        np.concatenate([s.truth for s in train], axis=1),
        [network_input(s.cube) for s in test],
        [s.truth for s in test],
    )


def held_out_codes(tree: LabelTree) -> tuple[list[int], list[int]]:
    return [tree.leaf_index(n) for n in HELD_OUT_LEAVES], [tree.leaf_index(n) for n in tree.leaves_of(HELD_OUT_GROUP)]


def training_target(data: Data, regime: Regime, tree: LabelTree, seed: int) -> np.ndarray:
    """Scribbles (H, W) on the training mosaic, held-out classes never scribbled, coarsened per the regime.

    Strokes of a group that holds a held-out leaf are never coarsened: a group label would train the held-out
    leaf's channel (its marginal includes it)."""
    leaves, group = held_out_codes(tree)
    trainable = np.where(np.isin(data.truth, leaves + group), UNLABELLED, data.truth)
    scribbles = simulate_scribbles(trainable, regime.budget, 8, seed)
    if not regime.coarse:
        return scribbles
    coarse = coarsen(scribbles, tree, regime.coarse, seed)
    blocked = [tree.node(code).parent for code in leaves + group]
    return np.where(np.isin(coarse, blocked), scribbles, coarse)


def check_held_out_unlabelled(labels: np.ndarray, tree: LabelTree) -> None:
    """Refuse training labels (H, W) that name a held-out leaf, or a node whose marginal includes one."""
    leaves, group = held_out_codes(tree)
    covering = {code for code in leaves + group} | {tree.node(code).parent for code in leaves + group}
    named = set(np.unique(labels[labels >= 0]).tolist()) & covering
    if named:
        raise RuntimeError(f"training labels name held-out classes: {sorted(tree.node(c).name for c in named)}")


def flat_targets(target: np.ndarray, tree: LabelTree, prior: np.ndarray) -> dict[str, np.ndarray]:
    """What a flat loss trains on when strokes name a group: drop them, or guess the group's commonest
    trainable leaf (never a held-out one)."""
    coarse = target >= tree.num_leaves
    if not coarse.any():
        return {"ce": target}
    leaves, group = held_out_codes(tree)
    guessed = target.copy()
    for code in np.unique(target[coarse]):
        members = [tree.leaf_index(n) for n in tree.leaves_of(tree.node(int(code)).name)]
        members = [m for m in members if m not in leaves + group]
        guessed[target == code] = members[int(np.argmax(prior[members]))]
    return {"ce": np.where(coarse, UNLABELLED, target), GUESSED: guessed}


def family_indices(codes: np.ndarray, tree: LabelTree) -> np.ndarray:
    """Leaf codes -> 0..F-1, the index of each leaf's top-level family in ``tree.top_level``."""
    table = np.array([tree.top_level.index(tree.ancestor(leaf, 1)) for leaf in tree.leaves])
    return table[codes]


@torch.no_grad()
def evaluate(model, data: Data, target: np.ndarray, tree: LabelTree, prior: np.ndarray) -> dict[str, float]:
    """Every metric of one trained network on the test scenes (known classes) and the held-out classes.

    The unknown-tissue score is fitted on the annotated training pixels' features, computed on a strip of just
    those pixels (the default network's features are per pixel, before its spatial context), and its test maps
    are smoothed by the network's context as ``hsiseg predict`` does."""
    device = next(model.parameters()).device
    annotated = target >= 0
    strip = torch.from_numpy(np.ascontiguousarray(data.image[:, annotated]))[None, :, None]  # (1, B, 1, P)
    logits, features = network_outputs(model, strip.to(device))
    training = pixel_outputs(logits[0], features[0], strip[0].to(device))
    training.targets = torch.from_numpy(target[annotated].astype(np.int64)).to(device)
    score = fit_scores([SCORE], training, tree.num_leaves)[SCORE]
    labels, scores = [], []
    for image in data.test_images:
        inputs = torch.from_numpy(image).to(device)
        logits, features = network_outputs(model, inputs[None])
        pixels = pixel_outputs(logits[0], features[0], inputs)
        labels.append(pixels.logits.argmax(1).cpu().numpy())
        smoothed = score_maps(model, {SCORE: score}, pixels, features[0], image.shape[1:])[SCORE]
        scores.append(smoothed.cpu().numpy().ravel())
    truth = np.concatenate([t.ravel() for t in data.test_truths])
    return scores_of(np.concatenate(labels), np.concatenate(scores), truth, tree, prior)


def mean_or_nan(values: np.ndarray) -> float:
    """Mean of the classes' Dice values (NaN when there is none, without a warning)."""
    return float(np.nanmean(values)) if values.size else float("nan")


def scores_of(labels, unknown_scores, truth, tree: LabelTree, prior: np.ndarray) -> dict[str, float]:
    """(P,) predicted leaves, OOD scores (higher = more known) and true leaves -> the metrics of :data:`METRICS`."""
    leaves, group = held_out_codes(tree)
    known = ~np.isin(truth, leaves + group)
    confusion = confusion_matrix(labels[known], truth[known], tree.num_leaves)
    present = confusion.sum(1) > 0
    dice = dice_per_class(confusion)
    order = np.argsort(-prior)
    rare, frequent = np.zeros(tree.num_leaves, bool), np.zeros(tree.num_leaves, bool)
    rare[order[-RARE:]], frequent[order[:FREQUENT]] = True, True
    families = len(tree.top_level)
    top = confusion_matrix(family_indices(labels[known], tree), family_indices(truth[known], tree), families)
    return {
        "leaf_dice": mean_or_nan(dice[present]),
        "top_dice": mean_or_nan(dice_per_class(top)[top.sum(1) > 0]),
        "leaf_accuracy": float(np.trace(confusion) / max(1, confusion.sum())),
        "error_severity": mistake_severity(labels[known], truth[known], tree)["mean_distance_of_errors"],
        "rare_dice": mean_or_nan(dice[present & rare]),
        "frequent_dice": mean_or_nan(dice[present & frequent]),
        "ood_leaf": ood_scores(unknown_scores[known], unknown_scores[np.isin(truth, leaves)])["auroc"],
        "ood_group": ood_scores(unknown_scores[known], unknown_scores[np.isin(truth, group)])["auroc"],
    }


def run_regime(regime: Regime, seeds, losses, steps, scene_counts, device: str = "cpu") -> list[dict]:
    tree = rich_tree()
    prior = leaf_model(tree).prior
    runs = []
    for seed in seeds:
        data = make_data(seed, regime.sibling_scale, *scene_counts)
        target = training_target(data, regime, tree, seed)
        flat = flat_targets(target, tree, prior)
        jobs = [(name, *LOSSES[name], flat["ce"] if name == "ce" else target) for name in losses]
        if GUESSED in flat:
            jobs.insert(1, (GUESSED, "ce", {}, flat[GUESSED]))
        for name, loss_name, options, labels in jobs:
            check_held_out_unlabelled(labels, tree)
            started = time.perf_counter()
            model = train_network(data.image, labels, tree, loss_name, options, seed, steps, device=device)
            result = evaluate(model, data, target, tree, prior)
            seconds = time.perf_counter() - started
            runs.append({"regime": regime.name, "loss": name, "seed": seed, **result, "seconds": seconds})
            print(f"  {regime.name} | {name} | seed {seed} | leaf Dice {result['leaf_dice']:.3f} | {seconds:.0f} s",
                  file=sys.stderr)  # fmt: skip
    return runs


def gradient_diagnosis(losses=("ce", "tree-wasserstein", "tree-gwdl", "tree-gwdl + ce"), pixels: int = 512) -> str:
    """Why tree-gwdl loses leaf Dice, in numbers that do not depend on the gradient's overall scale (AdamW
    ignores it). For ``pixels`` random leaf labels of the 100-leaf tree:

    - at uniform logits (the start of training): the share of each pixel's gradient that pushes its true leaf
      (minus the true-leaf component over the pixel's gradient norm; 1 = all of it);
    - in one batch where every pixel has its group right and half of them also a confident wrong sibling
      (logit +5): the gradient norm of a confidently wrong pixel over that of an undecided one (how much the
      loss still corrects a confident sibling mistake).

    Markdown table, one row per loss."""
    tree = rich_tree()
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, tree.num_leaves, (1, pixels), generator=generator)
    undecided = torch.zeros(tree.num_leaves, pixels)
    for pixel, code in enumerate(codes[0].tolist()):
        siblings = [tree.leaf_index(leaf) for leaf in tree.leaves_of(tree.node(tree.node(code).parent).name)]
        undecided[siblings, pixel] = 10
        if pixel % 2:
            undecided[next(s for s in siblings if s != code), pixel] += 5
    confident = torch.arange(pixels) % 2 == 1
    lines = ["| loss | true-leaf share of the gradient at the start | confidently wrong / undecided pixel gradient |",
             "|---|---|---|"]  # fmt: skip
    for name in losses:
        loss_name, options = LOSSES[name]
        loss = build_loss(loss_name, tree, **options)
        start = torch.zeros(1, tree.num_leaves, pixels, requires_grad=True)
        loss(start, codes).backward()
        share = (-start.grad[0].gather(0, codes)[0] / start.grad[0].norm(dim=0)).mean()
        late = undecided[None].clone().requires_grad_(True)
        loss(late, codes).backward()
        norms = late.grad[0].norm(dim=0)
        lines.append(f"| {name} | {share:.3f} | {norms[confident].mean() / norms[~confident].mean():.3f} |")
    return "\n".join(lines)


def summarise(runs: list[dict], metrics: dict[str, str] = METRICS) -> str:
    """One markdown table per regime: each loss's mean, and its paired difference to ``ce`` with a 95% CI."""
    lines = []
    for regime in dict.fromkeys(r["regime"] for r in runs):
        group = [r for r in runs if r["regime"] == regime]
        seeds = sorted({r["seed"] for r in group})
        lines += [f"\n**{regime}** ({len(seeds)} seeds; mean, and the paired difference to ce [95% CI])\n"]
        lines += ["| loss | " + " | ".join(metrics.values()) + " |", "|---" * (1 + len(metrics)) + "|"]
        baseline = {r["seed"]: r for r in group if r["loss"] == "ce"}
        for loss in dict.fromkeys(r["loss"] for r in group):
            rows = [r for r in group if r["loss"] == loss]
            cells = []
            for metric in metrics:
                mean = np.mean([r[metric] for r in rows])
                if loss == "ce" or not baseline:
                    cells.append(f"{mean:.3f}")
                    continue
                differences = np.array([r[metric] - baseline[r["seed"]][metric] for r in rows if r["seed"] in baseline])
                cells.append(f"{mean:.3f} ({interval(differences)})")
            lines.append(f"| {loss} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 2 losses, 2 regimes, few steps (smoke test)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=TrainConfig().steps)
    parser.add_argument("--regimes", nargs="+", type=int, default=None, help="indices into REGIMES (default all)")
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=list(LOSSES))
    parser.add_argument("--output", type=Path, default=None, help="write every run's numbers as JSON")
    parser.add_argument("--device", default="auto", help="cpu, cuda, ... (auto: cuda when available)")
    parser.add_argument("--gradients-only", action="store_true", help="print the tree-gwdl gradient table only")
    args = parser.parse_args(argv)
    gradients = gradient_diagnosis()
    if args.gradients_only:
        print(gradients)
        return {"gradients": gradients}
    started = time.perf_counter()
    regimes = [REGIMES[i] for i in args.regimes] if args.regimes is not None else list(REGIMES)
    seeds, losses, steps, scene_counts = list(range(args.seeds)), args.losses, args.steps, (7, 3, 2)
    if args.quick:
        regimes, seeds, losses, steps, scene_counts = [REGIMES[1], REGIMES[3]], [0, 1], ["ce", "tree-ce"], 20, (3, 2, 1)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    runs = [run for regime in regimes for run in run_regime(regime, seeds, losses, steps, scene_counts, device)]
    report = summarise(runs) + "\n\n" + gradients
    return finish(runs, report, started, f"{len(runs)} runs ({steps} steps each, {device})", args.output)


if __name__ == "__main__":
    main()
