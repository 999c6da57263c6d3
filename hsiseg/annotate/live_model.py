"""The live model of an annotation session: the default network trained in seconds on the strokes drawn so
far, warm-started on every update, with its unknown-tissue score calibrated on held-out strokes.

An update:

1. holds out a share of each class's strokes per image (:func:`~hsiseg.dataset.strokes.hold_out_strokes`;
   classes with one stroke keep it for training);
2. trains the default network (:data:`~hsiseg.models.DEFAULT_MODEL`, the default loss ``ce``, which takes the
   partial labels of internal nodes) on the training strokes: a new network for ``first_steps`` steps, or the
   previous one, warm-started, for ``update_steps`` steps; batches of annotated pixels, class-balanced and
   spectrally augmented as in ``hsiseg train`` (:class:`~hsiseg.dataset.pixel_batches.PixelBatches`);
3. fits the default unknown-tissue score on the training strokes and calibrates its threshold on the held-out
   strokes (``keep`` of them stay known; while no class has two strokes, on the training strokes, whose scores
   are optimistic, keeping :data:`TRAINING_KEEP` of them), and scores the held-out strokes (mean leaf Dice);
4. returns a :class:`~hsiseg.predict.Predictor`: the map of any image comes from the same code as
   ``hsiseg predict``.

``should_stop()`` is asked between steps: a newer set of strokes cancels a stale update (:class:`Cancelled`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from hsiseg.dataset.pixel_batches import PixelBatches
from hsiseg.dataset.strokes import hold_out_strokes
from hsiseg.dataset.torch_datasets import Augmentation
from hsiseg.errors import HsisegError
from hsiseg.evaluation.metrics import annotated_metrics
from hsiseg.labels import UNLABELLED
from hsiseg.losses import build_loss
from hsiseg.models import DEFAULT_MODEL, AnySize, build_model, network_of
from hsiseg.models.card import ModelCard, NetworkConfig, OodCalibration, OodSettings
from hsiseg.ood import DEFAULT_SCORE
from hsiseg.ood.calibration import fit_scores
from hsiseg.ood.maps import network_outputs, pixel_outputs
from hsiseg.predict.inference import Prediction, Predictor, Prepared
from hsiseg.spectral import Preprocessing
from hsiseg.training.step import warmup_cosine
from hsiseg.tree import LabelTree

TRAINING_KEEP = 0.999  # without held-out strokes: the share of training pixels kept (their scores are optimistic)
UPDATE_LR_SHARE = 0.3  # a warm-started update peaks at this share of the first training's learning rate


class Cancelled(Exception):
    """An update stopped because newer strokes made it stale."""


@dataclass(frozen=True)
class LiveSettings:
    """Budgets of the live model (defaults measured on the demo, 2-core CPU: benchmarks/bench_annotate.py)."""

    first_steps: int = 300
    update_steps: int = 100
    pixels_per_step: int = 512
    learning_rate: float = 3e-3
    validation_strokes: float = 0.25
    ood_keep: float = 0.95
    seed: int = 0


@dataclass
class LiveSample:
    """An image with strokes: its network input and (H, W) int32 target codes (every layer merged)."""

    sample_id: str
    prepared: Prepared
    codes: np.ndarray


@dataclass
class LiveResult:
    """What an update gives the page: the predictor, the held-out stroke score and the maps of the images the
    model was trained on (per sample id)."""

    predictor: Predictor
    held_out: dict[str, float]
    calibrated_on: str  # "held-out strokes" or "training strokes"
    steps: int
    seconds: float
    warm_start: bool
    predictions: dict[str, Prediction] = field(default_factory=dict)


class LiveModel:
    """The network carried from update to update (see module docstring)."""

    def __init__(self, tree: LabelTree, preprocessing: Preprocessing, bands: int, settings: LiveSettings) -> None:
        self.tree, self.preprocessing, self.bands, self.settings = tree, preprocessing, bands, settings
        self.model: AnySize | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.updates = 0

    def update(
        self, samples: list[LiveSample], should_stop: Callable[[], bool] = lambda: False,
        progress: Callable[[int, int], None] = lambda done, total: None,
    ) -> LiveResult:  # fmt: skip
        """Train on ``samples``' strokes (see module docstring); raises :class:`Cancelled` when ``should_stop``."""
        started = time.perf_counter()
        train, validation = self._split(samples)
        warm = self.model is not None
        steps = self.settings.update_steps if warm else self.settings.first_steps
        batches = self._batches(samples, train, steps)
        model = self._network(batches.spectra)
        self._train(model, batches, steps, should_stop, progress)
        self.updates += 1
        predictor, predictions, calibrated_on = self._predictor(model, samples, train, validation)
        held_out = _held_out_metrics(predictions, validation, self.tree)
        seconds = time.perf_counter() - started
        return LiveResult(predictor, held_out, calibrated_on, steps, seconds, warm, predictions)

    def _split(self, samples: list[LiveSample]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        train, validation = {}, {}
        for sample in samples:
            split = hold_out_strokes(sample.codes, self.settings.validation_strokes, self.settings.seed,
                                     sample.sample_id)  # fmt: skip
            train[sample.sample_id], validation[sample.sample_id] = split.train, split.validation
        return train, validation

    def _batches(self, samples: list[LiveSample], train: dict[str, np.ndarray], steps: int) -> PixelBatches:
        spectra, codes, owners = [], [], []
        for index, sample in enumerate(samples):
            drawn = train[sample.sample_id] != UNLABELLED
            spectra.append(sample.prepared.image.permute(1, 2, 0).numpy()[drawn])
            codes.append(train[sample.sample_id][drawn])
            owners.append(np.full(int(drawn.sum()), index))
        if not sum(c.size for c in codes):
            raise HsisegError("live model: no stroke to train on yet; draw at least one stroke")
        return PixelBatches.from_arrays(
            np.concatenate(spectra), np.concatenate(codes), np.concatenate(owners), [s.sample_id for s in samples],
            self.settings.pixels_per_step, steps, augmentation=Augmentation(flips=False, rotations=False),
            seed=self.settings.seed + self.updates,
        )  # fmt: skip

    def _network(self, spectra: np.ndarray) -> AnySize:
        """The previous network (warm start), or a new one with its input statistics from ``spectra``."""
        if self.model is None:
            torch.manual_seed(self.settings.seed)
            self.model = build_model(DEFAULT_MODEL, self.bands, self.tree.num_leaves)
            network_of(self.model).fit_input_statistics(torch.from_numpy(spectra))
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.settings.learning_rate,
                                               weight_decay=1e-4)  # fmt: skip
        return self.model

    def _train(self, model: nn.Module, batches: PixelBatches, steps: int, should_stop: Callable[[], bool],
               progress: Callable[[int, int], None]) -> None:  # fmt: skip
        assert self.optimizer is not None
        loss_fn = build_loss("ce", self.tree)
        peak = self.settings.learning_rate * (1.0 if self.updates == 0 else UPDATE_LR_SHARE)
        factor = warmup_cosine(steps, max(1, steps // 10))
        model.train()
        for step in range(steps):
            if should_stop():
                raise Cancelled
            batch = batches[step]
            for group in self.optimizer.param_groups:
                group["lr"] = peak * factor(step)
            self.optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(batch["image"][None]), batch["target"][None])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            self.optimizer.step()
            if step % 10 == 9 or step == steps - 1:
                progress(step + 1, steps)
        model.eval()

    def _predictor(self, model: AnySize, samples: list[LiveSample], train: dict[str, np.ndarray],
                   validation: dict[str, np.ndarray]) -> tuple[Predictor, dict[str, Prediction], str]:  # fmt: skip
        """A predictor with the default score fitted on the training strokes and its threshold calibrated on the
        held-out ones (the training strokes while there are none); the maps of ``samples`` it predicted."""
        scores = fit_scores([DEFAULT_SCORE], _training_outputs(model, samples, train), self.tree.num_leaves)
        placeholder = {name: _calibration(-1e30, self.settings.ood_keep, 1, 0.0) for name in scores}
        card = self._card(model, train, OodSettings(default=next(iter(scores), None), scores=placeholder))
        predictor = Predictor(model, card, scores=scores)
        maps = predictor.predict_many([sample.prepared for sample in samples])
        predictions = {sample.sample_id: prediction for sample, prediction in zip(samples, maps, strict=True)}
        if predictor.ood_score is None:
            return predictor, predictions, "no score"
        held = _values_at(predictions, validation)
        calibrated_on = "held-out strokes" if held.size else "training strokes"
        values = held if held.size else _values_at(predictions, train)
        keep = self.settings.ood_keep if held.size else TRAINING_KEEP
        threshold = float(np.quantile(values, 1 - keep)) if values.size else -1e30
        every = np.concatenate([p.score[~p.invalid] for p in predictions.values()])
        share = float((every < threshold).mean()) if every.size else 0.0
        calibration = _calibration(threshold, self.settings.ood_keep, int(values.size), share)
        card = card.model_copy(update={"ood": OodSettings(default=predictor.ood_score,
                                                          scores={predictor.ood_score: calibration})})  # fmt: skip
        predictor = Predictor(model, card, scores=scores)
        for prediction in predictions.values():
            prediction.unknown = (prediction.score < threshold) & ~prediction.invalid
        return predictor, predictions, calibrated_on

    def _card(self, model: AnySize, train: dict[str, np.ndarray], ood: OodSettings) -> ModelCard:
        drawn = np.unique(np.concatenate([codes[codes != UNLABELLED] for codes in train.values()]))
        network = NetworkConfig(name=DEFAULT_MODEL, in_channels=self.bands, classes=self.tree.num_leaves,
                                input_multiple=model.input_multiple)  # fmt: skip
        trained = [self.tree.leaves[c] for c in drawn if 0 <= c < self.tree.num_leaves]
        return ModelCard.create(self.tree, model=network, preprocessing=self.preprocessing, trained_classes=trained,
                                ood=ood)  # fmt: skip


def _calibration(threshold: float, keep: float, pixels: int, share: float) -> OodCalibration:
    return OodCalibration(threshold=threshold, keep=keep, method="held-out", held_out_pixels=max(1, pixels),
                          reference_share=share)  # fmt: skip


@torch.no_grad()
def _training_outputs(model: nn.Module, samples: list[LiveSample], train: dict[str, np.ndarray]):
    """Pixel outputs (logits, features, inputs, targets) at the training strokes, as a (1, B, 1, P) image."""
    spectra, codes = [], []
    for sample in samples:
        drawn = train[sample.sample_id] != UNLABELLED
        spectra.append(sample.prepared.image.permute(1, 2, 0)[torch.from_numpy(drawn)])
        codes.append(torch.from_numpy(train[sample.sample_id][drawn]))
    image = torch.cat(spectra).T[None, :, None, :]  # (1, B, 1, P)
    logits, features = network_outputs(model.eval(), image)
    outputs = pixel_outputs(logits[0], None if features is None else features[0], image[0])
    outputs.targets = torch.cat(codes).long()
    return outputs


def _values_at(predictions: dict[str, Prediction], targets: dict[str, np.ndarray]) -> np.ndarray:
    """The score map's values at the drawn pixels of ``targets`` (valid pixels only)."""
    parts = [p.score[(targets[k] != UNLABELLED) & ~p.invalid] for k, p in predictions.items()]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _held_out_metrics(
    predictions: dict[str, Prediction], validation: dict[str, np.ndarray], tree: LabelTree
) -> dict[str, float]:
    """Leaf accuracy and mean leaf Dice on the held-out strokes (NaN while none is held out)."""
    labels = np.concatenate([p.labels.ravel() for p in predictions.values()])
    targets = np.concatenate([validation[k].ravel() for k in predictions])
    return annotated_metrics(labels, targets, tree)
