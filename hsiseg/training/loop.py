"""Training one network: the rounds of steps, validation, checkpoints and resume."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from hsiseg.checkpoint import (
    load_model,
    load_training_state,
    read_card,
    save_model,
    save_resume_point,
)
from hsiseg.errors import HsisegError
from hsiseg.io.atomic import check_output_folder
from hsiseg.metrics import annotated_metrics
from hsiseg.models import AnySize, build_model, pixelwise_training
from hsiseg.ood.calibration import (
    annotated_outputs,
)
from hsiseg.spec import DataSpec
from hsiseg.training.calibration import calibrate_best, card_base
from hsiseg.training.config import TrainConfig
from hsiseg.training.data import build_training_data, fit_input_statistics, for_network, network_preprocessing
from hsiseg.training.devices import resolve_device, seed_everything, setup_distributed
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


def train_model(
    spec_path: str | Path,
    run_dir: str | Path,
    config: TrainConfig | None = None,
    resume: bool = False,
    reporter: Reporter | None = None,
) -> nn.Module:
    """Train (or resume) one named network (``config.model``, not ``auto``); returns it (unwrapped from DDP)."""
    run_dir = check_output_folder(run_dir)
    reporter = reporter or SilentReporter()
    config, resume_from = resolve_config(run_dir, config, resume)
    config.check()
    device = resolve_device(config.device)
    world = setup_distributed(device.type)
    if world.world_size > 1 and device.type == "cuda":
        device = torch.device(f"cuda:{world.local_rank}")
        torch.cuda.set_device(device)
    seed_everything(config.seed)

    spec = DataSpec.from_file(spec_path)
    tree = spec.tree
    preprocessing = network_preprocessing(spec, config.fold)
    data = build_training_data(spec, config, preprocessing, world.world_size)
    model = build_network(config, data.train_set.num_bands, tree.num_leaves, resume_from)
    data = for_network(data, model, config, world.world_size)
    if pixelwise_training(model) and not resume:
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
        history = read_history(run_dir / "metrics.csv")[:first_round]
    elif world.main:
        prepare_run_dir(run_dir, Path(spec_path), config)
        write_held_out_strokes(run_dir, data, tree, config)
    base_card = card_base(config, spec, preprocessing, model, data.train_images)
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
            card = base_card.model_copy(update={"round": round_index, "step": done, "metrics": metrics})
            checkpoints.mkdir(parents=True, exist_ok=True)
            if improved or not (checkpoints / "best.json").is_file():
                save_model(checkpoints / "best", model, card)  # its OOD calibration follows after the last round
            save_resume_point(checkpoints / "last", model, card, step.optimizer, step.scheduler,
                              {"round": round_index, "best": best})  # fmt: skip
            write_history(run_dir, history, plot=round_index % PLOT_EVERY == 0 or round_index == config.rounds - 1)
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


def build_network(config: TrainConfig, bands: int, classes: int, resume_from: Path | None) -> AnySize:
    """A new network, or the resume point's (checkpoint stem ``resume_from``; its band count must match)."""
    if resume_from is None:
        return build_model(config.model, bands, classes, **config.model_options)
    last = resume_from.with_suffix(".json")
    card = read_card(last)
    if card.model.in_channels != bands:
        raise HsisegError(f"{last}: the network takes {card.model.in_channels} bands, the data has {bands}")
    return load_model(last)[0]
