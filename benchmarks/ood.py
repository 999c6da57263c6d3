"""Unknown tissue (OOD-SEG protocol): how well each OOD score flags classes the network never saw.

Run: ``python benchmarks/ood.py --output results.json`` (every rotation on every data set; ``--seeds 3``: each
rotation with three draws of the scribbles and training seeds), or ``--quick`` (a tiny demo, two rotations, few
steps: the smoke test used by the test suite).

Protocol. For every *held-out set* (each leaf in turn, then each top-level family), the scribbles of those
classes are removed from the data spec (partial labels naming one of their ancestors too); hsiseg trains on
the rest with its defaults (``hsiseg.training.train``, the ``final`` checkpoint), and every calibrated OOD score
is computed on the scored pixels. Positives are the held-out classes' pixels, negatives the other classes'
pixels; pixels that were scribbled are never scored.

- Indian Pines, 3% scribbles, and the real scenes of ``quality.py`` (Jasper Ridge, Samson, the Indian Pines
  crops), each under its own stroke protocol: trained on the scribbles, scored on every other labelled pixel;
- the synthetic demo (``hsiseg demo-data``): trained on the scribbles of 3 surgeries, scored on every pixel of
  the held-out surgery (dense truth).

Per score: AUROC, AUPR, FPR at 95% TPR (``hsiseg.evaluation.scores``), and at the calibrated threshold the
share of known pixels flagged unknown (calibrated to keep 95% of held-out *annotated* pixels) and the share of
unknown pixels caught. Baselines on the same scribbles and pixels, each on standardised spectra after the
spec's preprocessing: scikit-learn's ``SVC`` (RBF, C and gamma by 3-fold CV, probabilities by Platt scaling
through ``CalibratedClassifierCV``), whose maximum class probability is the score, and the distance to the
nearest scribbled spectrum (1-NN).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml

from hsiseg.annotations.writers import write_label_image
from hsiseg.dataset.spec import DataSpec
from hsiseg.evaluation.scores import ood_scores
from hsiseg.labels import UNLABELLED
from hsiseg.predict.inference import Predictor
from hsiseg.training import TrainConfig, final_checkpoint, train

sys.path.insert(0, str(Path(__file__).parent))
from common import finish  # noqa: E402
from quality import REAL_SCENES, DataSet, demo, features, indian_pines, real_scene  # noqa: E402

BASELINES = ("SVC max probability", "nearest scribbled spectrum")


def held_out_sets(data: DataSet, quick: bool) -> list[tuple[str, tuple[str, ...]]]:
    """(name, leaves) for every leaf present in the scored truth, then every top-level family."""
    tree = data.spec.tree
    present = set()
    for sample_id in data.test_ids:
        truth = data.truth(sample_id)
        present |= {tree.leaves[c] for c in np.unique(truth) if 0 <= c < tree.num_leaves}
    leaves = [(leaf, (leaf,)) for leaf in tree.leaves if leaf in present]
    families = [(family, tree.leaves_of(family)) for family in tree.top_level if len(tree.leaves_of(family)) > 1]
    families = [(name, members) for name, members in families if set(members) & present]
    sets = leaves + families
    return [sets[0], *families[:1]] if quick else sets


def without(spec: DataSpec, held_out: tuple[str, ...], folder: Path) -> Path:
    """A copy of ``spec`` (in ``folder``) whose scribbles of the ``held_out`` leaves, and of partial labels
    above them, are removed."""
    tree = spec.tree
    removed = np.zeros(tree.num_nodes, dtype=bool)
    for leaf in held_out:
        removed[np.flatnonzero(tree.ancestor_matrix()[:, tree.index(leaf)])] = True  # the leaf and its ancestors
    data = yaml.safe_load(spec.path.read_text())
    data["root"] = str(spec.path.parent.resolve())
    data["label_tree"] = str(spec.path.parent.resolve() / data["label_tree"])
    data["annotations"] = {"format": "label-image", "ignore_value": 0,
                           "labels": {code + 1: tree.node(code).name for code in range(tree.num_nodes)}}  # fmt: skip
    for sample in data["samples"]:
        target = spec.read_annotation(sample["id"])
        target[(target >= 0) & removed[np.clip(target, 0, None)]] = UNLABELLED
        path = folder / "scribbles" / f"{sample['id']}.png"
        write_label_image(path, target)
        sample["annotations"] = [str(path)]
    spec_path = folder / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return spec_path


def scored_pixels(data: DataSet, sample_id: str, held_out: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) masks of the positives (held-out classes) and negatives (known classes) of one scored image."""
    tree = data.spec.tree
    truth = data.truth(sample_id)
    scribbled = data.spec.read_annotation(sample_id, truth.shape) != UNLABELLED
    leaf = (truth >= 0) & (truth < tree.num_leaves) & ~scribbled
    unseen = np.isin(truth, [tree.index(name) for name in held_out])
    return leaf & unseen, leaf & ~unseen


def run_hsiseg(data: DataSet, held_out: tuple[str, ...], config: TrainConfig, folder: Path) -> dict[str, dict]:
    """Train without ``held_out``; per score: its metrics on the scored pixels."""
    spec_path = without(data.spec, held_out, folder)
    train(spec_path, folder / "run", replace(config, device="cpu"))
    predictor = Predictor.from_checkpoint(final_checkpoint(folder / "run"), all_scores=True)
    values: dict[str, tuple[list, list]] = {name: ([], []) for name in predictor.scores}
    for sample_id in data.test_ids:
        positive, negative = scored_pixels(data, sample_id, held_out)
        prediction = predictor.predict(data.spec.read_cube(sample_id))
        for name, score in prediction.scores.items():
            values[name][0].append(score[negative])
            values[name][1].append(score[positive])
    results = {}
    for name, (known, unseen) in values.items():
        known, unseen = _joined(known), _joined(unseen)
        threshold = predictor.card.ood.scores[name].threshold
        results[name] = {**ood_scores(known, unseen), "known_flagged": float((known < threshold).mean()),
                         "unknown_caught": float((unseen < threshold).mean())}  # fmt: skip
    return results


def run_baselines(data: DataSet, held_out: tuple[str, ...], quick: bool) -> dict[str, dict]:
    """SVC probability and nearest-scribble distance, trained on the scribbles of the kept classes."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    tree = data.spec.tree
    preprocessing = data.spec.fitted_preprocessing()
    unseen_codes = [tree.index(name) for name in held_out]
    spectra, codes = [], []
    for sample_id in data.train_ids:
        image, target = features(data.spec, sample_id, preprocessing), data.spec.read_annotation(sample_id)
        keep = (target >= 0) & (target < tree.num_leaves) & ~np.isin(target, unseen_codes)
        spectra.append(image[keep])
        codes.append(target[keep])
    scaler = StandardScaler().fit(np.concatenate(spectra))
    train_x, train_y = scaler.transform(np.concatenate(spectra)), np.concatenate(codes)
    grid = {"C": [1, 10, 100, 1000], "gamma": ["scale", 0.001, 0.01, 0.1]} if not quick else {"C": [10]}
    search = GridSearchCV(SVC(), grid, cv=3).fit(train_x, train_y)
    svc = CalibratedClassifierCV(SVC(**search.best_params_), ensemble=False).fit(train_x, train_y)
    neighbours = NearestNeighbors(n_neighbors=1).fit(train_x)
    known = {name: [] for name in BASELINES}
    unseen = {name: [] for name in BASELINES}
    for sample_id in data.test_ids:
        positive, negative = scored_pixels(data, sample_id, held_out)
        image = features(data.spec, sample_id, preprocessing)
        for mask, store in ((negative, known), (positive, unseen)):
            if not mask.any():
                continue
            x = scaler.transform(image[mask])
            store[BASELINES[0]].append(svc.predict_proba(x).max(1))
            store[BASELINES[1]].append(-neighbours.kneighbors(x)[0][:, 0])
    return {name: ood_scores(_joined(known[name]), _joined(unseen[name])) for name in BASELINES}


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


def datasets(names: list[str], quick: bool, seed: int, folder: Path) -> list[DataSet]:
    """The data sets ``names`` (demo, indian-pines at 3%, real scenes under their quality.py protocols), their
    scribbles drawn with ``seed`` (the demo's scribbles are fixed)."""
    found = [demo(folder, quick)] if "demo" in names else []
    found += [indian_pines(0.03, seed, folder)] if "indian-pines" in names else []
    return found + [real_scene(name, seed, folder) for name in names if name in REAL_SCENES]


def run_all(quick: bool, steps: int | None, folder: Path, names: list[str], calibration: str = "auto",
            seeds: int = 1) -> list[dict]:  # fmt: skip
    """Every held-out set of every data set in ``names``, for each of ``seeds`` seeds (scribbles and training)."""
    config = TrainConfig() if steps is None else TrainConfig(steps=steps, validate_every=max(1, steps // 4))
    config = replace(config, ood_calibration=calibration)
    runs = []
    for seed in range(seeds):
        for data in datasets(names, quick, seed, folder / f"seed-{seed}"):
            runs += run_rotations(data, replace(config, seed=seed), quick, folder / f"seed-{seed}")
    return runs


def run_rotations(data: DataSet, config: TrainConfig, quick: bool, folder: Path) -> list[dict]:
    """The rows of every held-out set of ``data``: hsiseg's scores and the baselines, each on the same pixels."""
    runs = []
    for index, (name, held_out) in enumerate(held_out_sets(data, quick)):
        started = time.perf_counter()
        run_folder = folder / f"{data.spec.name}-{index}"
        torch.manual_seed(config.seed)
        results = run_hsiseg(data, held_out, config, run_folder) | run_baselines(data, held_out, quick)
        kind = "leaf" if len(held_out) == 1 else "family"
        for method, numbers in results.items():
            runs.append({"data": data.name, "held_out": name, "kind": kind, "seed": config.seed, "method": method,
                         **numbers})  # fmt: skip
        best = max(results, key=lambda m: results[m]["auroc"])
        print(f"  {data.name} | seed {config.seed} | without {name} | best {best} AUROC "
              f"{results[best]['auroc']:.3f} | {time.perf_counter() - started:.0f} s", file=sys.stderr)  # fmt: skip
    return runs


def summarise(runs: list[dict]) -> str:
    """Markdown table per data set and kind of held-out set: mean +- std over rotations and seeds, per method."""
    lines = []
    metrics = ("auroc", "aupr", "fpr_at_95_tpr", "known_flagged", "unknown_caught")
    for data in dict.fromkeys(r["data"] for r in runs):
        for kind in ("leaf", "family"):
            group = [r for r in runs if r["data"] == data and r["kind"] == kind]
            if not group:
                continue
            rotations, seeds = len({r["held_out"] for r in group}), len({r.get("seed", 0) for r in group})
            runs_of = f"{rotations} rotations" + (f" x {seeds} seeds" if seeds > 1 else "")
            lines += [f"\n**{data}**, held out: each {kind} in turn ({runs_of})\n"]
            lines += ["| score | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
            for method in dict.fromkeys(r["method"] for r in group):
                rows = [r for r in group if r["method"] == method]
                cells = []
                for metric in metrics:
                    values = np.array([r.get(metric, np.nan) for r in rows], dtype=float)
                    values = values[~np.isnan(values)]
                    spread = values.std(ddof=1) if len(values) > 1 else 0.0
                    cells.append(f"{values.mean():.3f} +- {spread:.3f}" if len(values) else "-")
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny demo, two rotations, few steps")
    parser.add_argument("--steps", type=int, default=None, help="hsiseg training steps (default: TrainConfig's)")
    parser.add_argument("--output", type=Path, default=None, help="write every run's numbers as JSON")
    every = ["demo", "indian-pines", *REAL_SCENES]
    parser.add_argument("--data", nargs="+", default=every, choices=every, help="data sets (default: all)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="scribble and training seeds; each seed repeats every rotation (the mean is over both)")
    parser.add_argument("--ood-calibration", default="auto", choices=["auto", "held-out", "cross-fitted"],
                        help="how hsiseg train calibrates the thresholds (TrainConfig.ood_calibration)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    started = time.perf_counter()
    steps = 12 if args.quick else args.steps
    names = ["demo", "samson"] if args.quick else args.data
    with tempfile.TemporaryDirectory() as folder:
        runs = run_all(args.quick, steps, Path(folder), names, args.ood_calibration, args.seeds)
    trainings = len({(r["data"], r["held_out"], r.get("seed", 0)) for r in runs})
    return finish(runs, summarise(runs), started, f"{trainings} trainings", args.output)


if __name__ == "__main__":
    main()
