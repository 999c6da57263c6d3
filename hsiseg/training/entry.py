"""``train()``: the one entry point of training (see :mod:`hsiseg.training`)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from hsiseg.io.atomic import check_output_folder
from hsiseg.training.auto import selects, train_selected
from hsiseg.training.config import TrainConfig
from hsiseg.training.loop import train_model
from hsiseg.training.reporting import Reporter, SilentReporter


def train(
    spec_path: str | Path,
    run_dir: str | Path,
    config: TrainConfig | None = None,
    resume: bool = False,
    reporter: Reporter | None = None,
) -> nn.Module:
    """Train (or resume) a run; returns the trained network (unwrapped from DDP). ``model="auto"`` (the
    default) trains every candidate of :mod:`hsiseg.training.selection` and keeps the best on held-out strokes;
    a model name trains that network alone."""
    run_dir = check_output_folder(run_dir)
    reporter = reporter or SilentReporter()
    if config is not None:
        config.check()  # every name and option, before any data is read
    if selects(run_dir, config, resume):
        return train_selected(spec_path, run_dir, config, resume, reporter)
    return train_model(spec_path, run_dir, config, resume, reporter)
