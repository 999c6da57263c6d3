"""The run folder: ``args.json``, the spec copy, ``metrics.csv``, ``curves.png``, held-out strokes, resume."""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hsiseg.annotations.writers import write_label_image
from hsiseg.errors import HsisegError
from hsiseg.io.atomic import atomic_path
from hsiseg.models.checkpoint import (
    check_resume_point,
)
from hsiseg.training.config import TrainConfig
from hsiseg.training.data import TrainingData

PLOT_EVERY = 5  # rounds between redraws of curves.png (about 0.8 s each on a CPU; always after the last)


def final_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint of a run to predict with: ``final.json`` (refit on all scribbles) when there is one, else
    ``best.json`` (best held-out mean Dice)."""
    checkpoints = Path(run_dir) / "checkpoints"
    final = checkpoints / "final.json"
    return final if final.is_file() else checkpoints / "best.json"


def resolve_config(run_dir: Path, config: TrainConfig | None, resume: bool) -> tuple[TrainConfig, Path | None]:
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
    return stored_config(run_dir, config), resume_from


def stored_config(run_dir: Path, config: TrainConfig | None) -> TrainConfig:
    """The configuration a run was started with (``args.json``), with the ``steps`` of ``config`` when that asks
    for a different budget (continuing for longer is allowed; everything else stays as it was)."""
    saved = run_dir / "args.json"
    try:
        stored = TrainConfig(**stored_settings(saved))
    except TypeError as error:
        raise HsisegError(f"{saved}: written by another hsiseg version ({error}); start a new run") from None
    if config is not None and config.steps != stored.steps:
        stored.steps = config.steps
        write_args(run_dir, json.loads(saved.read_text())["spec"], stored)
    return stored


# settings added after runs were written with their then-defaults, which a resumed run keeps
EARLIER_DEFAULTS = {"ood_score": "mahalanobis", "ood_calibration": "held-out"}


def stored_settings(saved: Path) -> dict[str, Any]:
    """The ``config`` of a run's ``args.json``, a setting it predates filled with the default of its time."""
    return {**EARLIER_DEFAULTS, **json.loads(saved.read_text())["config"]}


def check_resume_options(run_dir: str | Path, requested: dict[str, Any]) -> None:
    """Refuse to resume when ``requested`` settings (those a user asked for; ``steps`` may change) differ from
    the run's own: a resumed run continues exactly as it was configured."""
    saved = Path(run_dir) / "args.json"
    if not saved.is_file():
        return  # resolve_config says there is nothing to resume
    stored = asdict(TrainConfig(**stored_settings(saved)))
    changed = sorted(k for k, v in requested.items() if k != "steps" and json.loads(json.dumps(v)) != stored.get(k))
    if changed:
        shown = ", ".join(f"{k} ({stored.get(k)!r} in the run, {requested[k]!r} asked)" for k in changed)
        raise HsisegError(f"{saved}: a resumed run continues with its own settings, and these differ: {shown}; "
                          "drop them to resume, or start a new run to change them")  # fmt: skip


def prepare_run_dir(run_dir: Path, spec_path: Path, config: TrainConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec_path, run_dir / "spec.yaml")
    write_args(run_dir, str(spec_path.resolve()), config)


def write_args(run_dir: Path, spec: str, config: TrainConfig) -> None:
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
    for index, sample_id in enumerate(data.validation.sample_ids if data.validation is not None else []):
        if sample_id in data.held_out:
            target = data.validation.sample(index).target  # type: ignore[union-attr]  # not None in this loop
            write_label_image(run_dir / "validation_strokes" / f"{sample_id}.png", target)


def write_history(run_dir: Path, history: list[dict[str, Any]], plot: bool = True) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    with atomic_path(run_dir / "metrics.csv") as temporary:
        temporary.write_text(buffer.getvalue())
    if plot:
        _plot_curves(run_dir / "curves.png", history)


def read_history(path: Path) -> list[dict[str, Any]]:
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
