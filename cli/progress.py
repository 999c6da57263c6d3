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


class FrameBar:
    """A bar of frames with frames/s and ETA, shown only once the run knows its frames (:meth:`start`): an
    error before that (a missing model, a refused option) prints alone, without an empty bar above it."""

    def __init__(self, console: Console, label: str = "frames") -> None:
        self.progress = Progress(
            TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]:.2f} frames/s"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
        )  # fmt: skip
        self.task = self.progress.add_task(label, total=None, rate=0.0)
        self.started = time.perf_counter()

    def start(self, total: int) -> None:
        self.progress.update(self.task, total=total)
        self.started = time.perf_counter()  # frames/s counts from here, not from loading the model
        self.progress.start()

    def advance(self) -> None:
        done = self.progress.tasks[self.task].completed + 1
        self.progress.update(self.task, advance=1, rate=done / max(1e-9, time.perf_counter() - self.started))

    def print(self, text: str) -> None:
        self.progress.console.print(text, soft_wrap=True)

    def __enter__(self) -> FrameBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


def run_prediction(
    model: Path, inputs: list[Path], output: Path, options: PredictOptions, console: Console
) -> list[FrameResult]:
    """Predict with a progress bar; failed frames are printed as they happen."""
    with FrameBar(console) as bar:

        def on_frame(result: FrameResult) -> None:
            bar.advance()
            if result.status == "failed":
                hint = MAX_CUBE_HINT if "max_bytes" in result.error else ""
                bar.print(f"[red]failed[/]: {result.frame}: {result.error}{hint}")
            if result.status in ("done", "failed"):
                for text in result.warnings:
                    bar.print(f"[yellow]warning[/]: {result.frame}: {text}")

        return predict_batch(model, inputs, output, options, on_frame, bar.start)


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
        if self.task is not None:  # never started: stopping would print an empty line before an error
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
