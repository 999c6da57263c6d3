"""A prediction run's options, split by concern, each group checked before any file is read.

- :class:`InferenceOptions`: how the network runs and which pixels are unknown (files and recordings alike);
- :class:`ExistingOutputs`: what to do with outputs already there (``--continue``, ``--overwrite``);
- :class:`RunOptions`: both, plus the reader's options: everything a recording run needs;
- :class:`FrameFileOptions`: what each frame folder of a batch run holds besides the maps;
- :class:`PredictOptions`: a batch run over files of cubes (all of the above, and the parts of the work).

Library errors name the parameter (``ood_threshold must be a finite number, got nan``); the CLI knows flags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from hsiseg.devices import resolve_device
from hsiseg.errors import HsisegError
from hsiseg.ood import OOD_SCORES
from hsiseg.option_checks import in_range, whole_number
from hsiseg.render.colour import RGB_METHODS

MAX_OVERLAP = 0.9  # sliding windows overlapping by more multiply the work (0.95: 400 times the windows of 0)


@dataclass
class InferenceOptions:
    """How the network runs (windows, test-time flips, device) and which pixels are unknown."""

    tile: int = 256
    overlap: float = 0.25
    batch_size: int = 4
    flip_tta: bool = False
    ood_score: str | None = None  # None: the card's default score
    ood_threshold: float | None = None  # None: the calibrated threshold
    rgb_method: str = "auto"
    device: str = "cpu"

    def check_inference(self) -> None:
        whole_number(self.tile, "tile", 16)
        in_range(self.overlap, "overlap", 0, MAX_OVERLAP)
        whole_number(self.batch_size, "batch_size", 1)
        if self.ood_threshold is not None:
            in_range(self.ood_threshold, "ood_threshold")
        if self.ood_score is not None:
            OOD_SCORES.check(self.ood_score)
        if self.rgb_method not in RGB_METHODS:
            raise HsisegError(f"rgb_method must be one of {', '.join(RGB_METHODS)}, got {self.rgb_method!r}")
        resolve_device(self.device)


@dataclass
class ExistingOutputs:
    """``resume``: finish what an earlier run with the same model and options left; ``overwrite``: redo it."""

    overwrite: bool = False
    resume: bool = False


@dataclass
class RunOptions(InferenceOptions, ExistingOutputs):
    """Everything a prediction run of any source needs: inference, existing outputs, the reader's options."""

    reader_options: dict[str, Any] = field(default_factory=dict)
    workers: int | None = None  # threads that read (and as many that write) frames; None: default_workers(device)

    def check(self) -> None:
        """Every option, before any file is read: one :class:`HsisegError` naming the first bad one."""
        self.check_inference()
        if self.workers is not None:
            whole_number(self.workers, "workers", 1, 64)

    def pipeline_workers(self) -> int:
        """The threads that read and write frames: ``workers``, or :func:`default_workers` for the device."""
        return self.workers if self.workers is not None else default_workers(self.device)


def default_workers(device: str) -> int:
    """Frames read (and written) side by side when not said: 1 on a CPU, whose cores the network's own threads
    take; with an accelerator, half the cores up to 8, since reading, normalising and writing a frame then take
    longer than its network pass (measured on an H200: one reader kept the GPU at 2.5 frames/s)."""
    if resolve_device(device).type == "cpu":
        return 1
    return max(1, min(8, (os.cpu_count() or 2) // 2))


@dataclass
class FrameFileOptions:
    """What each frame folder holds besides the maps: a tree level, confident nodes, probabilities, overlays."""

    level: int | None = None
    confidence: float | None = None
    save_probabilities: bool = False
    opacity: float = 0.5
    contours: bool = False
    animation: bool = False  # also write overview.gif and overview.mp4: the frames' panels in order

    def check_frame_files(self) -> None:
        if self.level is not None:
            whole_number(self.level, "level", 1)
        if self.confidence is not None:
            in_range(self.confidence, "confidence", 0, 1, low_open=True)
        in_range(self.opacity, "opacity", 0, 1)


@dataclass
class PredictOptions(FrameFileOptions, RunOptions):
    """Everything that shapes a batch run over files of cubes (saved as ``args.json``); ``num_parts`` /
    ``part_id`` split the frames between machines."""

    num_parts: int = 1
    part_id: int = 0

    def check(self) -> None:
        super().check()
        self.check_frame_files()
        whole_number(self.num_parts, "num_parts", 1)
        whole_number(self.part_id, "part_id", 0, self.num_parts - 1)
