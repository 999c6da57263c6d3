"""Training one network: the rounds of steps, validation, checkpoints and resume."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from hsiseg.dataset.spec import DataSpec
from hsiseg.errors import HsisegError
from hsiseg.evaluation.metrics import annotated_metrics
from hsiseg.io.atomic import check_output_folder
from hsiseg.models import AnySize, build_model, pixelwise_training
from hsiseg.models.card import ModelCard
from hsiseg.models.checkpoint import (
    load_model,
    load_training_state,
    read_card,
    save_model,
    save_resume_point,
)
from hsiseg.ood.calibration import (
    annotated_outputs,
)
from hsiseg.spectral import Preprocessing
from hsiseg.training.calibration import calibrate_best, card_base
from hsiseg.training.config import TrainConfig
from hsiseg.training.data import (
    TrainingData,
    build_training_data,
    fit_input_statistics,
    for_network,
    network_preprocessing,
)
from hsiseg.training.devices import Distributed, resolve_device, seed_everything, setup_distributed
from hsiseg.training.refit import refit
from hsiseg.training.reporting import Reporter, SilentReporter
from hsiseg.training.run_folder import (
    PLOT_EVERY,
    prepare_run_dir,
    read_history,
    resolve_config,
    write_held_out_strokes,
    write_history,
)
from hsiseg.training.step import TrainingStep


@dataclass
class BestRound:
    """The best validated round so far: mean Dice on the held-out pixels and the step count that reached it
    (stored in the resume point as ``{"dice", "step"}``)."""

    dice: float = -1.0
    step: int = 0

    def beaten_by(self, dice: float) -> bool:
        return not math.isnan(dice) and dice > self.dice


@dataclass
class Run:
    """One network's training run in progress: what every named step of :func:`train_model` shares."""

    spec: DataSpec
    config: TrainConfig
    run_dir: Path
    device: torch.device
    world: Distributed
    preprocessing: Preprocessing
    data: TrainingData
    model: AnySize
    step: TrainingStep
    reporter: Reporter

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"


def train_model(
    spec_path: str | Path,
    run_dir: str | Path,
    config: TrainConfig | None = None,
    resume: bool = False,
    reporter: Reporter | None = None,
) -> nn.Module:
    """Train (or resume) one named network (``config.model``, not ``auto``); returns it (unwrapped from DDP)."""
    run_dir = check_output_folder(run_dir)
    config, resume_from = resolve_config(run_dir, config, resume)
    config.check()
    run = _start(Path(spec_path), run_dir, config, resume_from, reporter or SilentReporter())
    first_round, best, history = _starting_point(run, Path(spec_path), resume_from)
    best = _train_rounds(run, first_round, best, history)
    _calibrate(run)
    best = _agreed(best, run.world)
    model: nn.Module = run.model
    if config.refit and run.data.validation_pixels():
        model = refit(run.spec, config, run.preprocessing, best.step, run.device, run.world, run.checkpoints,
                      run.reporter)  # fmt: skip
    if run.world.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
    return model


def _start(spec_path: Path, run_dir: Path, config: TrainConfig, resume_from: Path | None, reporter: Reporter) -> Run:
    """Devices, seeds, data and network of the run."""
    device = resolve_device(config.device)
    world = setup_distributed(device.type)
    if world.world_size > 1 and device.type == "cuda":
        device = torch.device(f"cuda:{world.local_rank}")
        torch.cuda.set_device(device)
    seed_everything(config.seed)
    spec = DataSpec.from_file(spec_path)
    preprocessing = network_preprocessing(spec, config.fold)
    data = build_training_data(spec, config, preprocessing, world.world_size)
    model = build_network(config, data.train_set.num_bands, spec.tree.num_leaves, resume_from)
    data = for_network(data, model, config, world.world_size)
    if pixelwise_training(model) and resume_from is None:
        fit_input_statistics(model, data.steps)
    if not data.validation_pixels():
        reporter.message(
            "no annotated validation pixel: the best checkpoint is the last one and no unknown-tissue threshold "
            "is calibrated (annotate more strokes, or give the spec a validation split)"
        )
    step = TrainingStep.create(model, data, config, device, world)
    return Run(spec, config, run_dir, device, world, preprocessing, data, model, step, reporter)


def _starting_point(run: Run, spec_path: Path, resume_from: Path | None) -> tuple[int, BestRound, list[dict]]:
    """(first round, best round, history so far): a new run's folder prepared, or the resume point's state."""
    if resume_from is not None:
        for stale in run.checkpoints.glob("final.*"):  # a refit of the shorter run; the new one replaces it
            stale.unlink()
        state = load_training_state(resume_from, run.step.optimizer, run.step.scheduler)
        first_round = state["round"] + 1
        return first_round, BestRound(**state["best"]), read_history(run.run_dir / "metrics.csv")[:first_round]
    if run.world.main:
        prepare_run_dir(run.run_dir, spec_path, run.config)
        write_held_out_strokes(run.run_dir, run.data, run.spec.tree, run.config)
    return 0, BestRound(step=run.config.steps), []


def _train_rounds(run: Run, first_round: int, best: BestRound, history: list[dict]) -> BestRound:
    """Every remaining round: steps, then (rank 0) validation, checkpoints and the history; the best round."""
    config, base_card = run.config, card_base(run.config, run.spec, run.preprocessing, run.model,
                                              run.data.train_images)  # fmt: skip
    run.reporter.start(config.steps, first_round * config.validate_every)
    for round_index in range(first_round, config.rounds):
        started = time.perf_counter()
        train_loss = run.step.run_round(round_index, run.reporter)
        seconds = time.perf_counter() - started
        if run.world.main:
            best = _validate(run, round_index, best, base_card, history, {"train_loss": train_loss, "seconds": seconds})
        if run.world.world_size > 1:
            dist.barrier()
    return best


def _validate(run: Run, round_index: int, best: BestRound, base_card: ModelCard, history: list[dict],
              figures: dict[str, float]) -> BestRound:  # fmt: skip
    """Score the round on the held-out pixels, save ``best`` (when it improved) and ``last``, log the round."""
    config, checkpoints = run.config, run.checkpoints
    validation = annotated_outputs(run.model, run.data.validation, run.device, run.step.autocast_dtype)
    metrics = annotated_metrics(validation.logits.argmax(1).numpy(), validation.labels.numpy(), run.spec.tree)
    done = round_index * config.validate_every + config.steps_in_round(round_index)
    row = {"round": round_index, "step": done, "train_loss": figures["train_loss"], **metrics,
           "lr": run.step.scheduler.get_last_lr()[0], "seconds": figures["seconds"]}  # fmt: skip
    history.append(row)
    improved = best.beaten_by(metrics["mean_dice"])
    if improved:
        best = BestRound(metrics["mean_dice"], done)
    card = base_card.model_copy(update={"round": round_index, "step": done, "metrics": metrics})
    checkpoints.mkdir(parents=True, exist_ok=True)
    if improved or not (checkpoints / "best.json").is_file():
        save_model(checkpoints / "best", run.model, card)  # its OOD calibration follows after the last round
    save_resume_point(checkpoints / "last", run.model, card, run.step.optimizer, run.step.scheduler,
                      {"round": round_index, "best": asdict(best)})  # fmt: skip
    write_history(run.run_dir, history, plot=round_index % PLOT_EVERY == 0 or round_index == config.rounds - 1)
    run.reporter.round_end(row)
    return best


def _calibrate(run: Run) -> None:
    """(rank 0) Fit and calibrate the unknown-tissue scores of the best checkpoint."""
    if not run.world.main:
        return
    calibrated = calibrate_best(run.checkpoints, run.data, run.config, run.device).ood
    if calibrated.scores and calibrated.default is not None:
        chosen = calibrated.scores[calibrated.default]
        how = ("cross-fitted on every stroke, each scored without its own" if chosen.method == "cross-fitted"
               else "calibrated on the held-out pixels")  # fmt: skip
        run.reporter.message(f"unknown tissue: {len(calibrated.scores)} scores calibrated (keep "
                             f"{run.config.ood_keep:.0%}); default {calibrated.default}, {how} "
                             f"({chosen.held_out_pixels} pixels)")  # fmt: skip


def _agreed(best: BestRound, world: Distributed) -> BestRound:
    """The best round rank 0 validated, on every rank (each refits for that budget)."""
    if world.world_size <= 1:
        return best
    shared = [best]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


def build_network(config: TrainConfig, bands: int, classes: int, resume_from: Path | None) -> AnySize:
    """A new network, or the resume point's (checkpoint stem ``resume_from``; its band count must match)."""
    if resume_from is None:
        return build_model(config.model, bands, classes, **config.model_options)
    last = resume_from.with_suffix(".json")
    card = read_card(last)
    if card.model.in_channels != bands:
        raise HsisegError(f"{last}: the network takes {card.model.in_channels} bands, the data has {bands}")
    model = load_model(last)[0]
    assert isinstance(model, AnySize)  # load_model wraps every network
    return model
