"""Where to scribble next, measured: leaf mean Dice against the number of strokes a simulated annotator draws,
for each placement strategy, with an SVC trained on the same strokes beside it.

Run: ``python benchmarks/annotation_budget.py`` (``--data demo indian-pines jasper-ridge samson``,
``--strokes 30``, ``--seeds 5``; ``--quick``: a small demo image, 4 strokes, 1 seed, for the tests).

Protocol, per data set and seed: the annotator starts from one stroke per class
(:func:`hsiseg.active.simulated_annotator.first_strokes`); each round the live model of ``hsiseg annotate``
(:class:`~hsiseg.annotate.live_model.LiveModel`, warm-started) updates, the strategy picks a region
(:func:`hsiseg.active.suggest`: ``mix`` = hsiseg's default, ``uncertainty``, ``random``, ``grid``: one evenly
spaced list of regions walked over the run) and the
annotator draws one stroke of ``--length`` pixels inside it, labelled from the truth under the stroke only, 20%
of them with the parent node where the leaf has siblings. Where the pixel a stroke starts on is no class of the
tree (Indian Pines' unlabelled background), the annotator declines the suggestion and goes to the next, up to
:data:`TRIES`; a declined region is not suggested again (``hsiseg.active.suggest(declined=...)``, as the
annotation page's "no class here" does); when all of them were declined, the annotator asks for new
suggestions, up to :data:`ASKS` times, so a round draws a stroke unless no region is left (until 2026-12-06,
later: a round whose suggestions were all declined passed without a stroke but counted as one).
With ``--offer-declined-again`` (the protocol before 2026-12-06)
declined regions come back in later rounds, and a round whose :data:`TRIES` suggestions all lie on background
passes without a stroke while still counting as one. The table reports both: suggestions declined, rounds
without a stroke.
After every stroke: leaf mean Dice of the leaf map on every truth pixel of the image, the share of those (all
known) pixels the map calls unknown, and an RBF SVC (scikit-learn, balanced, C = 10) trained on the
leaf-labelled stroke pixels of the same strategy. Writes ``--output`` (JSON with every curve) and a plot beside
it; prints the strokes each strategy needs to reach what random placement reaches at the end.

Data: the demo's held-out surgery (one image, 14 leaves), the rich synthetic scene's (``rich``: one image of
96 x 128 x 100 from a tree of 100 leaves, of which the image shows a few dozen), Indian Pines (145 x 145, 16
leaves), and the real scenes of :mod:`hsiseg.dataset.scenes`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from hsiseg.active import suggest
from hsiseg.active.simulated_annotator import TruthOracle, coarse, first_strokes, stroke_in
from hsiseg.annotate.live_model import LiveModel, LiveSample, LiveSettings
from hsiseg.io import Cube
from hsiseg.labels import UNLABELLED
from hsiseg.predict.inference import prepare_cube
from hsiseg.spectral import Preprocessing
from hsiseg.tree import LabelTree

STRATEGIES = ("mix", "uncertainty", "random", "grid", "stratified")
COARSE_SHARE = 0.2
TRIES = 5  # suggestions the annotator goes through, in order, until one starts on a class of the tree
ASKS = 4  # times the annotator asks for new suggestions in a round while every one so far was declined


def load(name: str, quick: bool) -> tuple[Cube, np.ndarray, LabelTree]:
    """(cube, truth as leaf codes, tree) of one benchmark image."""
    if name in ("demo", "rich"):
        from hsiseg.dataset.spec import DataSpec
        from hsiseg.synthetic.dataset import generate_demo_data

        folder = Path(tempfile.mkdtemp(prefix=f"budget-{name}-"))
        shape = (48, 64) if quick else (96, 128)
        scene = "neurosurgery" if name == "demo" else "rich"
        spec = DataSpec.from_file(generate_demo_data(folder, surgeries=4, frames=1, shape=shape, seed=11,
                                                     scene=scene))  # fmt: skip
        sample_id = spec.split("test", 0)[0]
        return spec.read_cube(sample_id), spec.read_truth(sample_id), spec.tree  # type: ignore[return-value]
    if name == "indian-pines":
        from hsiseg.dataset.indian_pines import load_indian_pines, pines_tree

        cube, truth = load_indian_pines()
        return cube, truth, pines_tree()
    from hsiseg.dataset.scenes import load_scene, scene_tree

    cube, truth = load_scene(name)
    return cube, truth, scene_tree(name)


def run_strategy(cube: Cube, truth: np.ndarray, tree: LabelTree, strategy: str, strokes: int, length: int,
                 seed: int, settings: LiveSettings, live_model: type[LiveModel] = LiveModel,
                 suggested: Callable[..., list] | None = None,
                 decline: bool = True) -> dict[str, list[float]]:  # fmt: skip
    """One curve: Dice (and unknown share, SVC Dice) after each round from the first strokes on, with the
    suggestions declined (``declined``: those holding no class of the tree, which the annotator turned down)
    and whether the round drew no stroke (``no_stroke``). ``live_model`` and ``suggested`` (the arguments of
    :func:`_suggested`, the default) let an experiment vary the live model or the suggestions
    (``benchmarks/experiment_suggestions.py``); ``decline=False`` is the earlier protocol, where declined
    regions were offered again in later rounds."""
    suggested = _suggested if suggested is None else suggested
    rng = np.random.default_rng([seed, STRATEGIES.index(strategy)])
    oracle = TruthOracle(truth)
    scribbles = first_strokes(oracle, length, np.random.default_rng(seed))  # the same start for every strategy
    oracle.forget()
    preprocessing = Preprocessing(normalization="l1", wavelengths=cube.wavelengths.tolist())
    prepared = prepare_cube(cube, preprocessing)
    model = live_model(tree, preprocessing, int(prepared.image.shape[0]), settings)
    curve: dict[str, list[float]] = {"strokes": [], "dice": [], "unknown": [], "svc_dice": [], "declined": [],
                                     "no_stroke": []}  # fmt: skip
    superpixels, declined = None, np.zeros(truth.shape, dtype=bool)
    for _ in range(strokes + 1):
        result = model.update([LiveSample("image", prepared, scribbles)])
        prediction = result.predictions["image"]
        _record(curve, prediction, scribbles, truth, tree, prepared.image.numpy())
        if len(curve["strokes"]) > strokes:
            break
        if superpixels is None:
            from hsiseg.active import regions

            superpixels = regions(prepared.image.numpy(), prediction.invalid, seed)
        stroke, turned_down = _one_round(
            partial(suggested, prediction, scribbles, tree, strategy, superpixels, rng, seed,
                    len(curve["strokes"]) - 1, strokes, declined=declined if decline else None),
            oracle, length, rng, declined, asks=ASKS if decline else 1,
        )  # fmt: skip
        curve["declined"].append(float(turned_down))
        curve["no_stroke"].append(float(stroke is None))
        if stroke is not None:
            pixels, leaf = stroke
            scribbles = scribbles.copy()
            scribbles[pixels] = coarse(leaf, tree, COARSE_SHARE, rng)
    return curve


def _one_round(ask: Callable[[], list], oracle: TruthOracle, length: int, rng: np.random.Generator,
               declined: np.ndarray, asks: int) -> tuple[tuple[tuple[np.ndarray, np.ndarray], int] | None, int]:
    """The stroke of one round and the number of suggestions declined on the way: the annotator goes through
    the suggestions in order and, when every one was declined, asks for new ones (declined regions are never
    offered again), at most ``asks`` times."""
    turned_down, stroke = 0, None
    for _ in range(asks):
        found = ask()
        stroke = _draw(oracle, found, length, rng, declined)
        turned_down += sum(bool((f.mask & declined).any()) for f in found)
        if stroke is not None or not found:
            break
    return stroke, turned_down


def _draw(oracle: TruthOracle, found: list, length: int, rng: np.random.Generator,
          declined: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], int] | None:  # fmt: skip
    """The first stroke the annotator can draw in the suggestions, in order; a suggestion whose start pixel
    holds no class of the tree (background without truth) is declined: its pixels go into ``declined``."""
    for suggestion in found:
        stroke = stroke_in(oracle, suggestion.mask, length, rng)
        if stroke is not None:
            return stroke
        declined |= suggestion.mask
    return None


def _suggested(prediction, scribbles: np.ndarray, tree: LabelTree, strategy: str, superpixels: np.ndarray,
               rng: np.random.Generator, seed: int, round_index: int, strokes: int,
               declined: np.ndarray | None = None) -> list:  # fmt: skip
    """The suggestions the annotator goes through this round, best first. ``grid`` walks one evenly spaced list
    over the whole run (the same offset every round; round t starts at its t-th region), so the strokes cover
    the image; every other strategy asks for its :data:`TRIES` best regions anew."""
    if strategy != "grid":
        return suggest(prediction, scribbles, tree, TRIES, strategy, int(rng.integers(2**31)), superpixels=superpixels,
                       declined=declined)  # fmt: skip
    spaced = suggest(prediction, scribbles, tree, strokes + 1, "grid", seed, superpixels=superpixels, declined=declined)
    start = round_index % max(1, len(spaced))
    return (spaced[start:] + spaced[:start])[:TRIES]


def _record(curve: dict[str, list[float]], prediction, scribbles: np.ndarray, truth: np.ndarray, tree: LabelTree,
            image: np.ndarray) -> None:  # fmt: skip
    known = np.where(truth >= 0, truth, UNLABELLED)
    curve["strokes"].append(float(len(curve["strokes"])))
    curve["dice"].append(_dice(prediction.labels, known, tree))  # the leaf map (the unknown share: its own curve)
    curve["unknown"].append(float(prediction.unknown[truth >= 0].mean()))
    curve["svc_dice"].append(_svc_dice(image, scribbles, known, tree))


def _dice(labels: np.ndarray, known: np.ndarray, tree: LabelTree) -> float:
    """Leaf mean Dice over the classes of the truth (a label outside the leaves counts as wrong)."""
    scores = []
    for code in np.unique(known[known != UNLABELLED]):
        predicted, wanted = labels == code, known == code
        scores.append(2 * (predicted & wanted).sum() / max(1, predicted[known != UNLABELLED].sum() + wanted.sum()))
    return float(np.mean(scores))


def _svc_dice(image: np.ndarray, scribbles: np.ndarray, known: np.ndarray, tree: LabelTree) -> float:
    from sklearn.svm import SVC

    leaves = (scribbles != UNLABELLED) & (scribbles < tree.num_leaves)
    if len(np.unique(scribbles[leaves])) < 2:
        return float("nan")
    spectra = image.reshape(image.shape[0], -1).T
    classifier = SVC(C=10.0, gamma="scale", class_weight="balanced").fit(spectra[leaves.ravel()], scribbles[leaves])
    return _dice(classifier.predict(spectra).reshape(known.shape), known, tree)


def strokes_to_reach(curve: list[float], target: float) -> float:
    """The first stroke count whose Dice reaches ``target`` (NaN when never)."""
    for strokes, value in enumerate(curve):
        if value >= target:
            return float(strokes)
    return float("nan")


def summarise(results: dict) -> list[str]:
    """Markdown lines: per data set and strategy, the mean Dice at the start and the end, the strokes its mean
    curve needs to reach random placement's final mean Dice (and how many seeds' own curves never reach it),
    its Dice at half the strokes minus random's at all of them (paired by seed, with a 95% interval: >= 0 is
    "half the budget"), the SVC on the same strokes, and the suggestions the annotator declined."""
    lines = ["| data | strategy | Dice at start | Dice at the end | mean curve reaches random's final Dice after | "
             "Dice at half the strokes - random's at the end [95% CI] | SVC Dice at the end (same strokes) | "
             "suggestions declined | rounds without a stroke |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for data, per_strategy in results.items():
        random_curves = np.array([c["dice"] for c in per_strategy["random"]])
        random_final = random_curves.mean(0)[-1]  # the same reduction as the mean curves it is compared with
        for strategy, curves in per_strategy.items():
            dice = np.array([c["dice"] for c in curves])
            reach = strokes_to_reach(list(dice.mean(0)), random_final)
            never = int(np.isnan([strokes_to_reach(list(curve), random_final) for curve in dice]).sum())
            reached = ("never" if np.isnan(reach) else f"{reach:.0f}") + (f" ({never} seeds never)" if never else "")
            half = paired_interval(dice[:, (dice.shape[1] - 1) // 2], random_curves[:, -1])
            svc = np.nanmean([c["svc_dice"][-1] for c in curves])
            declined = np.mean([sum(c.get("declined", [])) for c in curves])
            lost = np.mean([sum(c.get("no_stroke", [])) for c in curves])
            lines.append(f"| {data} | {strategy} | {dice[:, 0].mean():.3f} | {dice[:, -1].mean():.3f} | {reached} | "
                         f"{half} | {svc:.3f} | {declined:.1f} | {lost:.1f} |")  # fmt: skip
    return lines


def paired_interval(values: np.ndarray, baseline: np.ndarray) -> str:
    """``+0.012 [-0.004, +0.028]``: the mean of ``values - baseline`` (paired by seed) and its 95% t interval."""
    from scipy import stats

    difference = values - baseline
    if len(difference) < 2:
        return f"{difference.mean():+.3f}"
    half_width = stats.t.ppf(0.975, len(difference) - 1) * difference.std(ddof=1) / np.sqrt(len(difference))
    return f"{difference.mean():+.3f} [{difference.mean() - half_width:+.3f}, {difference.mean() + half_width:+.3f}]"


def plot(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5 * len(results), 4))
    for index, (data, per_strategy) in enumerate(results.items()):
        axes = figure.add_subplot(1, len(results), index + 1)
        for strategy, curves in per_strategy.items():
            mean = np.mean([c["dice"] for c in curves], axis=0)
            axes.plot(np.arange(len(mean)), mean, label=f"hsiseg, {strategy}")
        svc = np.nanmean([c["svc_dice"] for c in per_strategy["random"]], axis=0)
        axes.plot(np.arange(len(svc)), svc, "k--", label="SVC, random strokes")
        random_final = np.mean([c["dice"] for c in per_strategy["random"]], axis=0)[-1]
        axes.axhline(random_final, color="grey", linewidth=0.8, linestyle=":", label="random's final Dice")
        axes.axvline((len(svc) - 1) / 2, color="grey", linewidth=0.8, linestyle=":")
        axes.set(title=f"{data} ({len(per_strategy['random'])} seeds)", xlabel="strokes after one per class",
                 ylabel="leaf mean Dice, mean over seeds")
        axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["demo", "indian-pines"])
    parser.add_argument("--strokes", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--length", type=int, default=8)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--output", type=Path, default=Path("annotation_budget.json"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--offer-declined-again", action="store_true",
                        help="the earlier protocol: declined regions are suggested again later")  # fmt: skip
    parser.add_argument("--table", type=Path, help="print the table and redraw the plot of this saved run; no run")
    args = parser.parse_args()
    if args.table is not None:
        results = json.loads(args.table.read_text())["results"]
        plot(results, args.table.with_suffix(".png"))
        print("\n".join(summarise(results)))
        return
    if "random" not in args.strategies:
        parser.error("--strategies must include random (the baseline every other strategy is measured against)")
    if args.quick:
        args.data, args.strokes, args.seeds = ["demo"], 4, 1
    settings = LiveSettings(first_steps=60, update_steps=20) if args.quick else LiveSettings()
    started = time.perf_counter()
    results: dict[str, dict[str, list]] = {}
    for data in args.data:
        cube, truth, tree = load(data, args.quick)
        results[data] = {}
        for strategy in args.strategies:
            results[data][strategy] = [run_strategy(cube, truth, tree, strategy, args.strokes, args.length, seed,
                                                    settings, decline=not args.offer_declined_again)
                                       for seed in range(args.seeds)]  # fmt: skip
            print(f"{data} {strategy}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    args.output.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}))
    plot(results, args.output.with_suffix(".png"))
    print("\n".join(summarise(results)))
    print(f"{time.perf_counter() - started:.0f} s; curves in {args.output} and {args.output.with_suffix('.png')}")


if __name__ == "__main__":
    main()
