"""Segmentation quality: hsiseg's networks against the classifiers a hyperspectral user reaches for first.

Run: ``python benchmarks/quality.py --output results.json`` (3 seeds, every data set and method), or
``--quick`` (one seed, few steps, Indian Pines, Samson and a small demo: the smoke test used by the test suite);
``--data`` and ``--methods`` pick data sets and methods.

Every method sees the same scribbles and is scored on the same held-out pixels:

- Indian Pines at 1%, 3% and 10% scribbles (``hsiseg indian-pines --fraction F --seed S``): trained on the
  scribbles, scored on every other labelled pixel of the scene;
- real scenes that played no part in choosing the defaults (``hsiseg real-scene``; Jasper Ridge, Samson, the
  Indian Pines corn and soybean crops), each under its own stroke protocol (:data:`REAL_SCENES`: budget, stroke
  length, strokes placed by class area or class by class): trained on the scribbles, scored on every other
  labelled pixel;
- the synthetic demo (``hsiseg demo-data``): trained on the scribbles of the 3 training surgeries, scored on
  every pixel of the held-out surgery (dense truth).

Methods: hsiseg through its public pipeline (``hsiseg.training.train`` on the data spec with the default
``TrainConfig``, then prediction of whole cubes with the checkpoint ``final_checkpoint`` names), the
default network with ``ce`` and with the tree losses, the other model families, against scikit-learn's
``SVC`` (RBF; C and gamma chosen by 3-fold cross-validation on the scribbles only), ``RandomForestClassifier``
and ``MLPClassifier`` (a plain spectral MLP), each on standardised spectra after the spec's preprocessing.
The baselines use every scribble of the training images (hsiseg keeps the validation surgery, or held-out
strokes, for checkpoint choice and then refits on all strokes where it held them out); partial-label strokes
are dropped for the baselines. Seeds change the scribbles (Indian Pines) and every method's initialisation.

Metrics: overall (leaf) accuracy, leaf mean Dice over classes present in the truth, top-level accuracy,
mistake severity (mean tree distance), wall time (training + prediction). Paired differences to the SVC with
95% t-intervals.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from hsiseg.annotations import UNLABELLED
from hsiseg.dataset.spec import DataSpec
from hsiseg.evaluation.metrics import confusion_matrix, dice_per_class, to_level
from hsiseg.evaluation.scores import mistake_severity
from hsiseg.predict.inference import Predictor
from hsiseg.training import TrainConfig, final_checkpoint, train

sys.path.insert(0, str(Path(__file__).parent))
from common import finish, interval  # noqa: E402

BASELINE = "SVC (RBF, CV)"


@dataclass
class DataSet:
    """Training images and scored images of one benchmark data set (sample ids of one spec)."""

    name: str
    spec: DataSpec
    train_ids: list[str]
    test_ids: list[str]
    truth: Callable[[str], np.ndarray]  # sample id -> (H, W) truth codes, -100 where not scored


def hsiseg_methods(steps: int | None) -> dict[str, TrainConfig]:
    """hsiseg configurations: the defaults, the tree losses, the other model families."""
    default = TrainConfig() if steps is None else TrainConfig(steps=steps, validate_every=max(1, steps // 4))
    small_unet = {"width": 16, "depth": 3}
    return {
        "hsiseg default (auto: context chosen on held-out strokes, ce)": default,
        "hsiseg spectral-spatial, guided sigma 3 (the earlier default)": replace(default, model="spectral-spatial"),
        "hsiseg default + tree-ce": replace(default, loss="tree-ce"),
        "hsiseg default + tree-wasserstein": replace(default, loss="tree-wasserstein"),
        "hsiseg spectral-spatial, gaussian context": replace(
            default, model="spectral-spatial", model_options={"context": "gaussian", "sigma": 2.0}
        ),
        "hsiseg spectral-spatial, rbf": replace(default, model="spectral-spatial", model_options={"spectral": "rbf"}),
        "hsiseg pixel": replace(default, model="pixel"),
        "hsiseg unet (width 16, depth 3)": replace(default, model="unet", model_options=small_unet, patch_size=32),
    }


def run_hsiseg(data: DataSet, config: TrainConfig, seed: int, folder: Path) -> dict[str, np.ndarray]:
    run = folder / f"run-{time.perf_counter_ns()}"
    train(data.spec.path, run, replace(config, seed=seed, device="cpu"))
    predictor = Predictor.from_checkpoint(final_checkpoint(run))
    return {i: predictor.predict(data.spec.read_cube(i)).labels for i in data.test_ids}


def features(spec: DataSpec, sample_id: str, preprocessing) -> np.ndarray:
    cube = spec.read_cube(sample_id)
    return preprocessing.apply(cube.data, cube.wavelengths)[0]


def run_sklearn(data: DataSet, make: Callable[[int], object], seed: int) -> dict[str, np.ndarray]:
    """Fit a scikit-learn classifier on standardised scribbled spectra of the training images."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    preprocessing = data.spec.fitted_preprocessing()
    spectra, codes = [], []
    for sample_id in data.train_ids:
        image, target = features(data.spec, sample_id, preprocessing), data.spec.read_annotation(sample_id)
        keep = (target != UNLABELLED) & (target < data.spec.tree.num_leaves)
        spectra.append(image[keep])
        codes.append(target[keep])
    with warnings.catch_warnings():  # the MLP's iteration cap in --quick; the full run converges
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier = make_pipeline(StandardScaler(), make(seed)).fit(np.concatenate(spectra), np.concatenate(codes))
    predictions = {}
    for sample_id in data.test_ids:
        image = features(data.spec, sample_id, preprocessing)
        predictions[sample_id] = classifier.predict(image.reshape(-1, image.shape[-1])).reshape(image.shape[:2])
    return predictions


def sklearn_methods(quick: bool) -> dict[str, Callable[[int], object]]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GridSearchCV
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    grid = {"C": [1, 10, 100, 1000], "gamma": ["scale", 0.001, 0.01, 0.1]} if not quick else {"C": [10]}
    return {
        BASELINE: lambda seed: GridSearchCV(SVC(random_state=seed), grid, cv=3),
        "RandomForest (500 trees)": lambda seed: RandomForestClassifier(
            n_estimators=20 if quick else 500, random_state=seed, n_jobs=1
        ),
        "MLP (sklearn, 2 x 128)": lambda seed: MLPClassifier(
            (128, 128), max_iter=30 if quick else 500, early_stopping=False, random_state=seed
        ),
    }


def score(data: DataSet, predictions: dict[str, np.ndarray]) -> dict[str, float]:
    tree = data.spec.tree
    predicted, truth = [], []
    for sample_id, labels in predictions.items():
        wanted = data.truth(sample_id)
        keep = (wanted != UNLABELLED) & (wanted < tree.num_leaves)
        predicted.append(labels[keep].astype(np.int64))
        truth.append(wanted[keep].astype(np.int64))
    predicted, truth = np.concatenate(predicted), np.concatenate(truth)
    confusion = confusion_matrix(predicted, truth, tree.num_leaves)
    present = confusion.sum(1) > 0
    return {
        "accuracy": float(np.trace(confusion) / confusion.sum()),
        "leaf_mean_dice": float(np.nanmean(dice_per_class(confusion)[present])),
        "top_accuracy": float((to_level(predicted, tree, 1) == to_level(truth, tree, 1)).mean()),
        "severity": float(mistake_severity(predicted, truth, tree)["mean_distance"]),
    }


def indian_pines(fraction: float, seed: int, folder: Path) -> DataSet:
    from hsiseg.dataset.indian_pines import write_indian_pines

    spec = DataSpec.from_file(write_indian_pines(folder / f"pines-{fraction}-{seed}", fraction, seed=seed))
    return DataSet(f"Indian Pines, {fraction:.0%} scribbles", spec, ["indian_pines"], ["indian_pines"],
                   lambda i: spec.read_truth(i))  # fmt: skip


# Real scenes that played no part in choosing the defaults, each under its own stroke protocol (budget, stroke
# length, placement), so that no default can be tuned to one protocol: scene -> (fraction, length, placement).
REAL_SCENES = {
    "jasper-ridge": (0.025, 8, "area"),
    "samson": (0.01, 16, "class"),
    "indian-pines-crops": (0.05, 4, "class"),
}


def real_scene(name: str, seed: int, folder: Path) -> DataSet:
    from hsiseg.dataset.scenes import write_real_scene

    fraction, length, placement = REAL_SCENES[name]
    spec = DataSpec.from_file(write_real_scene(name, folder / f"{name}-{seed}", fraction, length, seed, placement))
    sample = spec.split("train")
    label = f"{name}, {fraction:.1%} in strokes of {length} px by {placement}"
    return DataSet(label, spec, sample, sample, lambda i: spec.read_truth(i))


def scene_runs(names: list[str], seeds: int, folder: Path) -> Iterator[tuple[DataSet, int]]:
    """(data set, seed) for every real scene (or ``indian-pines`` at 3%) in ``names`` and seed, each in a folder
    of its own under ``folder``."""
    for name in names:
        for seed in range(seeds):
            scene = folder / f"{name}-{seed}"
            yield (indian_pines(0.03, seed, scene) if name == "indian-pines" else real_scene(name, seed, scene)), seed


def scene_experiment(
    argv: list[str] | None, description: str, data: list[str], seeds: int,
    run: Callable[[DataSet, int], list], summarise: Callable[[list], str],
) -> dict:  # fmt: skip
    """The command line of an experiment on real scenes (``--data``, ``--seeds``, ``--quick``: Samson, one seed):
    ``run(data set, seed)`` rows for every scene and seed, then ``summarise(rows)`` printed with the time."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", nargs="+", default=data, choices=[*REAL_SCENES, "indian-pines"])
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--quick", action="store_true", help="Samson, one seed (the test suite)")
    arguments = parser.parse_args(argv)
    names, seeds = (["samson"], 1) if arguments.quick else (arguments.data, arguments.seeds)
    started, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as folder:
        for data_set, seed in scene_runs(names, seeds, Path(folder)):
            rows += run(data_set, seed)
    report = summarise(rows) + f"\n\n{len(names)} scenes x {seeds} seeds in {time.perf_counter() - started:.0f} s"
    print(report)
    return {"rows": rows, "report": report}


def demo(folder: Path, quick: bool) -> DataSet:
    from hsiseg.synthetic.dataset import generate_demo_data

    shape, frames = ((32, 40), 1) if quick else ((96, 128), 3)
    spec = DataSpec.from_file(generate_demo_data(folder / "demo", frames=frames, shape=shape))
    return DataSet("demo, held-out surgery (dense truth)", spec, spec.split("train") + spec.split("val"),
                   spec.split("test"), lambda i: spec.read_truth(i))  # fmt: skip


def run_all(
    quick: bool, seeds: list[int], fractions: list[float], steps: int | None, folder: Path, scenes: list[str],
    methods_wanted: list[str] | None = None,
) -> list[dict]:  # fmt: skip
    methods: dict[str, Callable[[DataSet, int], dict[str, np.ndarray]]] = {
        name: (lambda d, s, c=config: run_hsiseg(d, c, s, folder)) for name, config in hsiseg_methods(steps).items()
    }
    if quick:
        methods = dict(list(methods.items())[:1])
    methods |= {name: (lambda d, s, m=make: run_sklearn(d, m, s)) for name, make in sklearn_methods(quick).items()}
    if methods_wanted:
        methods = {name: method for name, method in methods.items() if any(w in name for w in methods_wanted)}
    runs = []
    demo_data = demo(folder, quick) if "demo" in scenes else None
    for seed in seeds:
        sets = [indian_pines(f, seed, folder) for f in fractions] if "indian-pines" in scenes else []
        sets += [real_scene(name, seed, folder) for name in scenes if name in REAL_SCENES]
        for data in sets + ([demo_data] if demo_data else []):
            for name, method in methods.items():
                torch.manual_seed(seed)
                started = time.perf_counter()
                result = score(data, method(data, seed))
                runs.append({"data": data.name, "method": name, "seed": seed, **result,
                             "seconds": time.perf_counter() - started})  # fmt: skip
                print(f"  {data.name} | {name} | seed {seed} | dice {result['leaf_mean_dice']:.3f}", file=sys.stderr)
    return runs


def summarise(runs: list[dict], metrics=("leaf_mean_dice", "accuracy", "top_accuracy", "severity", "seconds")) -> str:
    """Markdown tables per data set: mean +- std per method, paired difference to the SVC in leaf mean Dice."""
    lines = []
    for data in dict.fromkeys(r["data"] for r in runs):
        group = [r for r in runs if r["data"] == data]
        baseline = {r["seed"]: r for r in group if r["method"] == BASELINE}
        lines += [f"\n**{data}** ({len({r['seed'] for r in group})} seeds)\n"]
        lines += ["| method | " + " | ".join(metrics) + " | d leaf_mean_dice vs SVC [95% CI] |"]
        lines += ["|---" * (len(metrics) + 2) + "|"]
        for method in dict.fromkeys(r["method"] for r in group):
            rows = [r for r in group if r["method"] == method]
            cells = []
            for metric in metrics:
                values = np.array([r[metric] for r in rows])
                spread = values.std(ddof=1) if len(values) > 1 else 0.0
                cells.append(f"{values.mean():.1f} +- {spread:.1f}" if metric == "seconds" else
                             f"{values.mean():.3f} +- {spread:.3f}")  # fmt: skip
            diffs = np.array([r["leaf_mean_dice"] - baseline[r["seed"]]["leaf_mean_dice"] for r in rows])
            cells.append("-" if method == BASELINE else interval(diffs))
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, Indian Pines 3%% and tiny demo, few steps")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.03, 0.10])
    parser.add_argument("--steps", type=int, default=None, help="hsiseg training steps (default: TrainConfig's)")
    parser.add_argument("--output", type=Path, default=None, help="write every run's numbers as JSON")
    parser.add_argument("--data", nargs="+", default=["indian-pines", *REAL_SCENES, "demo"],
                        choices=["indian-pines", *REAL_SCENES, "demo"], help="data sets (default: all)")
    parser.add_argument("--methods", nargs="+", default=None, help="only methods whose name contains one of these")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    seeds, fractions, steps = ([0], [0.03], 12) if args.quick else (list(range(args.seeds)), args.fractions, args.steps)
    with tempfile.TemporaryDirectory() as folder:
        scenes = ["indian-pines", "samson", "demo"] if args.quick else args.data
        runs = run_all(args.quick, seeds, fractions, steps, Path(folder), scenes, args.methods)
    return finish(runs, summarise(runs), started, f"{len(runs)} runs", args.output)


if __name__ == "__main__":
    main()
