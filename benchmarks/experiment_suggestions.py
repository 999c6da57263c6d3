"""Three ideas for the annotation budget, each measured against hsiseg's default in one run: training the live
model on every stroke, predicting with an average of its weights, and asking where the map changed most.

Run: ``python benchmarks/experiment_suggestions.py`` (``--data indian-pines demo``, ``--seeds 3``,
``--strokes 20``; ``--quick``: a small demo image, 3 strokes, 1 seed). The protocol is
``benchmarks/annotation_budget.py``'s (the same simulated annotator, first strokes and seeds); per data set and
seed it draws these curves of leaf mean Dice:

- ``default``: the live model of ``hsiseg annotate`` (:class:`~hsiseg.annotate.live_model.LiveModel`) with
  ``random`` placement and with the default strategy ``mix``: the baseline of every variant below;
- ``every stroke``: the live model trains on every stroke. By default it holds out a quarter of each class's
  strokes (at least one once a class has two) to score the map and calibrate the unknown-tissue threshold, so
  a newly drawn stroke often trains nothing. (Dice of the leaf map only: the calibration is not under test.)
- ``weight average``: the map comes from an exponential moving average of the network's weights over the
  training steps (decay :data:`DECAY`, carried from update to update; training goes on from the raw weights),
  which damps the map's swings between updates;
- ``map changes`` (``mix`` only): a fourth criterion in the mix, how far the region's class probabilities
  moved since the previous update (half the L1 distance; query by committee of two checkpoints), weights
  :data:`CHANGE_WEIGHTS`.

Prints the mean curve of each (Dice after 0, 5, 10, 15 and 20 strokes) and the strokes each needs to reach
the Dice the default reaches with random placement at the end; writes ``--output`` (every curve, JSON).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from annotation_budget import TRIES, _suggested, load, run_strategy, strokes_to_reach  # noqa: E402

from hsiseg.annotate.live_model import LiveModel, LiveSettings  # noqa: E402
from hsiseg.labels import UNLABELLED  # noqa: E402

suggest_module = importlib.import_module("hsiseg.active.suggest")  # the module (the package exports the function)

DECAY = 0.98
CHANGE_WEIGHTS = {"low margin": 0.4, "unknown": 0.2, "few strokes": 0.2, "map changes": 0.2}


class EveryStroke(LiveModel):
    """The live model trained on every stroke: nothing held out."""

    def _split(self, samples):
        train = {sample.sample_id: sample.codes for sample in samples}
        return train, {key: np.full_like(codes, UNLABELLED) for key, codes in train.items()}


class WeightAverage(LiveModel):
    """The live model predicting with an exponential moving average of its weights (see module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.average: dict | None = None
        self.raw: dict = {}

    def _network(self, spectra):
        model = super()._network(spectra)
        if self.average is None:
            self.average = copy.deepcopy(model.state_dict())
            self.raw = copy.deepcopy(model.state_dict())
            self.optimizer.register_step_post_hook(lambda optimizer, args, kwargs: self._accumulate(model))
        return model

    def _accumulate(self, model) -> None:
        assert self.average is not None
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.average[name].mul_(DECAY).add_(value.detach(), alpha=1 - DECAY)
            else:
                self.average[name].copy_(value)

    def _train(self, model, batches, steps, should_stop, progress):
        model.load_state_dict(self.raw)  # training goes on from the raw weights
        super()._train(model, batches, steps, should_stop, progress)
        self.raw = copy.deepcopy(model.state_dict())
        model.load_state_dict(self.average)  # type: ignore[arg-type]


class MapChanges:
    """The default mix with a fourth criterion: how far each region's probabilities moved since the previous
    update. One instance per curve (it keeps the previous map)."""

    def __init__(self) -> None:
        self.previous: np.ndarray | None = None

    def __call__(self, prediction, scribbles, tree, strategy, superpixels, rng, *rest, declined=None) -> list:
        module = suggest_module
        free = (scribbles == UNLABELLED) & ~prediction.invalid & (True if declined is None else ~declined)
        table = module._region_table(prediction, scribbles, superpixels, tree, free)
        moved = (np.zeros(superpixels.shape) if self.previous is None
                 else 0.5 * np.abs(prediction.probabilities - self.previous).sum(0))  # fmt: skip
        changes = np.array([moved[(superpixels == region) & free].mean() for region in table.ids])
        self.previous = prediction.probabilities.copy()
        criteria = {"low margin": table.margin, "unknown": table.unknown, "few strokes": table.rare,
                    "map changes": changes}  # fmt: skip
        scores = np.sum([CHANGE_WEIGHTS[name] * module._ranks(values) for name, values in criteria.items()], axis=0)
        chosen: list[int] = []
        for _ in range(min(TRIES, table.ids.size)):
            penalty = np.array([0.5 ** sum(table.predicted[k] == p for k in chosen) for p in table.predicted])
            adjusted = np.where(np.isin(np.arange(scores.size), chosen), -np.inf, scores * penalty)
            chosen.append(int(np.argmax(adjusted)))
        return [module._suggestion(rank + 1, index, 0.0, table, superpixels, free, prediction, tree)
                for rank, index in enumerate(chosen)]  # fmt: skip


VARIANTS = {
    "default": (LiveModel, ("random", "mix"), lambda: _suggested),
    "every stroke": (EveryStroke, ("random", "mix"), lambda: _suggested),
    "weight average": (WeightAverage, ("random", "mix"), lambda: _suggested),
    "map changes": (LiveModel, ("mix",), MapChanges),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["indian-pines", "demo"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strokes", type=int, default=20)
    parser.add_argument("--output", type=Path, default=Path("experiment_suggestions.json"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.data, args.seeds, args.strokes = ["demo"], 1, 3
    settings = LiveSettings(first_steps=60, update_steps=20) if args.quick else LiveSettings()
    started, results = time.perf_counter(), {}
    print("| data | live model / suggestions | strategy | Dice after 0, 5, 10, ... strokes | strokes to "
          "reach the default's random Dice at the end |\n|---|---|---|---|---|")  # fmt: skip
    for data in args.data:
        cube, truth, tree = load(data, args.quick)
        for variant, (live_model, strategies, suggested) in VARIANTS.items():
            for strategy in strategies:
                curves = [run_strategy(cube, truth, tree, strategy, args.strokes, 8, seed, settings, live_model,
                                       suggested()) for seed in range(args.seeds)]  # fmt: skip
                results[f"{data} / {variant} / {strategy}"] = curves
                print(_row(data, variant, strategy, curves, results[f"{data} / default / random"]), flush=True)
    args.output.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}))
    print(f"{time.perf_counter() - started:.0f} s; curves in {args.output}")


def _row(data: str, variant: str, strategy: str, curves: list[dict], baseline: list[dict]) -> str:
    mean = np.mean([c["dice"] for c in curves], axis=0)
    target = np.mean([c["dice"][-1] for c in baseline])
    reach = np.array([strokes_to_reach(c["dice"], target) for c in curves])
    reached = f"{reach.mean():.1f}" if not np.isnan(reach).any() else f"{int(np.isnan(reach).sum())} seeds never"
    points = " / ".join(f"{mean[k]:.3f}" for k in range(0, len(mean), 5))
    return f"| {data} | {variant} | {strategy} | {points} | {reached} |"


if __name__ == "__main__":
    main()
