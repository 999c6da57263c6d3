"""``hsiseg train``: train a network on a data spec with any hsiseg loss."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from hsiseg.errors import HsisegError
from hsiseg.ood import DEFAULT_SCORES
from hsiseg.training import TrainConfig, check_resume_options, final_checkpoint, train

from .errors import Interrupted, reports_errors
from .options import parse_options
from .progress import JsonLinesReporter, RichReporter

DEFAULTS = TrainConfig()


MODEL_HELP = (
    "Network: auto (default: trains the spectral-spatial network with a spectral MLP and with an RBF kernel part, "
    "keeps the better on held-out strokes), spectral-spatial (per-pixel spectral part + edge-aware spatial "
    "context), pixel (no spatial context), unet (large receptive field: for dense or plentiful labels), "
    "or smp-<architecture>."
)


@reports_errors
def train_command(
    spec: Annotated[Path, typer.Argument(help="Data spec (YAML/JSON).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder (checkpoints, metrics, curves).")],
    loss: Annotated[str, typer.Option(help="Loss: ce, dice-ce, tree-wasserstein, tree-gwdl, tree-ce.")] = DEFAULTS.loss,
    top_level_weight: Annotated[float | None, typer.Option(help="tree-ce: weight of the top level.")] = None,
    level_weights: Annotated[
        str | None, typer.Option(help="tree-ce: comma-separated weights, top level first.")
    ] = None,
    alpha: Annotated[float | None, typer.Option(help="tree-wasserstein: weight of the CE term.")] = None,
    beta: Annotated[float | None, typer.Option(help="tree-wasserstein: weight of the Wasserstein term.")] = None,
    loss_option: Annotated[list[str] | None, typer.Option("--loss-option", help="Any loss option KEY=VALUE.")] = None,
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = DEFAULTS.model,
    width: Annotated[int | None, typer.Option(help="Hidden channels (unet: of the first level).")] = None,
    depth: Annotated[int | None, typer.Option(help="Hidden layers (pixel, spectral-spatial) or U-Net levels.")] = None,
    context: Annotated[
        str | None, typer.Option(help="spectral-spatial: spatial context guided (default), gaussian, conv or none.")
    ] = None,
    sigma: Annotated[
        float | None, typer.Option(help="spectral-spatial: spatial scale (pixels) of the guided or gaussian context.")
    ] = None,
    model_option: Annotated[
        list[str] | None, typer.Option("--model-option", help="Any model option KEY=VALUE.")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help=f"Optimiser steps in all [default: {DEFAULTS.steps}; with --resume: the run's]")
    ] = None,
    val_every: Annotated[int, typer.Option(help="Validate and checkpoint every N steps.")] = DEFAULTS.validate_every,
    batch_size: Annotated[int, typer.Option(help="Crops per step (unet, smp-*).")] = DEFAULTS.batch_size,
    patch_size: Annotated[int, typer.Option(help="Side of square training crops (unet, smp-*).")] = DEFAULTS.patch_size,
    pixels_per_step: Annotated[
        int, typer.Option(help="Annotated pixels per step (pixel, spectral-spatial).")
    ] = DEFAULTS.pixels_per_step,
    class_balance: Annotated[
        float, typer.Option(help="Sample classes by count^-B: 0 by area, 1 all classes equally.")
    ] = DEFAULTS.class_balance,
    validation_strokes: Annotated[
        float,
        typer.Option(
            help="Share of each class's strokes held out for validation when train and val "
            "share images (e.g. one scene)."
        ),
    ] = DEFAULTS.validation_strokes,  # fmt: skip
    refit: Annotated[
        bool, typer.Option(help="After validating on held-out strokes, train the final model on all strokes.")
    ] = DEFAULTS.refit,
    ood_score: Annotated[
        str,
        typer.Option(
            help=f"Default unknown-tissue score of the model card (all of {', '.join(DEFAULT_SCORES)} are calibrated); "
            "auto: spectral_knn when validation strokes are held out of the training images (one scene), "
            "mahalanobis with a validation split of other images."
        ),
    ] = DEFAULTS.ood_score,  # fmt: skip
    ood_keep: Annotated[
        float, typer.Option(help="Share of held-out annotated pixels every OOD threshold keeps as known.")
    ] = DEFAULTS.ood_keep,
    ood_calibration: Annotated[
        str,
        typer.Option(help="How OOD thresholds are calibrated: 'held-out' strokes, or 'cross-fitted' (the input-space "
                          "scores on every annotated pixel's out-of-fold value, in folds of patients or, within one "
                          "scene, of strokes; keeps the promise, flags less); auto: cross-fitted when validation "
                          "strokes are held out of the training images, else held-out."),
    ] = DEFAULTS.ood_calibration,  # fmt: skip
    ood_scores: Annotated[
        str | None,
        typer.Option(help="Comma-separated scores to calibrate (default: all but 'combined', which is opt-in)."),
    ] = None,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = DEFAULTS.learning_rate,
    fold: Annotated[int, typer.Option(help="Which fold of the spec's splits.")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA if available), cpu, cuda, cuda:1, ...")] = "auto",
    amp: Annotated[bool, typer.Option(help="Mixed precision on CUDA (bf16 where supported, else fp16).")] = True,
    amp_dtype: Annotated[
        str, typer.Option(help="auto (bf16, else fp16, on CUDA; off on a CPU), or bfloat16 / float16 on any device.")
    ] = "auto",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the network.")] = False,
    workers: Annotated[int, typer.Option(help="Data-loader worker processes.")] = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --output exactly where it stopped.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON line per validation round on stdout.")] = False,
) -> None:
    """Train a network on the spec's training split; validate on held-out annotated pixels (the validation split,
    or strokes held out of the training scribbles when both splits share images).

    With no tuning flags this is the best measured configuration for small data on a CPU: the
    spectral-spatial network, cross-entropy, 1000 steps of 512 annotated pixels. Choose unet only for
    dense or plentiful annotations."""
    options = parse_options(loss_option)
    for key, value in (("top_level_weight", top_level_weight), ("alpha", alpha), ("beta", beta)):
        if value is not None:
            options[key] = value
    if level_weights is not None:
        options["level_weights"] = _level_weights(level_weights)
    model_options = parse_options(model_option)
    given: tuple[tuple[str, Any], ...] = (("width", width), ("depth", depth), ("context", context), ("sigma", sigma))
    for key, value in given:
        if value is not None:
            model_options[key] = value
    config = TrainConfig(
        loss=loss, loss_options=options, model=model, model_options=model_options,
        steps=DEFAULTS.steps if steps is None else steps,
        validate_every=val_every, batch_size=batch_size, patch_size=patch_size, pixels_per_step=pixels_per_step,
        class_balance=class_balance, validation_strokes=validation_strokes, refit=refit, learning_rate=lr,
        ood_score=ood_score, ood_keep=ood_keep, ood_calibration=ood_calibration,
        ood_scores=[n.strip() for n in ood_scores.split(",")] if ood_scores else list(DEFAULTS.ood_scores),
        fold=fold, seed=seed, device=device, amp=amp, amp_dtype=amp_dtype, compile=compile, workers=workers,
    )  # fmt: skip
    config.check()  # every option before the spec or the run folder is read
    if resume:
        requested = {k: v for k, v in asdict(config).items() if k != "steps" and v != getattr(DEFAULTS, k)}
        check_resume_options(output, requested)
    reporter = JsonLinesReporter() if jsonl else (None if quiet else RichReporter())
    try:
        train(spec, output, config if steps is not None or not resume else None, resume=resume, reporter=reporter)
    except KeyboardInterrupt:
        saved = output / "checkpoints" / "last"
        kept = f"the last finished round is saved in {saved}; " if saved.is_dir() else "no round had finished; "
        advice = "resume with the same command and --resume" if saved.is_dir() else "run the command again"
        raise Interrupted(f"interrupted; {kept}{advice}") from None
    finally:
        if isinstance(reporter, RichReporter):
            reporter.stop()
    if not jsonl:
        typer.echo(f"run folder: {output} (model to predict with: {final_checkpoint(output)})")


def _level_weights(text: str) -> list[float]:
    """``--level-weights 1,0.5,0.5`` as numbers (their range is the loss's check)."""
    try:
        return [float(value) for value in text.split(",")]
    except ValueError:
        raise HsisegError(f"--level-weights must be comma-separated numbers, top level first (e.g. 1,0.5,0.5), "
                          f"got {text!r}") from None  # fmt: skip
