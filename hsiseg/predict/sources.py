"""Frame sources of the prediction pipeline (:mod:`hsiseg.predict.pipeline`): cube files, recording frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsiseg.errors import HsisegError
from hsiseg.io import read_cube
from hsiseg.io.cube import Cube
from hsiseg.io.recording import MosaicVideo
from hsiseg.predict.pipeline import FrameId


@dataclass
class CubeFiles:
    """Cube files, read with ``reader_options`` (the frame's ``source`` is the path)."""

    reader_options: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def frames(named: list[tuple[str, Path]]) -> list[FrameId]:
        """(frame name, cube path) pairs as the pipeline's frames."""
        return [FrameId(name, str(path), slot) for slot, (name, path) in enumerate(named)]

    def load(self, frame: FrameId) -> Cube:
        return read_cube(frame.source, **self.reader_options)


@dataclass
class RecordingFrames:
    """Frames of a snapshot-mosaic recording, calibrated and demosaicked; every frame must have ``shape``."""

    video: MosaicVideo
    shape: tuple[int, int]

    def frames(self, todo: list[tuple[int, int]]) -> list[FrameId]:
        """(slot, recording index) pairs as the pipeline's frames."""
        path = self.video.recording.path
        return [FrameId(str(index), f"{path}#{index}", slot, index) for slot, index in todo]

    def load(self, frame: FrameId) -> Cube:
        cube = self.video.cube(frame.index)
        if cube.shape[:2] != tuple(self.shape):
            height, width = self.shape
            raise HsisegError(f"{cube.meta['source']}: frame of {cube.shape[0]} x {cube.shape[1]} pixels after "
                              f"demosaicking, the recording's others have {height} x {width}")  # fmt: skip
        return cube
