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

The best (spectral candidate, context) pair by held-out mean Dice wins (:func:`choose`; ties go to the earlier
pair, the order below being the order of preference); it is refitted on every scribble, and every pair's score
goes into the model card (:class:`hsiseg.card.Selection`) and ``selection.json``. A context given explicitly
(``model_options`` with ``context`` or ``sigma``) is kept as given. A run without held-out pixels cannot
choose: it keeps the first pair and says so.

The winner's held-out score is the best of several and so slightly optimistic; the benchmarks
(``benchmarks/quality.py``) score the whole procedure on pixels neither training nor selection saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from hsiseg.card import CandidateScore, Selection
from hsiseg.checkpoint import load_model
from hsiseg.errors import HsisegError
from hsiseg.metrics import annotated_metrics
from hsiseg.models import build_model, unwrap
from hsiseg.ood.calibration import annotated_outputs

AUTO = "auto"


@dataclass(frozen=True)
class Candidate:
    """A named network configuration ``model="auto"`` trains."""

    name: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)


# Measured (README, "Segmentation quality"): an RBF spectral part (``{"spectral": "rbf"}``) lost to the MLP by
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


@torch.no_grad()
def score_contexts(
    candidate: Candidate, checkpoint: Any, validation, step: int, device: torch.device
) -> dict[str, CandidateScore]:
    """Held-out mean Dice of ``candidate``'s best ``checkpoint`` (a path stem) under every context
    (:func:`contexts`), on the annotated pixels of the full-image ``validation`` dataset."""
    trained, card = load_model(checkpoint, device)
    scores = {}
    for context, options in contexts(candidate.options):
        combined = {**candidate.options, **options}
        model = with_options(trained, card.model.name, card.model.in_channels, card.model.classes, combined)
        outputs = annotated_outputs(model.to(device), validation, device)
        metrics = annotated_metrics(outputs.logits.argmax(1).numpy(), outputs.targets.numpy(), card.tree)
        name = candidate.name if context == "as given" else f"{candidate.name}, {context}"
        scores[name] = CandidateScore(model=candidate.model, options=combined, mean_dice=metrics["mean_dice"],
                                      step=step)  # fmt: skip
    return scores


def with_options(trained, name: str, bands: int, classes: int, options: dict[str, Any]):
    """A network built with ``options`` carrying ``trained``'s weights (contexts without parameters only)."""
    model = build_model(name, bands, classes, **options)
    unwrap(model).load_state_dict(unwrap(trained).state_dict())
    return model.eval()


def choose(scores: dict[str, CandidateScore]) -> Selection:
    """The pair with the highest held-out mean Dice (NaN never wins; ties: the earlier one)."""
    if not scores:
        raise HsisegError("selection: no candidate was trained")
    ranked = [name for name in scores if not math.isnan(scores[name].mean_dice)] or list(scores)[:1]
    chosen = max(ranked, key=lambda name: -math.inf if math.isnan(scores[name].mean_dice) else scores[name].mean_dice)
    return Selection(chosen=chosen, candidates=scores)
