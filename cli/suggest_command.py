"""``hsiseg suggest``: where to scribble next, for the samples of a data spec."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .errors import reports_errors


@reports_errors
def suggest(
    model: Annotated[Path, typer.Argument(help="Model card of a trained checkpoint (runs/x/checkpoints/final.json).")],
    spec: Annotated[Path, typer.Argument(help="Data spec whose samples (and strokes so far) to look at.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the suggestions (JSON and pictures).")],
    sample: Annotated[list[str] | None, typer.Option(help="Only this sample id (repeatable; default: all).")] = None,
    count: Annotated[int, typer.Option(help="Regions to suggest per image.")] = 10,
    strategy: Annotated[str, typer.Option(help="mix (the default), uncertainty, random, grid or stratified.")] = "mix",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same suggestions).")] = 0,
) -> None:
    """Rank stroke-sized regions of each image by what a stroke there would teach the model (low margin between
    classes, unlike the scribbled classes, a class with few strokes), with the reasons and, where the two most
    likely classes are siblings, their parent as an accepted label. Writes OUT/<sample>.json and a picture."""
    from hsiseg.active.files import suggest_for_spec
    from hsiseg.active.suggest import STRATEGIES
    from hsiseg.errors import HsisegError

    if strategy not in STRATEGIES:
        raise HsisegError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if count < 1:
        raise HsisegError(f"--count must be >= 1, got {count}")
    written = suggest_for_spec(model, spec, output, sample, count, strategy, seed,
                               on_sample=lambda name: typer.echo(f"suggested regions for {name}"))  # fmt: skip
    typer.echo(f"wrote {len(written)} suggestion files and pictures to {output}")
