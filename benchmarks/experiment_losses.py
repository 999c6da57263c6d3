"""Do label-tree losses beat plain cross-entropy under sparse, background-free supervision?

Run: ``python benchmarks/experiment_losses.py --output results.json`` (all regimes, 3 seeds; ~15 min on 2 CPU
cores), or ``--quick`` (one seed, two losses, few steps: the smoke test used by the test suite).

Indian Pines (tensorly wheel): scribbles simulated on a share of the labelled pixels (regimes: 1%, 3%, 10%
budget; and a coarse-label regime at 3% where half of the strokes name only the parent node). Class
"Stone-Steel-Towers" is held out of training in every run: its pixels measure unknown-tissue detection (OOD
AUROC of max softmax, held-out pixels against the kept classes' pixels). Every loss trains the same network
with the same optimiser, steps, pixel batches and seeds; nothing is tuned per loss. Flat losses (ce, dice-ce)
cannot use a parent-node scribble as a class, so in the coarse regime they drop
those pixels (tree losses use them as partial labels). Metrics on the remaining labelled pixels (never
scribbled): leaf mean Dice over kept classes, top-level accuracy, mistake severity (mean tree distance).

Every loss trains hsiseg's default network and regime (``TrainConfig()``; see ``train_network``).

Synthetic neurosurgical scenes: trained on the scribbles of the training surgeries, scored on the dense truth of
the held-out surgery (every pixel has truth there).

Differences to ``ce`` are paired by seed (same scribbles, same initialisation) and reported as mean with a
95% t-interval.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from scipy.stats import t as student_t

from hsiseg.annotations import UNLABELLED
from hsiseg.annotations.simulate import simulate_scribbles
from hsiseg.dataset.torch_datasets import Augmentation, class_balanced_weights
from hsiseg.evaluation.metrics import confusion_matrix, dice_per_class, to_level
from hsiseg.evaluation.scores import mistake_severity, ood_scores
from hsiseg.losses import build_loss
from hsiseg.models import DEFAULT_MODEL, build_model, unwrap
from hsiseg.training import TrainConfig, warmup_cosine
from hsiseg.tree import LabelTree

LOSSES = {
    "ce": ("ce", {}),
    "dice-ce": ("dice-ce", {}),
    "tree-gwdl": ("tree-gwdl", {}),
    "tree-wasserstein": ("tree-wasserstein", {}),
    "tree-ce": ("tree-ce", {}),
    "tree-ce top=4": ("tree-ce", {"top_level_weight": 4.0}),
}
FLAT = {"ce", "dice-ce"}
HELD_OUT = "Stone-Steel-Towers"


def train_network(image, scribbles, tree, loss_name, options, seed, steps, pixels=512, device="cpu"):
    """Train hsiseg's default network (``TrainConfig()``: spectral-spatial, guided context) on (B, H, W)
    ``image`` with (H, W) target codes: batches of annotated pixels drawn with class-balanced weights and
    spectral augmentation, AdamW with warm-up and cosine decay, as ``hsiseg train`` does (without holding
    strokes out: every scribble trains for the whole budget, as the refit does). The network is trained on
    ``device`` and returned there."""
    defaults = TrainConfig()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(DEFAULT_MODEL, image.shape[0], tree.num_leaves, **defaults.model_options)
    loss_fn = build_loss(loss_name, tree, **options).to(device)
    annotated = scribbles != UNLABELLED
    if not annotated.any():
        raise ValueError("no annotated pixel to train on")
    spectra = np.ascontiguousarray(image[:, annotated].T)  # (P, B)
    codes = scribbles[annotated].astype(np.int64)
    unwrap(model).fit_input_statistics(torch.from_numpy(spectra))
    model.to(device)
    weights = class_balanced_weights(codes, defaults.class_balance)
    probabilities = weights / weights.sum()
    augmentation = Augmentation(flips=False, rotations=False, noise=0.01)
    optimizer = torch.optim.AdamW(model.parameters(), lr=defaults.learning_rate, weight_decay=defaults.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, max(1, int(defaults.warmup * steps))))
    model.train()
    for _ in range(steps):
        chosen = rng.choice(codes.size, size=pixels, p=probabilities)
        batch, _ = augmentation(spectra[chosen][None], [], rng)  # (1, P, B)
        logits = model(torch.from_numpy(np.ascontiguousarray(batch.transpose(2, 0, 1)))[None].to(device))
        loss = loss_fn(logits, torch.from_numpy(codes[chosen])[None, None].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), defaults.grad_clip)
        optimizer.step()
        schedule.step()
    model.eval()
    return model


@torch.no_grad()
def predict(model, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities = torch.softmax(model(torch.from_numpy(image)[None]), 1)[0]
    confidence, labels = probabilities.max(0)
    return labels.numpy(), confidence.numpy()


def score(labels, confidence, truth, tree: LabelTree, held_out: list[int]) -> dict[str, float]:
    """Leaf mean Dice (kept classes), top-level accuracy, mistake severity, OOD AUROC of held-out pixels."""
    held = np.isin(truth, held_out)
    kept = (truth >= 0) & ~held
    confusion = confusion_matrix(labels[kept], truth[kept], tree.num_leaves)
    present = confusion.sum(1) > 0
    dice = dice_per_class(confusion)
    top = (to_level(labels[kept], tree, 1) == to_level(truth[kept], tree, 1)).mean()
    result = {
        "leaf_mean_dice": float(np.nanmean(dice[present])),
        "leaf_accuracy": float(np.trace(confusion) / confusion.sum()),
        "top_accuracy": float(top),
        "severity": mistake_severity(labels[kept], truth[kept], tree)["mean_distance"],
    }
    if held.any():
        result["ood_auroc"] = ood_scores(confidence[kept], confidence[held])["auroc"]
    return result


def coarsen(scribbles: np.ndarray, tree: LabelTree, share: float, seed: int) -> np.ndarray:
    """Relabel a ``share`` of the strokes (connected components) with their leaf's parent node."""
    rng = np.random.default_rng(seed + 1000)
    out = scribbles.copy()
    for code in np.unique(scribbles[scribbles >= 0]):
        parent = tree.node(int(code)).parent
        if parent is None:
            continue
        components, count = ndimage.label(scribbles == code)
        for component in range(1, count + 1):
            if rng.random() < share:
                out[components == component] = parent
    return out


def indian_pines_runs(seeds, budgets, coarse_budget, losses, steps) -> list[dict]:
    from hsiseg.dataset.indian_pines import load_indian_pines, pines_tree

    cube, truth = load_indian_pines()
    tree = pines_tree()
    data = cube.data
    image = ((data - data.mean((0, 1))) / (data.std((0, 1)) + 1e-6)).transpose(2, 0, 1).astype(np.float32)
    held_out = [tree.index(HELD_OUT)]
    runs = []
    regimes = [(f"{b:.0%} scribbles", b, 0.0) for b in budgets] + (
        [(f"{coarse_budget:.0%}, half coarse", coarse_budget, 0.5)] if coarse_budget else []
    )
    for regime, budget, coarse in regimes:
        for seed in seeds:
            trainable = np.where(np.isin(truth, held_out), UNLABELLED, truth)
            scribbles = simulate_scribbles(trainable, budget, 8, seed)
            evaluation = np.where(scribbles == UNLABELLED, truth, UNLABELLED)
            coarse_scribbles = coarsen(scribbles, tree, coarse, seed) if coarse else scribbles
            for name in losses:
                loss_name, options = LOSSES[name]
                target = coarse_scribbles
                if name in FLAT and coarse:
                    target = np.where(coarse_scribbles >= tree.num_leaves, UNLABELLED, coarse_scribbles)
                started = time.perf_counter()
                model = train_network(image, target, tree, loss_name, options, seed, steps)
                labels, confidence = predict(model, image)
                result = score(labels, confidence, evaluation, tree, held_out)
                runs.append(
                    {
                        "data": "indian-pines",
                        "regime": regime,
                        "loss": name,
                        "seed": seed,
                        **result,
                        "seconds": time.perf_counter() - started,
                    }
                )
                print(
                    f"  indian-pines | {regime} | {name} | seed {seed} | dice {result['leaf_mean_dice']:.3f}",
                    file=sys.stderr,
                )
    return runs


def synthetic_runs(seeds, losses, steps) -> list[dict]:
    from hsiseg.dataset.spec import DataSpec
    from hsiseg.synthetic.dataset import generate_demo_data

    runs = []
    with tempfile.TemporaryDirectory() as folder:
        spec = DataSpec.from_file(generate_demo_data(Path(folder), surgeries=4, frames=3, shape=(96, 128), seed=7))
        tree = spec.tree
        train_ids = spec.split("train") + spec.split("val")
        test_ids = spec.split("test")

        def load(sample_id):
            cube = spec.read_cube(sample_id)
            data, _ = spec.preprocessing.apply(cube.data, cube.wavelengths)
            return data.transpose(2, 0, 1) * 100, spec.read_annotation(sample_id), spec.read_truth(sample_id)

        training = [load(i) for i in train_ids]
        testing = [load(i) for i in test_ids]
        # one mosaic of all training scenes side by side: the same sampler serves both data sets
        image = np.concatenate([t[0] for t in training], axis=2).astype(np.float32)
        scribbles = np.concatenate([t[1] for t in training], axis=1)
        for seed in seeds:
            for name in losses:
                loss_name, options = LOSSES[name]
                started = time.perf_counter()
                model = train_network(image, scribbles, tree, loss_name, options, seed, steps)
                labels = np.concatenate([predict(model, t[0].astype(np.float32))[0].ravel() for t in testing])
                confidence = np.concatenate([predict(model, t[0].astype(np.float32))[1].ravel() for t in testing])
                truth = np.concatenate([t[2].ravel() for t in testing])
                result = score(labels, confidence, truth, tree, [])
                regime = "demo scribbles, dense truth"
                seconds = time.perf_counter() - started
                runs.append(
                    {"data": "synthetic", "regime": regime, "loss": name, "seed": seed, **result, "seconds": seconds}
                )
                print(f"  synthetic | {name} | seed {seed} | dice {result['leaf_mean_dice']:.3f}", file=sys.stderr)
    return runs


def summarise(runs: list[dict], metrics=("leaf_mean_dice", "top_accuracy", "severity", "ood_auroc")) -> str:
    """Markdown tables: mean +- std per loss, and paired differences to ce with 95% t-intervals."""
    lines = []
    for data, regime in dict.fromkeys((r["data"], r["regime"]) for r in runs):
        group = [r for r in runs if r["data"] == data and r["regime"] == regime]
        present = [m for m in metrics if all(m in r for r in group)]
        lines += [f"\n**{data}, {regime}** ({len({r['seed'] for r in group})} seeds)\n"]
        lines += [
            "| loss | " + " | ".join(present) + " | " + " | ".join(f"d {m} vs ce [95% CI]" for m in present) + " |"
        ]
        lines += ["|---" * (1 + 2 * len(present)) + "|"]
        baseline = {r["seed"]: r for r in group if r["loss"] == "ce"}
        for loss in dict.fromkeys(r["loss"] for r in group):
            rows = sorted((r for r in group if r["loss"] == loss), key=lambda r: r["seed"])
            cells = []
            for m in present:
                values = np.array([r[m] for r in rows])
                cells.append(f"{values.mean():.3f} +- {values.std(ddof=1) if len(values) > 1 else 0:.3f}")
            for m in present:
                diffs = np.array([r[m] - baseline[r["seed"]][m] for r in rows if r["seed"] in baseline])
                if loss == "ce" or not diffs.size:
                    cells.append("-")
                    continue
                half = (
                    student_t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs))
                    if len(diffs) > 1
                    else float("nan")
                )
                cells.append(f"{diffs.mean():+.3f} [{diffs.mean() - half:+.3f}, {diffs.mean() + half:+.3f}]")
            lines.append(f"| {loss} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 losses, few steps (smoke test)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=TrainConfig().steps)
    parser.add_argument("--output", type=Path, default=None, help="write every run's numbers as JSON")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.01, 0.03, 0.10], help="scribble budgets")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    started = time.perf_counter()
    if args.quick:
        seeds, budgets, coarse, losses, steps = [0], [0.03], 0.03, ["ce", "tree-ce"], 15
    else:
        seeds, budgets, coarse, losses, steps = (
            list(range(args.seeds)),
            args.budgets,
            0.03,
            list(LOSSES),
            args.steps,
        )
    runs = indian_pines_runs(seeds, budgets, coarse, losses, steps)
    if not args.skip_synthetic:
        runs += synthetic_runs(seeds, losses, steps)
    report = summarise(runs)
    minutes = (time.perf_counter() - started) / 60
    print(report)
    print(f"\n{len(runs)} runs in {minutes:.1f} min ({steps} steps each, {torch.get_num_threads()} threads)")
    result = {"runs": runs, "report": report, "minutes": minutes, "steps": steps}
    if args.output:
        args.output.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
