"""The model card: the one typed contract between training, checkpoints and prediction.

A checkpoint is ``NAME.safetensors`` (weights, plus the fitted unknown-tissue scores as ``ood.<score>.<tensor>``)
and ``NAME.json``, a :class:`ModelCard`: the network (name, options, band and class counts, input-size
multiple), the label tree and its hash (also in the safetensors metadata, so a card cannot be paired with
another run's weights unnoticed), the preprocessing with the wavelength grid the network expects, the
leaves that had training pixels, the held-out validation metrics, the calibrated unknown-tissue thresholds
of every score, the training arguments and the library versions.

Every field is validated when a card is read; a hand-edited or mismatched card gives one
:class:`~hsiseg.errors.HsisegError` naming the file and the field.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hsiseg.errors import HsisegError
from hsiseg.spectral import Preprocessing
from hsiseg.tree import LabelTree

CARD_FORMAT = 3  # 3: OodCalibration.transferred_from; 2 and 1 still load


def versions() -> dict[str, str]:
    """Versions of hsiseg and of the libraries that shape its numbers."""
    from hsiseg import __version__

    return {
        "hsiseg": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def tree_hash(tree: dict[str, Any]) -> str:
    """sha256 of the label tree's canonical JSON (sorted keys): names, order, weights, colours."""
    return hashlib.sha256(json.dumps(tree, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")  # NaN metrics stay NaN


class NetworkConfig(_Strict):
    """How to rebuild the network: ``build_model(name, in_channels, classes, **options)``."""

    name: str
    in_channels: int = Field(ge=1, description="spectral bands after preprocessing")
    classes: int = Field(ge=2, description="output channels = leaves of the label tree")
    options: dict[str, Any] = Field(default_factory=dict)
    input_multiple: int = Field(1, ge=1, description="inputs are padded to a multiple of this (AnySize)")


class OodCalibration(_Strict):
    """The threshold of one unknown-tissue score: pixels scoring below it are unknown.

    ``held-out``: the (1 - keep) quantile of the score on held-out annotated pixels (never training pixels).
    ``cross-fitted`` (input-space scores): the (1 - keep) quantile of out-of-fold values of every annotated
    pixel, each from the score fitted without its stroke's fold (:mod:`hsiseg.ood.cross_fitting`).
    ``transferred`` (a refit network, which trained on every annotated pixel): the threshold that flags the
    same share of a fixed sample of the training images' pixels as the validated network's threshold flagged
    (``reference_share``; :mod:`hsiseg.ood.calibration`).
    """

    options: dict[str, Any] = Field(default_factory=dict)
    threshold: float
    keep: float = Field(gt=0, le=1, description="share of held-out known pixels kept (not unknown)")
    method: Literal["held-out", "cross-fitted", "transferred"]
    transferred_from: Literal["held-out", "cross-fitted"] | None = Field(
        None, description="for a transferred threshold: how the validated network's was calibrated"
    )
    held_out_pixels: int = Field(ge=1)
    reference_share: float = Field(ge=0, le=1, description="share of the transfer sample below the threshold")
    reference_low: float | None = Field(
        None, description="the score's 5% quantile on the transfer sample (what 95% of training-image pixels exceed)"
    )

    @property
    def origin(self) -> str | None:
        """How the threshold was first calibrated (``held-out`` or ``cross-fitted``), through any transfer; None
        for a transfer recorded before hsiseg kept its origin."""
        return self.transferred_from if self.method == "transferred" else self.method


class OodSettings(_Strict):
    default: str | None = None
    scores: dict[str, OodCalibration] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_is_calibrated(self) -> OodSettings:
        if self.default is not None and self.default not in self.scores:
            raise ValueError(f"default score {self.default!r} has no calibration (calibrated: {sorted(self.scores)})")
        return self


class InputScaling(_Strict):
    """How the training cubes' stored values were mapped to reflectance by the reader (``value * scale +
    offset``, reader options of the data spec); prediction reads new cubes the same way unless told."""

    scale: float | None = None
    offset: float | None = None

    def reader_options(self) -> dict[str, float]:
        return {name: value for name, value in (("scale", self.scale), ("offset", self.offset)) if value is not None}


class Refit(_Strict):
    steps: int = Field(ge=1)
    annotated_pixels: int = Field(ge=0)


class TemperatureScaling(_Strict):
    """Probabilities are softmax(logits / temperature), fitted on held-out pixels.

    See :mod:`hsiseg.training.temperature`.
    """

    temperature: float = Field(gt=0)
    held_out_pixels: int = Field(ge=1)
    nll_before: float = Field(description="held-out negative log-likelihood at temperature 1")
    nll_after: float = Field(description="held-out negative log-likelihood at the fitted temperature")


class CandidateScore(_Strict):
    """One configuration :mod:`hsiseg.training.selection` tried: the network, and its best held-out score."""

    model: str
    options: dict[str, Any] = Field(default_factory=dict)
    mean_dice: float = Field(description="best mean Dice on the held-out annotated pixels")
    step: int = Field(ge=1, description="the step at which it was reached (the refit's budget if chosen)")
    beats_default: float | None = Field(
        None, description="share of bootstrap resamples of the held-out strokes in which it beats the first candidate"
    )


class Selection(_Strict):
    """Which candidate configuration ``model="auto"`` chose, and every candidate's held-out score."""

    chosen: str
    metric: str = "mean_dice"
    evidence: float = Field(0.99, description="beats_default a candidate needs to replace the first one")
    candidates: dict[str, CandidateScore]

    @model_validator(mode="after")
    def _chosen_is_a_candidate(self) -> Selection:
        if self.chosen not in self.candidates:
            raise ValueError(f"chosen {self.chosen!r} is not among the candidates {sorted(self.candidates)}")
        return self


class ModelCard(_Strict):
    """Everything about a trained network except its weights (see module docstring)."""

    format: int = CARD_FORMAT
    versions: dict[str, str] = Field(default_factory=versions)
    model: NetworkConfig
    label_tree: dict[str, Any]
    tree_hash: str
    trained_classes: list[str] = Field(description="leaves with annotated training pixels")
    preprocessing: Preprocessing
    input_scaling: InputScaling = Field(default_factory=InputScaling)
    training: dict[str, Any] = Field(default_factory=dict)
    round: int | None = None
    step: int | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    refit: Refit | None = None
    ood: OodSettings = Field(default_factory=OodSettings)
    selection: Selection | None = None
    probability_calibration: TemperatureScaling | None = None

    @property
    def temperature(self) -> float:
        """The temperature predictions divide logits by before the softmax (1 when none was fitted)."""
        return self.probability_calibration.temperature if self.probability_calibration else 1.0

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        if self.tree_hash != tree_hash(self.label_tree):
            raise ValueError("tree_hash does not match label_tree (the tree was edited after training)")
        leaves = self.tree.leaves
        if self.model.classes != len(leaves):
            raise ValueError(f"model.classes is {self.model.classes}, the label tree has {len(leaves)} leaves")
        unknown = sorted(set(self.trained_classes) - set(leaves))
        if unknown:
            raise ValueError(f"trained_classes names {unknown}, which are not leaves of the label tree")
        return self

    @cached_property
    def tree(self) -> LabelTree:
        return LabelTree.from_dict(self.label_tree, source="model card label_tree")

    @classmethod
    def create(cls, tree: LabelTree, **fields: Any) -> ModelCard:
        """A card for ``tree`` (its dict form and hash filled in)."""
        label_tree = tree.to_dict()
        return cls(label_tree=label_tree, tree_hash=tree_hash(label_tree), **fields)

    @classmethod
    def parse(cls, data: Any, source: str) -> ModelCard:
        """Validate a card's JSON data; any problem is one :class:`HsisegError` naming ``source`` and the field."""
        if not isinstance(data, dict) or "model" not in data or "label_tree" not in data:
            raise HsisegError(f"{source}: not an hsiseg model card (no 'model' or 'label_tree')")
        if isinstance(data.get("format"), int) and data["format"] > CARD_FORMAT:
            made_by = data.get("versions", {}).get("hsiseg", "a newer hsiseg")
            raise HsisegError(f"{source}: model card format {data['format']} was written by hsiseg {made_by}; "
                              "upgrade hsiseg")  # fmt: skip
        if data.get("format") == 1:
            data = _from_format_1(data)
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(map(str, first["loc"]))
            where = f"field {field!r}: " if field else ""  # a check across fields names them in its message
            message = first["msg"].removeprefix("Value error, ")
            raise HsisegError(f"{source}: {where}{message} (fix the card or retrain the model)") from None
        except HsisegError as error:  # the label tree itself is malformed
            raise HsisegError(f"{source}: field 'label_tree': {error}") from None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def _from_format_1(data: dict[str, Any]) -> dict[str, Any]:
    """hsiseg 0.1 cards: the tree hash and trained classes were not recorded; one threshold of one logit score
    (kept as that score's calibration)."""
    old: dict[str, Any] = data["ood"] if isinstance(data.get("ood"), dict) else {}
    data = {k: v for k, v in data.items() if k not in ("ood", "format")}
    if old.get("score") and old.get("threshold") is not None and old.get("calibration_pixels", 0) >= 1:
        calibration = {"threshold": old["threshold"], "keep": old.get("kept_fraction", 0.95), "method": "held-out",
                       "held_out_pixels": old["calibration_pixels"], "reference_share": 0.0}  # fmt: skip
        data["ood"] = {"default": old["score"], "scores": {old["score"]: calibration}}
    if isinstance(data.get("label_tree"), dict):
        data["tree_hash"] = tree_hash(data["label_tree"])
        with contextlib.suppress(HsisegError):  # a malformed tree is reported by the validation
            data.setdefault("trained_classes", LabelTree.from_dict(data["label_tree"]).leaves)
    return {**data, "format": CARD_FORMAT}
