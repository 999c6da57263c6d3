"""``hsiseg train``: train a network on a data spec with any hsiseg loss."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cli.cube_commands import parse_options
from cli.errors import reports_errors
from hsiseg.train import TrainConfig, train


class RichReporter:
    """A progress bar over all steps with loss, patches/s and ETA, and one line per epoch."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[speed]:.0f} patches/s"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=self.console,
        )  # fmt: skip
        self.task = None

    def start(self, epochs: int, first_epoch: int, steps_per_epoch: int) -> None:
        self.progress.start()
        self.steps_per_epoch = steps_per_epoch
        total = (epochs - first_epoch) * steps_per_epoch
        self.task = self.progress.add_task("train", total=total, epoch=first_epoch + 1, loss=float("nan"), speed=0.0)

    def step(self, epoch: int, step: int, loss: float, patches_per_second: float) -> None:
        self.progress.update(self.task, advance=1, epoch=epoch + 1, loss=loss, speed=patches_per_second)

    def epoch_end(self, row: dict[str, Any]) -> None:
        self.progress.console.print(
            f"epoch {row['epoch'] + 1}: loss {row['train_loss']:.4f}, val leaf acc {row['leaf_accuracy']:.3f}, "
            f"top-level acc {row['top_accuracy']:.3f}, mean Dice {row['mean_dice']:.3f} ({row['seconds']:.1f} s)"
        )

    def message(self, text: str) -> None:
        self.progress.console.print(text)

    def stop(self) -> None:
        self.progress.stop()


class JsonLinesReporter:
    """One JSON object per epoch on stdout (for batch systems)."""

    def start(self, epochs: int, first_epoch: int, steps_per_epoch: int) -> None:
        pass

    def step(self, epoch: int, step: int, loss: float, patches_per_second: float) -> None:
        pass

    def epoch_end(self, row: dict[str, Any]) -> None:
        typer.echo(json.dumps(row))

    def message(self, text: str) -> None:
        typer.echo(json.dumps({"message": text}))


@reports_errors
def train_command(
    spec: Annotated[Path, typer.Argument(help="Data spec (YAML/JSON).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder (checkpoints, metrics, curves).")],
    loss: Annotated[str, typer.Option(help="Loss: ce, dice-ce, tree-wasserstein, tree-gwdl, tree-ce.")] = "tree-ce",
    top_level_weight: Annotated[float | None, typer.Option(help="tree-ce: weight of the top level.")] = None,
    level_weights: Annotated[
        str | None, typer.Option(help="tree-ce: comma-separated weights, top level first.")
    ] = None,
    alpha: Annotated[float | None, typer.Option(help="tree-wasserstein: weight of the CE term.")] = None,
    beta: Annotated[float | None, typer.Option(help="tree-wasserstein: weight of the Wasserstein term.")] = None,
    loss_option: Annotated[list[str] | None, typer.Option("--loss-option", help="Any loss option KEY=VALUE.")] = None,
    model: Annotated[str, typer.Option(help="Network: unet, or smp-<architecture>.")] = "unet",
    width: Annotated[int, typer.Option(help="U-Net width (channels of the first level).")] = 32,
    depth: Annotated[int, typer.Option(help="U-Net depth (resolution levels).")] = 4,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 20,
    batch_size: Annotated[int, typer.Option(help="Patches per step (per process).")] = 8,
    patch_size: Annotated[int, typer.Option(help="Side of square training patches.")] = 64,
    patches_per_epoch: Annotated[int | None, typer.Option(help="Default: 8 per training image.")] = None,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 2e-3,
    fold: Annotated[int, typer.Option(help="Which fold of the spec's splits.")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA if available), cpu, cuda, cuda:1, ...")] = "auto",
    amp: Annotated[bool, typer.Option(help="Mixed precision on CUDA (bf16 where supported, else fp16).")] = True,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the network.")] = False,
    workers: Annotated[int, typer.Option(help="Data-loader worker processes.")] = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --output exactly where it stopped.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON line per epoch on stdout.")] = False,
) -> None:
    """Train a network on the spec's training split; validate on annotated pixels of its validation split."""
    options = parse_options(loss_option)
    for key, value in (("top_level_weight", top_level_weight), ("alpha", alpha), ("beta", beta)):
        if value is not None:
            options[key] = value
    if level_weights is not None:
        options["level_weights"] = [float(v) for v in level_weights.split(",")]
    model_options = {"width": width, "depth": depth} if model == "unet" else {}
    config = TrainConfig(
        loss=loss, loss_options=options, model=model, model_options=model_options,
        epochs=epochs, batch_size=batch_size, patch_size=patch_size, patches_per_epoch=patches_per_epoch,
        learning_rate=lr, fold=fold, seed=seed, device=device, amp=amp, compile=compile, workers=workers,
    )  # fmt: skip
    reporter = JsonLinesReporter() if jsonl else (None if quiet else RichReporter())
    try:
        train(spec, output, config, resume=resume, reporter=reporter)
    finally:
        if isinstance(reporter, RichReporter):
            reporter.stop()
    if not jsonl:
        typer.echo(f"run folder: {output} (best checkpoint: {output / 'checkpoints' / 'best.json'})")
