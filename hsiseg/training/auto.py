"""``model="auto"``: train every candidate, choose on held-out strokes, refit the winner.

The choice itself is :mod:`hsiseg.training.selection`.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from hsiseg.dataset.spec import DataSpec
from hsiseg.errors import HsisegError
from hsiseg.evaluation.metrics import annotated_metrics
from hsiseg.io.atomic import atomic_path
from hsiseg.models.card import CandidateScore, Selection
from hsiseg.models.checkpoint import (
    load_model,
    read_card,
    save_model,
)
from hsiseg.ood.calibration import (
    annotated_outputs,
)
from hsiseg.training.calibration import with_ood
from hsiseg.training.config import TrainConfig
from hsiseg.training.data import TrainingData, build_training_data, network_preprocessing
from hsiseg.training.devices import Distributed, resolve_device
from hsiseg.training.loop import train_model
from hsiseg.training.refit import refit
from hsiseg.training.reporting import Reporter
from hsiseg.training.run_folder import prepare_run_dir, stored_config
from hsiseg.training.selection import (
    AUTO,
    beats_default,
    candidates,
    choose,
    held_out_strokes,
    score_contexts,
    with_options,
)


def selects(run_dir: Path, config: TrainConfig | None, resume: bool) -> bool:
    """Whether this run chooses among candidates (``model="auto"``, asked for or stored in the resumed run)."""
    saved = run_dir / "args.json"
    if resume and saved.is_file():
        return json.loads(saved.read_text()).get("config", {}).get("model") == AUTO
    return (config or TrainConfig()).model == AUTO


def train_selected(
    spec_path: str | Path, run_dir: Path, config: TrainConfig | None, resume: bool, reporter: Reporter
) -> nn.Module:
    """``model="auto"``: train every spectral candidate into ``run_dir/candidates/<name>`` (refit off), score it
    under every context on the held-out pixels, keep the best pair (:mod:`hsiseg.training.selection`) as
    ``run_dir/checkpoints/best.*`` (recalibrated under its context, the selection in its card) and refit it on
    every scribble (``final.*``)."""
    if resume:
        config = resume_selection(run_dir, config)
    else:
        if (run_dir / "candidates").exists() or (run_dir / "checkpoints").exists():
            raise HsisegError(f"{run_dir} holds a training run; resume it or choose another folder")
        config = config or TrainConfig()
        config.check()
        prepare_run_dir(run_dir, Path(spec_path), config)
    spec = DataSpec.from_file(spec_path)
    device = resolve_device(config.device)
    preprocessing = network_preprocessing(spec, config.fold)
    data = build_training_data(spec, config, preprocessing)
    scores: dict[str, CandidateScore] = {}
    held_out = held_out_strokes(data.validation)
    default, _ = config.unknown_tissue(strokes_held_out=bool(data.held_out))
    for candidate in candidates(config.model_options):
        folder = run_dir / "candidates" / candidate.name
        reporter.message(f"candidate {candidate.name}: {candidate.model} {candidate.options}")
        # a candidate calibrates only the default score, on held-out strokes: the chosen one is recalibrated
        # with all of them as configured
        fixed = replace(config, model=candidate.model, model_options=candidate.options, refit=False,
                        ood_scores=[default], ood_score=default, ood_calibration="held-out")  # fmt: skip
        again = resume and (folder / "checkpoints" / "last").exists()
        train_model(spec_path, folder, fixed, resume=again, reporter=reporter)
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
    model = adopt(run_dir, run_dir / "candidates" / spectral, selection, data, config, device)
    if config.refit and not math.isnan(winner.mean_dice):
        chosen_config = replace(config, model=winner.model, model_options=winner.options)
        model = refit(spec, chosen_config, preprocessing, winner.step, device, Distributed(), run_dir / "checkpoints",
                      reporter)  # fmt: skip
    elif math.isnan(winner.mean_dice):
        reporter.message(f"no held-out pixel to choose on: kept the first candidate, {selection.chosen}")
    return model


def resume_selection(run_dir: Path, config: TrainConfig | None) -> TrainConfig:
    """The stored configuration of a selecting run (a longer ``steps`` may be asked for); its chosen
    checkpoints are removed (they are chosen again from the resumed candidates)."""
    stored = stored_config(run_dir, config)
    for stale in (run_dir / "checkpoints").glob("*.*"):  # chosen again from the resumed candidates
        stale.unlink()
    return stored


def adopt(
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
    metrics = annotated_metrics(validation.logits.argmax(1).numpy(), validation.labels.numpy(), card.tree)
    card = card.model_copy(update={
        "model": network.model_copy(update={"options": winner.options}),
        "metrics": metrics,
        "training": {**card.training, "model": AUTO, "model_options": config.model_options},
        "selection": selection,
    })  # fmt: skip
    card, scores = with_ood(card, model, data, config, device, None)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_model(run_dir / "checkpoints" / "best", model, card, scores)
    with atomic_path(run_dir / "selection.json") as temporary:
        temporary.write_text(selection.model_dump_json(indent=2))
    return model
