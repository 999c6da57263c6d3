"""``hsiseg evaluate``: score predictions against a data spec's truth or scribbles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hsiseg.errors import HsisegError

from .errors import reports_errors


@reports_errors
def evaluate(
    predictions: Annotated[Path, typer.Argument(help="Output folder of hsiseg predict.")],
    spec: Annotated[Path, typer.Option("--spec", "-s", help="Data spec holding the truth.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder.")] = Path("evaluation"),
    split: Annotated[
        str | None, typer.Option(help="Only samples of this split (default: every matching frame).")
    ] = None,
    against: Annotated[
        str, typer.Option(help="truth (dense ground truth) or annotations (sparse scribbles).")
    ] = "truth",
    nsd_tolerance: Annotated[
        float,
        typer.Option(
            "--nsd-tolerance",
            help="Normalised surface Dice: boundary pixels within this many pixels of the other boundary count.",
        ),
    ] = 2.0,
) -> None:
    """Score predictions on annotated pixels at every tree level; write report.md, CSVs, confusion matrices,
    calibration (ECE, reliability.png; needs predict --probabilities) and boundary metrics (NSD, ASD; dense truth)."""
    import math

    from hsiseg.dataset.spec import DataSpec
    from hsiseg.evaluation.report import NO_BOUNDARY, collect, write_report

    if against not in ("truth", "annotations"):
        raise HsisegError(f"--against must be truth or annotations, got {against!r}")
    if not (math.isfinite(nsd_tolerance) and nsd_tolerance >= 0):
        raise HsisegError(f"--nsd-tolerance must be a finite number of pixels >= 0, got {nsd_tolerance:g}")
    evaluation = collect(predictions, DataSpec.from_file(spec), split, against, nsd_tolerance)
    summary = write_report(evaluation, output)
    for level in range(1, evaluation.tree.depth + 1):
        numbers = summary[f"level_{level}"]
        typer.echo(
            f"level {level}: accuracy {numbers['accuracy']:.3f}, balanced {numbers['balanced_accuracy']:.3f}, "
            f"mean Dice {numbers['mean_dice']:.3f}"
        )
    boundary = summary["boundary"]
    if boundary["images"]:
        for level in range(1, evaluation.tree.depth + 1):
            numbers = summary[f"level_{level}"]
            typer.echo(
                f"level {level} boundaries ({boundary['images']} images): mean NSD "
                f"({nsd_tolerance:g} px) {numbers['mean_nsd']:.3f}, mean ASD {numbers['mean_asd']:.3f} px, "
                f"{numbers['asd_inf']} classes missed (ASD inf)"
            )
    else:
        typer.echo(f"{NO_BOUNDARY} (use --against truth with a spec that has it); no NSD or ASD")
    calibration = summary["calibration"]
    if calibration["available"]:
        typer.echo(
            f"calibration: ECE {calibration['ece']:.4f} over {calibration['pixels']} pixels "
            f"({calibration['bins']} bins); reliability diagram: {output / 'reliability.png'}"
        )
    else:
        typer.echo(calibration["note"])
    ood = summary["unknown_tissue"]
    typer.echo(f"predicted unknown {ood['unknown_share']:.1%}, invalid {ood['invalid_share']:.1%} of scored pixels")
    for name, numbers in ood.get("scores", {}).items():
        figures = f"AUROC {numbers['auroc']:.3f}, AUPR {numbers['aupr']:.3f}, FPR@95%TPR {numbers['fpr_at_95_tpr']:.3f}"
        typer.echo(f"unknown tissue ({', '.join(ood['held_out_classes'])} never trained on), {name}: {figures}")
    typer.echo(f"mistake severity {summary['severity']['mean_distance']:.3f}; report: {output / 'report.md'}")
