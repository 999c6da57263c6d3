"""The training configuration: every setting of a run, saved as ``args.json``, checked before any data is read."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hsiseg.devices import resolve_device
from hsiseg.errors import HsisegError
from hsiseg.losses import check_loss
from hsiseg.models import DEFAULT_MODEL, check_model
from hsiseg.ood import DEFAULT_SCORES, OOD_SCORES
from hsiseg.option_checks import in_range, whole_number
from hsiseg.training.selection import AUTO
from hsiseg.training.unknown_tissue import CALIBRATIONS, unknown_tissue_choice

MAX_CLASS_BALANCE = 10.0  # count ** -10: a class with 2x the pixels is drawn 1000x less often; beyond is noise


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``args.json``). The defaults are the best measured
    configuration for small data on a CPU (docs/quality.md)."""

    loss: str = "ce"
    loss_options: dict[str, Any] = field(default_factory=dict)
    model: str = AUTO  # choose among hsiseg.training.selection's candidates on held-out strokes; or a model name
    model_options: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    validate_every: int = 100
    batch_size: int = 8  # crops per step (networks trained on crops)
    patch_size: int = 64
    pixels_per_step: int = 512  # annotated pixels per step (networks trained pixel by pixel)
    class_balance: float = 1.0
    validation_strokes: float = 0.25  # share of each class's strokes held out when train and val share images
    refit: bool = True  # after validating, train the final model on every annotated pixel (train + val)
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05  # share of the steps spent warming up
    grad_clip: float = 1.0
    fold: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    amp_dtype: str = "auto"  # auto: bfloat16 (else float16) on CUDA, off on a CPU; or bfloat16 / float16 anywhere
    channels_last: bool = True
    compile: bool = False
    workers: int = 0
    ood_scores: list[str] = field(default_factory=lambda: list(DEFAULT_SCORES))  # fitted and calibrated
    ood_score: str = AUTO  # the card's default unknown-tissue score; auto: hsiseg.training.unknown_tissue
    ood_keep: float = 0.95  # share of held-out known pixels each threshold keeps
    ood_calibration: str = AUTO  # held-out, or cross-fitted: input-space scores, out-of-fold values; or auto

    def check(self) -> None:
        """Raise :class:`HsisegError` naming the first parameter out of range or the first unknown name or
        option (loss, model, unknown-tissue score), with the closest valid one; reads no data."""
        positive = ("steps", "validate_every", "batch_size", "patch_size", "pixels_per_step", "learning_rate")
        for name in positive:
            if not getattr(self, name) > 0:  # (NaN too)
                raise HsisegError(f"training: {name} must be > 0, got {getattr(self, name)}")
        self._check_numbers()
        device = resolve_device(self.device)
        if self.amp_dtype not in ("auto", "bfloat16", "float16"):
            raise HsisegError(f"training: amp_dtype must be auto, bfloat16 or float16, got {self.amp_dtype!r}")
        if self.compile and device.type != "cuda":
            raise HsisegError("training: compile runs on CUDA only (on a 2-core CPU, compiling the default network "
                              "did not finish in 5 minutes); drop it on this device")  # fmt: skip
        check_loss(self.loss, self.loss_options)
        check_model(DEFAULT_MODEL if self.model == AUTO else self.model, self.model_options)  # auto: its candidates'
        if not self.ood_scores:
            raise HsisegError("training: ood_scores must name at least one unknown-tissue score")
        for name in self.ood_scores:
            OOD_SCORES.check(name, parameter="ood_scores entry")
        if self.ood_calibration not in (AUTO, *CALIBRATIONS):
            raise HsisegError(
                f"training: ood_calibration must be auto, held-out or cross-fitted, got {self.ood_calibration!r}"
            )
        if self.ood_score != AUTO and self.ood_score not in self.ood_scores:
            raise HsisegError(f"training: ood_score {self.ood_score!r} is not among ood_scores {self.ood_scores}")

    def unknown_tissue(self, strokes_held_out: bool) -> tuple[str, str]:
        """(default score, calibration) of this run, ``auto`` resolved by where its held-out pixels come from
        (``strokes_held_out``: strokes of the training images; :mod:`hsiseg.training.unknown_tissue`)."""
        return unknown_tissue_choice(self.ood_score, self.ood_calibration, self.ood_scores, strokes_held_out)

    def _check_numbers(self) -> None:
        for name in ("steps", "validate_every", "batch_size", "patch_size", "pixels_per_step"):
            whole_number(getattr(self, name), f"training: {name}", 1)
        in_range(self.learning_rate, "training: learning_rate", 0, low_open=True)
        in_range(self.validation_strokes, "training: validation_strokes", 0, 1, low_open=True, high_open=True)
        in_range(self.class_balance, "training: class_balance", 0, MAX_CLASS_BALANCE)
        in_range(self.warmup, "training: warmup", 0, 1, high_open=True)
        in_range(self.ood_keep, "training: ood_keep", 0, 1, low_open=True)
        in_range(self.weight_decay, "training: weight_decay", 0)
        in_range(self.grad_clip, "training: grad_clip", 0)  # 0: no clipping
        whole_number(self.seed, "training: seed", 0, 2**32 - 1)  # what numpy's generators accept
        whole_number(self.fold, "training: fold", 0)
        whole_number(self.workers, "training: workers", 0)

    @property
    def rounds(self) -> int:
        return math.ceil(self.steps / self.validate_every)

    def steps_in_round(self, round_index: int) -> int:
        return min(self.validate_every, self.steps - round_index * self.validate_every)
