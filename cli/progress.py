"""Progress on the terminal: frame bars for prediction, training reporters (rich, or JSON lines)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from hsiseg.predict import FrameResult, PredictOptions, predict_batch

from .options import MAX_CUBE_HINT


def frame_progress(console: Console, total: int, label: str = "frames") -> Progress:
    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]:.2f} frames/s"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
    )  # fmt: skip


def run_prediction(
    model: Path, inputs: list[Path], output: Path, options: PredictOptions, console: Console
) -> list[FrameResult]:
    """Predict with a progress bar; failed frames are printed as they happen."""
    started = time.perf_counter()
    with frame_progress(console, 0) as progress:
        task = progress.add_task("frames", total=None, rate=0.0)

        def on_frame(result: FrameResult) -> None:
            done = progress.tasks[task].completed + 1
            progress.update(task, advance=1, rate=done / max(1e-9, time.perf_counter() - started))
            if result.status == "failed":
                hint = MAX_CUBE_HINT if "max_bytes" in result.error else ""
                progress.console.print(f"[red]failed[/]: {result.frame}: {result.error}{hint}", soft_wrap=True)
            if result.status in ("done", "failed"):
                for text in result.warnings:
                    progress.console.print(f"[yellow]warning[/]: {result.frame}: {text}", soft_wrap=True)

        return predict_batch(model, inputs, output, options, on_frame, lambda total: progress.update(task, total=total))


class RichReporter:
    """A progress bar over all steps with loss, items/s and ETA, and one line per validation round."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("step"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[speed]:.0f} items/s"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=self.console,
        )  # fmt: skip
        self.task: TaskID | None = None

    def start(self, total_steps: int, first_step: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=total_steps, completed=first_step, loss=float("nan"), speed=0.0
        )

    def step(self, step: int, loss: float, items_per_second: float) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=step + 1, loss=loss, speed=items_per_second)

    def round_end(self, row: dict[str, Any]) -> None:
        self.progress.console.print(
            f"step {row['step']}: loss {row['train_loss']:.4f}, held-out leaf acc {row['leaf_accuracy']:.3f}, "
            f"top-level acc {row['top_accuracy']:.3f}, mean Dice {row['mean_dice']:.3f} ({row['seconds']:.1f} s)"
        )

    def message(self, text: str) -> None:
        self.progress.console.print(text)

    def stop(self) -> None:
        self.progress.stop()


class JsonLinesReporter:
    """One JSON object per validation round on stdout (for batch systems)."""

    def start(self, total_steps: int, first_step: int) -> None:
        pass

    def step(self, step: int, loss: float, items_per_second: float) -> None:
        pass

    def round_end(self, row: dict[str, Any]) -> None:
        typer.echo(json.dumps(row))

    def message(self, text: str) -> None:
        typer.echo(json.dumps({"message": text}))
