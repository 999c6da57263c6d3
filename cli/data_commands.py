"""``hsiseg demo-data``, ``hsiseg check``, ``hsiseg indian-pines``, ``hsiseg real-scene`` and ``hsiseg scribbles``:
data sets, validating a data spec, and simulated scribbles from a dense label image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hsiseg.dataset.spec import DataSpec
from hsiseg.dataset.spec_check import check_spec
from hsiseg.synthetic.dataset import generate_demo_data

from .errors import USER_ERROR_EXIT_CODE, reports_errors


@reports_errors
def demo_data(
    output: Annotated[Path, typer.Argument(help="Folder to write the synthetic surgeries and demo.yaml into.")],
    surgeries: Annotated[int, typer.Option(help="Recorded surgeries (subjects); the last one is the test split.")] = 4,
    frames: Annotated[int, typer.Option(help="Scenes per surgery.")] = 3,
    height: Annotated[int, typer.Option(help="Image height in pixels.")] = 96,
    width: Annotated[int, typer.Option(help="Image width in pixels.")] = 128,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
    partial_fraction: Annotated[float, typer.Option(help="Share of scribbles labelled with the parent node.")] = 0.0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into a folder that has a demo.yaml.")] = False,
    recording: Annotated[
        int, typer.Option(help="Also write a snapshot-mosaic recording of this many frames into OUTPUT/recording.")
    ] = 0,
    scene: Annotated[
        str, typer.Option(help="neurosurgery (the demo, 14 leaves) or rich (100 leaves, long-tailed classes).")
    ] = "neurosurgery",
    sibling_scale: Annotated[
        float, typer.Option(help="rich scene: sibling leaves' spectral spread (< 1 closer, > 1 farther apart).")
    ] = 1.0,
) -> None:
    """Generate physically grounded synthetic surgical HSI scenes (Tivita and ENVI files) with sparse
    scribbles, dense ground truth and a data spec; optionally a short snapshot-mosaic recording (a moving
    instrument, 5 x 5 mosaic, white/dark references, camera file) of the neurosurgery scene."""
    if recording and scene != "neurosurgery":
        typer.echo("hsiseg: error: --recording writes the neurosurgery scene; leave it out with --scene rich", err=True)
        raise typer.Exit(USER_ERROR_EXIT_CODE)
    total = surgeries * frames
    with Progress(
        TextColumn("scenes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True)
    ) as progress:
        task = progress.add_task("scenes", total=total)
        spec = generate_demo_data(
            output,
            surgeries,
            frames,
            (height, width),
            seed,
            partial_fraction=partial_fraction,
            overwrite=overwrite,
            on_scene=lambda _: progress.advance(task),
            scene=scene,
            sibling_scale=sibling_scale,
        )
    typer.echo(f"wrote {total} scenes of {surgeries} surgeries; data spec: {spec}")
    if recording:
        from hsiseg.synthetic.dataset import demo_tree
        from hsiseg.synthetic.recording import write_demo_recording

        video, camera = write_demo_recording(output / "recording", demo_tree(), recording, (height, width), seed + 7)
        typer.echo(f"wrote a {recording}-frame snapshot-mosaic recording {video} (camera: {camera})")


@reports_errors
def check(
    spec: Annotated[Path, typer.Argument(help="Data spec (YAML or JSON).")],
    fold: Annotated[int, typer.Option(help="Which fold's splits to check.")] = 0,
) -> None:
    """Validate a data spec: files exist and read, shapes agree, labels are known, splits are non-empty,
    band counts match. Prints a summary; exits with code 2 and the list of problems when anything is wrong."""
    data_spec = DataSpec.from_file(spec)
    report = check_spec(data_spec, fold)
    console = Console()
    title = f"{data_spec.name}: {len(data_spec.samples)} samples, {data_spec.tree.num_leaves} classes"
    table = Table(title=f"{title}, fold {fold} of {data_spec.num_folds}")
    for column in ("split", "samples", "subjects", "annotated pixels"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for name, facts in report.splits.items():
        table.add_row(name, str(facts["samples"]), str(facts["subjects"]), str(facts["annotated_pixels"]))
    console.print(table)
    classes = Table(title="annotated pixels per class (all samples)")
    classes.add_column("class")
    classes.add_column("pixels", justify="right")
    classes.add_column("images", justify="right")
    totals: dict[str, list[int]] = {}
    for sample in report.samples.values():
        for name, count in sample.label_counts.items():
            entry = totals.setdefault(name, [0, 0])
            entry[0] += count
            entry[1] += 1
    for node in data_spec.tree.nodes:
        if node.name in totals:
            classes.add_row(node.name, str(totals[node.name][0]), str(totals[node.name][1]))
    console.print(classes)
    unannotated = [i for i, facts in report.samples.items() if facts.shape is not None and facts.annotated_pixels == 0]
    if unannotated:
        console.print(f"images without any annotation: {', '.join(unannotated)}")
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if report.problems:
        for problem in report.problems:
            typer.echo(f"problem: {problem}", err=True)
        count = len(report.problems)
        typer.echo(f"hsiseg: error: {spec}: {count} problem{'s' if count != 1 else ''}", err=True)
        raise typer.Exit(USER_ERROR_EXIT_CODE)
    typer.echo(f"{spec}: ok")


@reports_errors
def indian_pines(
    output: Annotated[Path, typer.Argument(help="Folder for the cube, scribbles, truth and indian_pines.yaml.")],
    fraction: Annotated[float, typer.Option(help="Share of the labelled pixels given as scribbles.")] = 0.03,
    stroke_length: Annotated[int, typer.Option(help="Pixels per simulated stroke.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed of the scribble simulation.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing data set in OUTPUT.")] = False,
) -> None:
    """Indian Pines (from the tensorly wheel) with reproducible simulated scribbles and a data spec."""
    from hsiseg.dataset.indian_pines import write_indian_pines

    spec = write_indian_pines(output, fraction, stroke_length, seed, overwrite)
    typer.echo(f"wrote Indian Pines with {fraction:.1%} of the labelled pixels as scribbles; data spec: {spec}")


@reports_errors
def real_scene(
    name: Annotated[str, typer.Argument(help="jasper-ridge, samson, indian-pines or indian-pines-crops.")],
    output: Annotated[Path, typer.Argument(help="Folder for the cube, scribbles, truth, label tree and data spec.")],
    fraction: Annotated[float, typer.Option(help="Share of the labelled pixels given as scribbles.")] = 0.03,
    stroke_length: Annotated[int, typer.Option(help="Pixels per simulated stroke.")] = 8,
    placement: Annotated[
        str, typer.Option(help="Stroke starts: 'area' (by class area) or 'class' (each class in turn).")
    ] = "area",
    seed: Annotated[int, typer.Option(help="Random seed of the scribble simulation.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing data set in OUTPUT.")] = False,
) -> None:
    """A real hyperspectral scene with reproducible simulated scribbles and a data spec (sources: docs/data.md)."""
    from hsiseg.dataset.scenes import write_real_scene

    spec = write_real_scene(name, output, fraction, stroke_length, seed, placement, overwrite)
    typer.echo(f"wrote {name} with {fraction:.1%} of the labelled pixels as scribbles; data spec: {spec}")


@reports_errors
def scribbles(
    truth: Annotated[Path, typer.Argument(help="Dense label image (PNG, TIFF or NPY integers).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Scribble image to write (.png or .npy).")],
    fraction: Annotated[float, typer.Option(help="Share of the labelled pixels to scribble (0 to 1).")] = 0.03,
    held_out: Annotated[
        Path | None, typer.Option(help="Held-out truth to write (default: OUTPUT's name + '_heldout').")
    ] = None,
    stroke_length: Annotated[int, typer.Option(help="Pixels per simulated stroke.")] = 8,
    min_strokes: Annotated[int, typer.Option(help="Strokes every class present gets at least.")] = 1,
    ignore_value: Annotated[int, typer.Option(help="Value of unlabelled pixels, in TRUTH and in both outputs.")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same scribbles).")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
) -> None:
    """Simulate scribbles on a dense label image: writes the scribbles and the held-out rest of the truth
    (disjoint; both keep TRUTH's values, IGNORE_VALUE = unlabelled), for training on the first and scoring on
    the second."""
    from hsiseg.annotations.simulate import write_simulated_scribbles
    from hsiseg.errors import OutputExistsError

    try:
        written = write_simulated_scribbles(
            truth, output, fraction, held_out, stroke_length, seed, min_strokes, ignore_value, overwrite
        )
    except OutputExistsError as error:
        raise OutputExistsError(f"{error} (--overwrite)") from None
    share = written.scribbled_pixels / max(1, written.labelled_pixels)
    typer.echo(
        f"wrote {written.scribbled_pixels} scribbled pixels ({share:.1%} of {written.labelled_pixels} labelled) to "
        f"{written.scribbles}; held-out truth: {written.held_out}"
    )
