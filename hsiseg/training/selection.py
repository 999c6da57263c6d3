"""The self-configuring default: ``model="auto"`` chooses, per data set, how the network is configured by its
score on held-out pixels (nnU-Net's idea, applied to sparse spectra).

Two kinds of choice, both scored on the held-out annotated pixels any run validates on (held-out strokes of
the training images, ``validation_strokes``, or the validation split; never pixels a candidate trains on):

- **spectral candidates** (:data:`SPECTRAL_CANDIDATES`): each trains as a run of its own
  (``RUN/candidates/<name>/``, same data, seed and budget, refit off) and keeps its best round;
- **spatial context** (:data:`CONTEXTS`): how much edge-aware averaging the scene supports (none, or the
  guided average over ``sigma`` = 1.5, 3 or 5 pixels). The context has no parameters and the spectral part
  trains pixel by pixel, so every context is scored with the same trained weights: this choice costs one
  prediction of the held-out images per context, no training.

The first pair (the MLP with the guided context over 3 pixels: the measured default) is kept unless another
pair beats it *with evidence*: held-out strokes are few (often one or two per class), so a difference of a
few pixels is noise. Each pair's held-out mean Dice is recomputed on 1000 bootstrap resamples of the held-out
strokes (whole strokes, paired across pairs: :func:`beats_default`); a pair may replace the first only if it
beats it in at least ``EVIDENCE`` = 99% of them, and among those the highest mean Dice wins (:func:`choose`).
Measured: on Indian Pines at 3% (seed 0) the held-out strokes ranked "no context" first by 0.07 Dice, winning
92% of the resamples, while the dense truth ranked it last by 0.2; strokes of one field are alike, so the
bootstrap over strokes is itself optimistic, hence the strict 99%. The winner is refitted on every scribble, and every
pair's score and bootstrap share go into the model card (:class:`hsiseg.models.card.Selection`) and
``selection.json``. A context given explicitly (``model_options`` with ``context`` or ``sigma``) is kept as
given. A run without held-out pixels cannot choose: it keeps the first pair and says so.

The winner's held-out score is the best of several and so slightly optimistic; the benchmarks
(``benchmarks/quality.py``) score the whole procedure on pixels neither training nor selection saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from hsiseg.annotations import UNLABELLED
from hsiseg.dataset.strokes import EIGHT_CONNECTED
from hsiseg.errors import HsisegError
from hsiseg.evaluation.metrics import annotated_metrics
from hsiseg.models import build_model, unwrap
from hsiseg.models.card import CandidateScore, Selection
from hsiseg.models.checkpoint import load_model
from hsiseg.ood.calibration import annotated_outputs

AUTO = "auto"


@dataclass(frozen=True)
class Candidate:
    """A named network configuration ``model="auto"`` trains."""

    name: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)


# Measured (docs/quality.md): an RBF spectral part (``{"spectral": "rbf"}``) lost to the MLP by
# 0.02-0.3 leaf Dice on every data set, so the default trains the MLP alone; add candidates here.
SPECTRAL_CANDIDATES: tuple[Candidate, ...] = (Candidate("mlp", "spectral-spatial"),)
CONTEXTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("guided 3", {"context": "guided", "sigma": 3.0}),
    ("guided 1.5", {"context": "guided", "sigma": 1.5}),
    ("guided 5", {"context": "guided", "sigma": 5.0}),
    ("none", {"context": "none"}),
)


def candidates(model_options: dict[str, Any]) -> tuple[Candidate, ...]:
    """The spectral candidates, each with ``model_options`` (options every candidate accepts) added."""
    return tuple(Candidate(c.name, c.model, {**c.options, **model_options}) for c in SPECTRAL_CANDIDATES)


def contexts(model_options: dict[str, Any]) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The contexts to score: :data:`CONTEXTS`, or only the one ``model_options`` asks for."""
    if {"context", "sigma", "tau"} & set(model_options):
        return (("as given", {}),)
    return CONTEXTS


@dataclass
class HeldOut:
    """Predictions of every pair at the held-out annotated pixels, for the stroke bootstrap."""

    targets: np.ndarray  # (P,) target codes
    strokes: np.ndarray  # (P,) stroke index of each pixel (8-connected components per image and class)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # pair -> (P,) predicted leaf codes


@torch.no_grad()
def score_contexts(
    candidate: Candidate, checkpoint: Any, validation, step: int, device: torch.device, held_out: HeldOut
) -> dict[str, CandidateScore]:
    """Held-out mean Dice of ``candidate``'s best ``checkpoint`` (a path stem) under every context
    (:func:`contexts`), on the annotated pixels of the full-image ``validation`` dataset; each pair's
    predictions are added to ``held_out``."""
    trained, card = load_model(checkpoint, device)
    scores = {}
    for context, options in contexts(candidate.options):
        combined = {**candidate.options, **options}
        model = with_options(trained, card.model.name, card.model.in_channels, card.model.classes, combined)
        outputs = annotated_outputs(model.to(device), validation, device)
        predicted = outputs.logits.argmax(1).numpy()
        metrics = annotated_metrics(predicted, outputs.labels.numpy(), card.tree)
        name = candidate.name if context == "as given" else f"{candidate.name}, {context}"
        held_out.predictions[name] = predicted
        scores[name] = CandidateScore(model=candidate.model, options=combined, mean_dice=metrics["mean_dice"],
                                      step=step)  # fmt: skip
    return scores


def held_out_strokes(validation) -> HeldOut:
    """Targets and stroke indices of the annotated pixels of a full-image ``validation`` dataset, in the order
    :func:`hsiseg.ood.calibration.annotated_outputs` visits them (images in order, pixels row by row)."""
    targets, strokes, offset, seen = [], [], 0, set()
    for index, sample_id in enumerate(validation.sample_ids):
        if sample_id in seen:
            continue
        seen.add(sample_id)
        target = np.asarray(validation.sample(index).target)
        labelled = np.zeros(target.shape, dtype=np.int64)
        for code in np.unique(target[target != UNLABELLED]):
            components, count = ndimage.label(target == code, structure=EIGHT_CONNECTED)
            labelled[components > 0] = components[components > 0] + offset
            offset += count
        keep = target.ravel() != UNLABELLED
        targets.append(target.ravel()[keep])
        strokes.append(labelled.ravel()[keep] - 1)
    joined = (np.concatenate(targets), np.concatenate(strokes)) if targets else (np.zeros(0, int), np.zeros(0, int))
    return HeldOut(*joined)


def beats_default(held_out: HeldOut, num_leaves: int, resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Per pair: the share of ``resamples`` bootstrap resamples of the held-out strokes (drawn with replacement,
    the same resamples for every pair) in which its mean Dice over the leaf classes present exceeds the first
    pair's. Partial labels are left out."""
    names = list(held_out.predictions)
    leaf = held_out.targets < num_leaves
    strokes = held_out.strokes[leaf]
    if not names or not leaf.any():
        return dict.fromkeys(names, 0.0)
    count = int(strokes.max()) + 1
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(count, np.full(count, 1 / count), size=resamples)  # (R, S) stroke multiplicities
    dice = {}
    for name in names:
        per_stroke = np.zeros((count, num_leaves, num_leaves))  # confusion of each stroke (predicted, target)
        np.add.at(per_stroke, (strokes, held_out.predictions[name][leaf], held_out.targets[leaf]), 1)
        confusion = np.tensordot(weights, per_stroke, axes=1)  # (R, C, C)
        true_positive = np.diagonal(confusion, axis1=1, axis2=2)
        predicted, wanted = confusion.sum(2), confusion.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.where(wanted > 0, 2 * true_positive / (predicted + wanted), np.nan)
        dice[name] = np.nanmean(np.where(wanted > 0, per_class, np.nan), axis=1)
    first = dice[names[0]]
    return {name: float(np.mean(dice[name] > first)) for name in names}


def with_options(trained, name: str, bands: int, classes: int, options: dict[str, Any]):
    """A network built with ``options`` carrying ``trained``'s weights (contexts without parameters only)."""
    model = build_model(name, bands, classes, **options)
    unwrap(model).load_state_dict(unwrap(trained).state_dict())
    return model.eval()


EVIDENCE = 0.99  # share of stroke resamples a pair must win against the first to replace it


def choose(scores: dict[str, CandidateScore], evidence: float = EVIDENCE) -> Selection:
    """The first pair, unless others beat it in at least ``evidence`` of the stroke resamples (``beats_default``);
    then the one of those with the highest held-out mean Dice. NaN never wins."""
    if not scores:
        raise HsisegError("selection: no candidate was trained")
    first = next(iter(scores))
    convincing = [name for name, score in scores.items() if name != first and not math.isnan(score.mean_dice)
                  and (score.beats_default or 0.0) >= evidence]  # fmt: skip
    chosen = max(convincing, key=lambda name: scores[name].mean_dice) if convincing else first
    return Selection(chosen=chosen, evidence=evidence, candidates=scores)
