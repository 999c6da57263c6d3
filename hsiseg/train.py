"""Training a segmentation network on a data-spec split with any hsiseg loss (background-free: the loss sees
annotated pixels only).

``train(spec, run_dir, TrainConfig(...))`` runs a budget of ``steps`` optimiser steps, validating and
checkpointing every ``validate_every`` steps (a *round*), and writes into ``run_dir``:

- ``spec.yaml`` (a copy of the data spec) and ``args.json`` (the full configuration);
- ``metrics.csv`` (one row per round) and ``curves.png``;
- ``validation_strokes.json`` and ``validation_strokes/<sample>.png`` when the training and validation splits
  share images: the scribble strokes held out for validation (:mod:`hsiseg.strokes`);
- ``checkpoints/best.{json,safetensors}`` (best validation mean Dice, held-out pixels only; after the last
  round its unknown-tissue scores are fitted on the training pixels and calibrated on the held-out ones,
  :func:`calibrate_best`, :mod:`hsiseg.ood.calibration`) and
  ``checkpoints/last/`` (the last round's ``model.*`` with its training state for ``resume=True``:
  optimizer, scheduler, round, RNG; saved as one unit with a manifest, see :mod:`hsiseg.checkpoint`);
- ``checkpoints/final.*`` (``refit``, when there were validation pixels): a fresh network trained on *all*
  scribbles of the training and validation images for the best validated number of steps (annotations are
  scarce: at 3% scribbles on Indian Pines, training without the held-out strokes costs ~0.1 leaf Dice; on
  the demo, the third surgery's scribbles raise dense leaf accuracy from 0.970 to 0.985). Its card carries
  the held-out validation metrics; its unknown-tissue scores are refitted on all scribbles and their
  thresholds transferred from the validated network (:func:`hsiseg.ood.calibration.transfer`).
  :func:`final_checkpoint` names the checkpoint to predict with.

What a step sees: networks that see one pixel at a time while training (``pixel``, ``spectral-spatial``,
see :func:`hsiseg.models.pixelwise_training`) get ``pixels_per_step`` annotated pixels
(:class:`~hsiseg.pixel_batches.PixelBatches`); others get ``batch_size`` crops of ``patch_size`` centred on
annotated pixels. Both draw annotated pixels with class-balanced weights (``class_balance``) and augment
spectrally (crops also geometrically).

GPU path: CUDA when available (``device="auto"``), automatic mixed precision (bfloat16 where supported,
else float16 with a gradient scaler), channels-last, pinned memory and non-blocking copies, optional
``torch.compile``. Multi-GPU/multi-node: launch the same command with ``torchrun``; DDP is set up from the
environment (NCCL on CUDA, gloo on CPU), each rank runs every step on its own share of the data, rank 0
validates and writes. AdamW with linear warm-up and cosine decay, gradient clipping, seeded everything.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from hsiseg.annotations import UNLABELLED
from hsiseg.annotations.writers import write_label_image
from hsiseg.card import CandidateScore, InputScaling, ModelCard, NetworkConfig, OodSettings, Refit, Selection
from hsiseg.checkpoint import (
    check_resume_point,
    load_model,
    load_training_state,
    read_card,
    save_model,
    save_resume_point,
)
from hsiseg.data import Augmentation, SpecDataset
from hsiseg.errors import HsisegError
from hsiseg.io.atomic import atomic_path, check_output_folder
from hsiseg.losses import build_loss
from hsiseg.metrics import annotated_metrics
from hsiseg.models import build_model, pixelwise_training, unwrap
from hsiseg.ood import DEFAULT_SCORE, DEFAULT_SCORES, OodScore, build_score
from hsiseg.ood.calibration import (
    annotated,
    annotated_outputs,
    calibrate,
    fit_scores,
    map_values,
    reference_sample,
    transfer,
)
from hsiseg.pixel_batches import PixelBatches
from hsiseg.selection import (
    AUTO,
    beats_default,
    candidates,
    choose,
    held_out_strokes,
    score_contexts,
    with_options,
)
from hsiseg.spec import DataSpec
from hsiseg.spectral import Preprocessing
from hsiseg.strokes import Stroke, hold_out_strokes
from hsiseg.temperature import fit_temperature


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``args.json``). The defaults are the best measured
    configuration for small data on a CPU (README, "Segmentation quality")."""

    loss: str = "ce"
    loss_options: dict[str, Any] = field(default_factory=dict)
    model: str = AUTO  # choose among hsiseg.selection's candidates on held-out strokes; or a model name
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
    channels_last: bool = True
    compile: bool = False
    workers: int = 0
    ood_scores: list[str] = field(default_factory=lambda: list(DEFAULT_SCORES))  # fitted and calibrated
    ood_score: str = DEFAULT_SCORE  # the card's default unknown-tissue score
    ood_keep: float = 0.95  # share of held-out known pixels each threshold keeps

    def check(self) -> None:
        """Raise :class:`HsisegError` naming the first parameter out of range."""
        positive = ("steps", "validate_every", "batch_size", "patch_size", "pixels_per_step", "learning_rate")
        for name in positive:
            if not getattr(self, name) > 0:
                raise HsisegError(f"training: {name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.validation_strokes < 1:
            raise HsisegError(f"training: validation_strokes must be in (0, 1), got {self.validation_strokes}")
        if self.class_balance < 0 or not 0 <= self.warmup < 1 or not 0 < self.ood_keep <= 1:
            raise HsisegError("training: need class_balance >= 0, 0 <= warmup < 1 and 0 < ood_keep <= 1")
        for name in self.ood_scores:
            build_score(name)
        if self.ood_score not in self.ood_scores:
            raise HsisegError(f"training: ood_score {self.ood_score!r} is not among ood_scores {self.ood_scores}")

    @property
    def rounds(self) -> int:
        return math.ceil(self.steps / self.validate_every)

    def steps_in_round(self, round_index: int) -> int:
        return min(self.validate_every, self.steps - round_index * self.validate_every)


class Reporter(Protocol):
    """Where training progress goes (the CLI shows a rich display, JSON lines, or nothing)."""

    def start(self, total_steps: int, first_step: int) -> None: ...
    def step(self, step: int, loss: float, items_per_second: float) -> None: ...
    def round_end(self, row: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...


class SilentReporter:
    def start(self, total_steps: int, first_step: int) -> None:
        pass

    def step(self, step: int, loss: float, items_per_second: float) -> None:
        pass

    def round_end(self, row: dict[str, Any]) -> None:
        pass

    def message(self, text: str) -> None:
        pass


@dataclass
class TrainingData:
    """What training reads: the stream of steps, the training split itself, its whole images with the training
    targets (to fit the unknown-tissue scores), the validation images (None for the refit, which validates
    nothing), and the strokes held out of training for validation (per sample id; empty when the splits share
    no image)."""

    steps: Dataset
    train_set: SpecDataset
    train_images: SpecDataset
    validation: SpecDataset | None
    held_out: dict[str, list[Stroke]]

    def validation_pixels(self) -> int:
        """Annotated pixels in the validation images."""
        return annotated_pixels(self.validation) if self.validation is not None else 0


def annotated_pixels(dataset: SpecDataset) -> int:
    """Annotated pixels of every sample of ``dataset``."""
    return sum(int((dataset.sample(i).target != UNLABELLED).sum()) for i in range(len(dataset.sample_ids)))


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_kind: str) -> Distributed:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HsisegError(f"device {name!r}: CUDA is not available on this machine; use device 'cpu' or 'auto'")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds the global state third-party code draws from
    torch.manual_seed(seed)


def warmup_cosine(total_steps: int, warmup_steps: int):
    """Learning-rate factor: linear warm-up to 1, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def train(
    spec_path: str | Path,
    run_dir: str | Path,
    config: TrainConfig | None = None,
    resume: bool = False,
    reporter: Reporter | None = None,
) -> nn.Module:
    """Train (or resume) a run; returns the trained network (unwrapped from DDP). ``model="auto"`` (the
    default) trains every candidate of :mod:`hsiseg.selection` and keeps the best on held-out strokes."""
    run_dir = check_output_folder(run_dir)
    reporter = reporter or SilentReporter()
    if _selects(run_dir, config, resume):
        return train_selected(spec_path, run_dir, config, resume, reporter)
    config, resume_from = _resolve_config(run_dir, config, resume)
    config.check()
    device = resolve_device(config.device)
    world = setup_distributed(device.type)
    if world.world_size > 1 and device.type == "cuda":
        device = torch.device(f"cuda:{world.local_rank}")
        torch.cuda.set_device(device)
    seed_everything(config.seed)

    spec = DataSpec.from_file(spec_path)
    tree = spec.tree
    preprocessing = _network_preprocessing(spec, config.fold)
    data = build_training_data(spec, config, preprocessing, world.world_size)
    model = _build_network(config, data.train_set.num_bands, tree.num_leaves, resume_from)
    if pixelwise_training(model):
        data.steps = pixel_steps(data.train_set, config, world.world_size)
        if not resume:
            fit_input_statistics(model, data.steps)
    validation_pixels = data.validation_pixels()
    if not validation_pixels:
        reporter.message(
            "no annotated validation pixel: the best checkpoint is the last one and no unknown-tissue threshold "
            "is calibrated (annotate more strokes, or give the spec a validation split)"
        )
    checkpoints = run_dir / "checkpoints"
    first_round, best, history = 0, {"dice": -1.0, "step": config.steps}, []
    step = TrainingStep.create(model, data, config, device, world)
    if resume_from is not None:
        for stale in checkpoints.glob("final.*"):  # a refit of the shorter run; the new one replaces it
            stale.unlink()
        state = load_training_state(resume_from, step.optimizer, step.scheduler)
        first_round, best = state["round"] + 1, state["best"]
        history = _read_history(run_dir / "metrics.csv")[:first_round]
    elif world.main:
        _prepare_run_dir(run_dir, Path(spec_path), config)
        write_held_out_strokes(run_dir, data, tree, config)
    card_base = _card_base(config, spec, preprocessing, model, data.train_images)
    reporter.start(config.steps, first_round * config.validate_every)
    for round_index in range(first_round, config.rounds):
        started = time.perf_counter()
        train_loss = step.run_round(round_index, reporter)
        seconds = time.perf_counter() - started
        if world.main:
            validation = annotated_outputs(model, data.validation, device, step.autocast_dtype)
            metrics = annotated_metrics(validation.logits.argmax(1).numpy(), validation.targets.numpy(), tree)
            done = round_index * config.validate_every + config.steps_in_round(round_index)
            row = {"round": round_index, "step": done, "train_loss": train_loss, **metrics,
                   "lr": step.scheduler.get_last_lr()[0], "seconds": seconds}  # fmt: skip
            history.append(row)
            improved = not math.isnan(metrics["mean_dice"]) and metrics["mean_dice"] > best["dice"]
            if improved:
                best = {"dice": metrics["mean_dice"], "step": done}
            card = card_base.model_copy(update={"round": round_index, "step": done, "metrics": metrics})
            checkpoints.mkdir(parents=True, exist_ok=True)
            if improved or not (checkpoints / "best.json").is_file():
                save_model(checkpoints / "best", model, card)  # its OOD calibration follows after the last round
            save_resume_point(checkpoints / "last", model, card, step.optimizer, step.scheduler,
                              {"round": round_index, "best": best})  # fmt: skip
            _write_history(run_dir, history, plot=round_index % PLOT_EVERY == 0 or round_index == config.rounds - 1)
            reporter.round_end(row)
        if world.world_size > 1:
            dist.barrier()
    if world.main:
        calibrated = calibrate_best(checkpoints, data, config, device).ood
        if calibrated.scores:
            pixels = next(iter(calibrated.scores.values())).held_out_pixels
            reporter.message(f"unknown tissue: {len(calibrated.scores)} scores calibrated on {pixels} held-out "
                             f"pixels (keep {config.ood_keep:.0%}); default {calibrated.default}")  # fmt: skip
    if world.world_size > 1:  # every rank refits for the budget rank 0 validated
        shared = [best]
        dist.broadcast_object_list(shared, src=0)
        best = shared[0]
    if config.refit and validation_pixels:
        model = refit(spec, config, preprocessing, int(best["step"]), device, world, checkpoints, reporter)
    if world.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
    return model


def _selects(run_dir: Path, config: TrainConfig | None, resume: bool) -> bool:
    """Whether this run chooses among candidates (``model="auto"``, asked for or stored in the resumed run)."""
    saved = run_dir / "args.json"
    if resume and saved.is_file():
        return json.loads(saved.read_text()).get("config", {}).get("model") == AUTO
    return (config or TrainConfig()).model == AUTO


def train_selected(
    spec_path: str | Path, run_dir: Path, config: TrainConfig | None, resume: bool, reporter: Reporter
) -> nn.Module:
    """``model="auto"``: train every spectral candidate into ``run_dir/candidates/<name>`` (refit off), score it
    under every context on the held-out pixels, keep the best pair (:mod:`hsiseg.selection`) as
    ``run_dir/checkpoints/best.*`` (recalibrated under its context, the selection in its card) and refit it on
    every scribble (``final.*``)."""
    if resume:
        config = _resume_selection(run_dir, config)
    else:
        if (run_dir / "candidates").exists() or (run_dir / "checkpoints").exists():
            raise HsisegError(f"{run_dir} holds a training run; resume it or choose another folder")
        config = config or TrainConfig()
        config.check()
        _prepare_run_dir(run_dir, Path(spec_path), config)
    spec = DataSpec.from_file(spec_path)
    device = resolve_device(config.device)
    preprocessing = _network_preprocessing(spec, config.fold)
    data = build_training_data(spec, config, preprocessing)
    scores: dict[str, CandidateScore] = {}
    held_out = held_out_strokes(data.validation)
    for candidate in candidates(config.model_options):
        folder = run_dir / "candidates" / candidate.name
        reporter.message(f"candidate {candidate.name}: {candidate.model} {candidate.options}")
        # a candidate calibrates only the default score: the chosen one is recalibrated with all of them
        fixed = replace(config, model=candidate.model, model_options=candidate.options, refit=False,
                        ood_scores=[config.ood_score])  # fmt: skip
        again = resume and (folder / "checkpoints" / "last").exists()
        train(spec_path, folder, fixed, resume=again, reporter=reporter)
        best = folder / "checkpoints" / "best"
        step = read_card(best.with_suffix(".json")).step or config.steps
        scores |= score_contexts(candidate, best, data.validation, step, device, held_out)
    shares = beats_default(held_out, spec.tree.num_leaves, seed=config.seed)
    scores = {name: score.model_copy(update={"beats_default": shares[name]}) for name, score in scores.items()}
    selection = choose(scores)
    shown = ", ".join(f"{name} {s.mean_dice:.3f} ({s.beats_default:.0%})" for name, s in scores.items())
    reporter.message(f"selection (held-out mean Dice, share of stroke resamples beating the first): {shown}; "
                     f"chosen: {selection.chosen}")  # fmt: skip
    winner = selection.candidates[selection.chosen]
    spectral = next(c.name for c in candidates(config.model_options) if selection.chosen.startswith(c.name))
    model = _adopt(run_dir, run_dir / "candidates" / spectral, selection, data, config, device)
    if config.refit and not math.isnan(winner.mean_dice):
        chosen_config = replace(config, model=winner.model, model_options=winner.options)
        model = refit(spec, chosen_config, preprocessing, winner.step, device, Distributed(), run_dir / "checkpoints",
                      reporter)  # fmt: skip
    elif math.isnan(winner.mean_dice):
        reporter.message(f"no held-out pixel to choose on: kept the first candidate, {selection.chosen}")
    return model


def _resume_selection(run_dir: Path, config: TrainConfig | None) -> TrainConfig:
    """The stored configuration of a selecting run (a longer ``steps`` may be asked for)."""
    stored = TrainConfig(**json.loads((run_dir / "args.json").read_text())["config"])
    if config is not None and config.steps != stored.steps:
        stored.steps = config.steps
        _write_args(run_dir, json.loads((run_dir / "args.json").read_text())["spec"], stored)
    for stale in (run_dir / "checkpoints").glob("*.*"):  # chosen again from the resumed candidates
        stale.unlink()
    return stored


def _adopt(
    run_dir: Path, chosen: Path, selection: Selection, data: TrainingData, config: TrainConfig, device: torch.device
) -> nn.Module:
    """The chosen candidate's best network under the chosen context, its unknown-tissue scores recalibrated under
    that context, saved as ``run_dir/checkpoints/best.*`` with ``selection`` in its card; its metrics, curves and
    held-out strokes copied into ``run_dir``, and ``selection.json`` written."""
    for name in ("metrics.csv", "curves.png", "validation_strokes.json"):
        if (chosen / name).is_file():
            shutil.copyfile(chosen / name, run_dir / name)
    if (chosen / "validation_strokes").is_dir():
        shutil.copytree(chosen / "validation_strokes", run_dir / "validation_strokes", dirs_exist_ok=True)
    trained, card = load_model(chosen / "checkpoints" / "best", device)
    winner = selection.candidates[selection.chosen]
    network = card.model
    model = with_options(trained, network.name, network.in_channels, network.classes, winner.options).to(device)
    validation = annotated_outputs(model, data.validation, device)
    metrics = annotated_metrics(validation.logits.argmax(1).numpy(), validation.targets.numpy(), card.tree)
    card = card.model_copy(update={
        "model": network.model_copy(update={"options": winner.options}),
        "metrics": metrics,
        "training": {**card.training, "model": AUTO, "model_options": config.model_options},
        "selection": selection,
    })  # fmt: skip
    card, scores = _with_ood(card, model, data, config, device, None)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_model(run_dir / "checkpoints" / "best", model, card, scores)
    with atomic_path(run_dir / "selection.json") as temporary:
        temporary.write_text(selection.model_dump_json(indent=2))
    return model


def refit(
    spec: DataSpec,
    config: TrainConfig,
    preprocessing: Preprocessing,
    steps: int,
    device: torch.device,
    world: Distributed,
    checkpoints: Path,
    reporter: Reporter,
) -> nn.Module:
    """Train a fresh network on *all* scribbles (of the training and validation images, held-out strokes
    included) for the best validated number of ``steps``, with the same seed; saved as ``checkpoints/final.*``
    with the best checkpoint's card (validation metrics and unknown-tissue threshold come from the held-out
    pixels, as they must)."""
    seed_everything(config.seed)
    refit_config = replace(config, steps=steps, validate_every=steps)
    data = build_training_data(spec, refit_config, preprocessing, world.world_size, final=True)
    model = build_model(config.model, data.train_set.num_bands, spec.tree.num_leaves, **config.model_options)
    if pixelwise_training(model):
        data.steps = pixel_steps(data.train_set, refit_config, world.world_size)
        fit_input_statistics(model, data.steps)
    reporter.message(f"refit on all annotated pixels for {steps} steps (the best validated budget)")
    reporter.start(steps, 0)
    TrainingStep.create(model, data, refit_config, device, world).run_round(0, reporter)
    if world.main:
        best = read_card(checkpoints / "best.json")
        training = annotated_outputs(model, data.train_images, device)
        scores = fit_scores(list(best.ood.scores), training, spec.tree.num_leaves)
        calibrations = transfer(best.ood.scores, map_values(model, scores, [data.train_images], reference_sample,
                                                            device))  # fmt: skip
        card = best.model_copy(update={
            "refit": Refit(steps=steps, annotated_pixels=int(training.targets.numel())),
            "trained_classes": _trained_classes([training.targets.numpy()], spec.tree),
            "ood": OodSettings(default=_default_score(config, calibrations), scores=calibrations),
        })  # fmt: skip
        save_model(checkpoints / "final", model, ModelCard.model_validate(card.model_dump()), scores)
    return model


def final_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint of a run to predict with: ``final.json`` (refit on all scribbles) when there is one, else
    ``best.json`` (best held-out mean Dice)."""
    checkpoints = Path(run_dir) / "checkpoints"
    final = checkpoints / "final.json"
    return final if final.is_file() else checkpoints / "best.json"


def _network_preprocessing(spec: DataSpec, fold: int) -> Preprocessing:
    """The spec's preprocessing with statistics fitted on the training split and the wavelength grid the
    network will expect from every future cube."""
    preprocessing = spec.fitted_preprocessing(fold)
    if preprocessing.wavelengths is None:
        first = spec.read_cube(spec.split("train", fold)[0])
        preprocessing = preprocessing.model_copy(update={"wavelengths": first.wavelengths.tolist()})
    return preprocessing


def _build_network(config: TrainConfig, bands: int, classes: int, resume_from: Path | None) -> nn.Module:
    """A new network, or the resume point's (checkpoint stem ``resume_from``; its band count must match)."""
    if resume_from is None:
        return build_model(config.model, bands, classes, **config.model_options)
    last = resume_from.with_suffix(".json")
    card = read_card(last)
    if card.model.in_channels != bands:
        raise HsisegError(f"{last}: the network takes {card.model.in_channels} bands, the data has {bands}")
    return load_model(last)[0]


def build_training_data(
    spec: DataSpec, config: TrainConfig, preprocessing: Preprocessing, world_size: int = 1, final: bool = False
) -> TrainingData:
    """Training crops and validation images of ``config.fold``; where the training and validation splits share
    images, a seeded share of each class's strokes is moved from training to validation. ``final``: train on
    every annotated pixel of the training and validation images (the refit)."""
    train_ids, val_ids = spec.split("train", config.fold), spec.split("val", config.fold)
    train_targets, val_targets, held_out = {}, {}, {}
    for sample_id in sorted(set(train_ids) & set(val_ids)) if not final else []:
        split = hold_out_strokes(spec.read_annotation(sample_id), config.validation_strokes, config.seed, sample_id)
        train_targets[sample_id], val_targets[sample_id] = split.train, split.validation
        held_out[sample_id] = split.held_out
    per_round = config.validate_every * world_size
    train_set = SpecDataset(
        spec, "train", config.fold, "patches", config.patch_size, per_round * config.batch_size,
        augmentation=Augmentation(), seed=config.seed, preprocessing=preprocessing, targets=train_targets,
        class_balance=config.class_balance, sample_ids=list(dict.fromkeys(train_ids + val_ids)) if final else None,
    )  # fmt: skip
    if final:
        return TrainingData(train_set, train_set, train_set.whole_images(), None, held_out)
    validation = SpecDataset(spec, "val", config.fold, "full", preprocessing=preprocessing, targets=val_targets)
    return TrainingData(train_set, train_set, train_set.whole_images(), validation, held_out)


def pixel_steps(train_set: SpecDataset, config: TrainConfig, world_size: int = 1) -> PixelBatches:
    """Steps of annotated pixels (for networks trained pixel by pixel), with spectral augmentation only."""
    spectral_only = Augmentation(flips=False, rotations=False)
    per_round = config.validate_every * world_size
    return PixelBatches(train_set, config.pixels_per_step, per_round, config.class_balance, spectral_only, config.seed)


def fit_input_statistics(model: nn.Module, steps: PixelBatches) -> None:
    """Let a network that standardises its input learn the statistics of the annotated training spectra."""
    network = unwrap(model)
    if hasattr(network, "fit_input_statistics"):
        network.fit_input_statistics(torch.from_numpy(steps.spectra))


def _distributed(network: nn.Module, world: Distributed, device: torch.device) -> nn.Module:
    if world.world_size <= 1:
        return network
    return nn.parallel.DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)


def _card_base(config, spec: DataSpec, preprocessing, model: nn.Module, train_images: SpecDataset) -> ModelCard:
    """The card every checkpoint of this run shares (round, metrics and OOD calibration are added per round)."""
    network = NetworkConfig(
        name=config.model,
        in_channels=train_images.num_bands,
        classes=spec.tree.num_leaves,
        options=config.model_options,
        input_multiple=getattr(model, "input_multiple", 1),
    )
    targets = [train_images.sample(i).target for i in range(len(train_images.sample_ids))]
    reader = spec.model.reader
    scaling = InputScaling(scale=reader.get("scale"), offset=reader.get("offset"))
    return ModelCard.create(spec.tree, model=network, preprocessing=preprocessing, input_scaling=scaling,
                            training={**asdict(config), "spec": str(spec.path)},
                            trained_classes=_trained_classes(targets, spec.tree))  # fmt: skip


def calibrate_best(checkpoints: Path, data: TrainingData, config: TrainConfig, device: torch.device) -> ModelCard:
    """Fit the unknown-tissue scores of the best checkpoint on its training pixels, calibrate them on the
    held-out validation pixels and rewrite ``best.*`` with them (once, after the last round); its new card."""
    model, card = load_model(checkpoints / "best", device)
    card, scores = _with_ood(card, model, data, config, device, _autocast_dtype(device, config.amp))
    save_model(checkpoints / "best", model, card, scores)
    return card


def _with_ood(
    card: ModelCard, model, data: TrainingData, config: TrainConfig, device, autocast_dtype
) -> tuple[ModelCard, dict[str, OodScore]]:
    """The card with every unknown-tissue score fitted on the training pixels and calibrated on the held-out
    validation pixels (:mod:`hsiseg.ood.calibration`), and the fitted scores."""
    training = annotated_outputs(model, data.train_images, device, autocast_dtype)
    scores = fit_scores(config.ood_scores, training, card.model.classes)
    held_out = map_values(model, scores, [data.validation], annotated, device, autocast_dtype)
    reference = map_values(model, scores, [data.train_images, data.validation], reference_sample, device,
                           autocast_dtype)  # fmt: skip
    calibrations = calibrate(scores, held_out, reference, config.ood_keep)
    ood = OodSettings(default=_default_score(config, calibrations), scores=calibrations)
    validation = annotated_outputs(model, data.validation, device, autocast_dtype)
    temperature = fit_temperature(validation.logits, validation.targets, card.model.classes)
    update = {"ood": ood, "probability_calibration": temperature}
    return card.model_copy(update=update), {name: scores[name] for name in calibrations}


def _default_score(config: TrainConfig, calibrations: dict) -> str | None:
    """``config.ood_score`` when it could be calibrated (feature scores need a network with features), else the
    first calibrated score."""
    if config.ood_score in calibrations:
        return config.ood_score
    return next(iter(calibrations), None)


def _trained_classes(targets: list[np.ndarray], tree) -> list[str]:
    """Leaves with annotated pixels in the target maps."""
    codes = np.unique(np.concatenate([t.ravel() for t in targets]))
    return [tree.leaves[c] for c in codes if 0 <= c < tree.num_leaves]


@dataclass
class TrainingStep:
    """One optimiser step (forward under autocast, loss, backward with scaling and clipping), run for a round."""

    network: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    device: torch.device
    autocast_dtype: torch.dtype | None
    config: TrainConfig
    data: TrainingData
    loader: DataLoader
    sampler: DistributedSampler | None

    @classmethod
    def create(
        cls, model: nn.Module, data: TrainingData, config: TrainConfig, device: torch.device, world: Distributed
    ) -> TrainingStep:
        """Loss, optimiser (AdamW), warm-up + cosine schedule over ``config.steps``, AMP, DDP and the loader."""
        loss_fn = build_loss(config.loss, data.train_set.spec.tree, **config.loss_options).to(device)
        model.to(device)
        if device.type == "cuda" and config.channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        warmup = max(1, int(config.warmup * config.steps))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.steps, warmup))
        network = _distributed(torch.compile(model) if config.compile else model, world, device)
        autocast_dtype = _autocast_dtype(device, config.amp)
        scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)
        distributed = world.world_size > 1
        sampler = DistributedSampler(data.steps, world.world_size, world.rank, shuffle=False) if distributed else None
        loader = DataLoader(
            data.steps,
            batch_size=1 if isinstance(data.steps, PixelBatches) else config.batch_size,
            sampler=sampler,
            num_workers=config.workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,  # workers must see set_epoch: each round gets fresh ones
        )
        return cls(
            network, loss_fn, optimizer, scheduler, scaler, device, autocast_dtype, config, data, loader, sampler
        )

    def run_round(self, round_index: int, reporter: Reporter) -> float:
        """Run this round's steps; the mean training loss per item."""
        self.data.steps.set_epoch(round_index)
        if self.sampler is not None:
            self.sampler.set_epoch(round_index)
        self.network.train()
        total, count, started = 0.0, 0, time.perf_counter()
        first = round_index * self.config.validate_every
        for offset, batch in zip(range(self.config.steps_in_round(round_index)), self.loader, strict=False):
            loss = self(batch, first + offset)
            items = len(batch["index"].flatten())
            total += loss * items
            count += items
            reporter.step(first + offset, loss, count / max(1e-9, time.perf_counter() - started))
        return total / max(1, count)

    def __call__(self, batch: dict[str, torch.Tensor], step: int) -> float:
        images = batch["image"].to(self.device, non_blocking=True)
        if self.device.type == "cuda" and self.config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        target = batch["target"].to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        try:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                loss = self.loss_fn(self.network(images), target)
            if not torch.isfinite(loss):
                names = sorted({self.data.train_set.sample_ids[int(i)] for i in batch["index"].flatten().unique()})
                raise HsisegError(
                    f"non-finite loss ({loss.item()}) at step {step}, data from {names}; training stopped, "
                    "the last good checkpoint is kept (try a lower learning rate)"
                )
            self.scaler.scale(loss).backward()
            if self.config.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.network.parameters(), self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        except torch.OutOfMemoryError:
            raise HsisegError(
                f"out of memory with batch_size {self.config.batch_size}, patch_size {self.config.patch_size} and "
                f"pixels_per_step {self.config.pixels_per_step}; halve the one your model uses"
            ) from None
        self.scheduler.step()
        return float(loss.item())


def _autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if device.type != "cuda" or not amp:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _resolve_config(run_dir: Path, config: TrainConfig | None, resume: bool) -> tuple[TrainConfig, Path | None]:
    """The run's configuration and, when resuming, the checked resume point's checkpoint stem."""
    last = run_dir / "checkpoints" / "last"
    if not resume:
        if last.exists() or (run_dir / "checkpoints" / "last.json").exists():
            raise HsisegError(f"{run_dir} holds a training run; resume it or choose another folder")
        return config or TrainConfig(), None
    saved = run_dir / "args.json"
    if not saved.is_file():
        raise HsisegError(f"{run_dir}: nothing to resume (no args.json)")
    if (run_dir / "checkpoints" / "last.json").exists() and not last.exists():
        raise HsisegError(f"{run_dir}: written by hsiseg 0.1, whose checkpoints this version cannot resume; "
                          "start a new run (its best/final checkpoints still predict)")  # fmt: skip
    if not last.exists() and not last.with_name(".last.old").exists():
        raise HsisegError(f"{run_dir}: the run stopped before its first checkpoint; there is nothing to resume, "
                          "start it again (without resume) into this folder")  # fmt: skip
    resume_from = check_resume_point(last)
    try:
        stored = TrainConfig(**json.loads(saved.read_text())["config"])
    except TypeError as error:
        raise HsisegError(f"{saved}: written by another hsiseg version ({error}); start a new run") from None
    if config is not None and config.steps != stored.steps:
        stored.steps = config.steps  # continuing for longer is allowed; everything else stays as it was
        _write_args(run_dir, json.loads(saved.read_text())["spec"], stored)
    return stored, resume_from


def check_resume_options(run_dir: str | Path, requested: dict[str, Any]) -> None:
    """Refuse to resume when ``requested`` settings (those a user asked for; ``steps`` may change) differ from
    the run's own: a resumed run continues exactly as it was configured."""
    saved = Path(run_dir) / "args.json"
    if not saved.is_file():
        return  # _resolve_config says there is nothing to resume
    stored = asdict(TrainConfig(**json.loads(saved.read_text())["config"]))
    changed = sorted(k for k, v in requested.items() if k != "steps" and json.loads(json.dumps(v)) != stored.get(k))
    if changed:
        shown = ", ".join(f"{k} ({stored.get(k)!r} in the run, {requested[k]!r} asked)" for k in changed)
        raise HsisegError(f"{saved}: a resumed run continues with its own settings, and these differ: {shown}; "
                          "drop them to resume, or start a new run to change them")  # fmt: skip


def _prepare_run_dir(run_dir: Path, spec_path: Path, config: TrainConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec_path, run_dir / "spec.yaml")
    _write_args(run_dir, str(spec_path.resolve()), config)


def _write_args(run_dir: Path, spec: str, config: TrainConfig) -> None:
    with atomic_path(run_dir / "args.json") as temporary:
        temporary.write_text(json.dumps({"spec": spec, "config": asdict(config)}, indent=2))


def write_held_out_strokes(run_dir: Path, data: TrainingData, tree, config: TrainConfig) -> None:
    """``validation_strokes.json`` (per sample: class, pixels, centre of each held-out stroke) and
    ``validation_strokes/<sample>.png`` (code + 1 label images), when strokes were held out."""
    if not data.held_out:
        return
    record = {
        "share": config.validation_strokes,
        "seed": config.seed,
        "samples": {
            sample_id: [{"class": tree.node(s.code).name, **asdict(s)} for s in strokes]
            for sample_id, strokes in data.held_out.items()
        },
    }
    with atomic_path(run_dir / "validation_strokes.json") as temporary:
        temporary.write_text(json.dumps(record, indent=2))
    for index, sample_id in enumerate(data.validation.sample_ids):
        if sample_id in data.held_out:
            write_label_image(run_dir / "validation_strokes" / f"{sample_id}.png", data.validation.sample(index).target)


PLOT_EVERY = 5  # rounds between redraws of curves.png (about 0.8 s each on a CPU; always after the last)


def _write_history(run_dir: Path, history: list[dict[str, Any]], plot: bool = True) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    with atomic_path(run_dir / "metrics.csv") as temporary:
        temporary.write_text(buffer.getvalue())
    if plot:
        _plot_curves(run_dir / "curves.png", history)


def _read_history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open() as handle:
        return [
            {k: (int(v) if k in ("round", "step", "pixels") else float(v)) for k, v in row.items()}
            for row in csv.DictReader(handle)
        ]


def _plot_curves(path: Path, history: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["step"] for row in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.plot(steps, [row["train_loss"] for row in history], marker="o")
    left.set(xlabel="step", ylabel="training loss", title="loss")
    for key, label in (
        ("leaf_accuracy", "leaf accuracy"),
        ("top_accuracy", "top-level accuracy"),
        ("mean_dice", "mean Dice"),
    ):
        right.plot(steps, [row[key] for row in history], marker="o", label=label)
    right.set(xlabel="step", ylim=(0, 1), title="validation (held-out annotated pixels)")
    right.legend(loc="lower right")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
