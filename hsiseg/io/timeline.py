"""A recording's time line and acquisition record, from what the recorder wrote, and notes on what is missing.

The DKFZ XiLens recorder (``src/util.cpp``, ``src/constants.h``) appends frames to a ``.b2nd`` file and,
when the file is closed, writes one msgpack list per key into its ``vlmeta``:

=============================  ====================  ==============================================================
key                            values                read as
=============================  ====================  ==============================================================
``time_stamp``                 text, local time      seconds since the first frame; format ``yyyyMMdd_hh-mm-ss-zzz``
                                                     (Qt), e.g. ``20241115_14-40-59-871``
``exposure_us``                integers              exposure per frame (microseconds): calibration scales by
                                                     the white reference's exposure over the frame's
``acq_nframe``                 integers              the camera's frame counter: a jump of more than 1 is a
                                                     dropped frame
``temperature_*``              floats                sensor temperatures (xiSpec cameras), kept per frame
``color_filter_array``         text                  kept in the metadata
=============================  ====================  ==============================================================

Numeric stamps in seconds (``timestamps``, ``time_stamps``, ``timestamp``) are read too. A file the recorder
resumed (it appends to a file of the same name, and a crashed second session leaves more frames than stamps)
keeps the stamps that exist, the rest NaN, with a note; a file whose recorder crashed before closing it has
no metadata at all, and says so. Notes are one line each, for the user (printed, and kept in ``maps.h5``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.errors import HsisegError

SECONDS_KEYS = ("timestamps", "time_stamps", "timestamp")
TEXT_STAMP_KEY = "time_stamp"
TEXT_STAMP_FORMAT = "%Y%m%d_%H-%M-%S-%f"  # Qt's "yyyyMMdd_" + "hh-mm-ss-zzz" (zzz: milliseconds)
EXPOSURE_KEY = "exposure_us"
FRAME_NUMBER_KEY = "acq_nframe"
TEMPERATURE_PREFIX = "temperature_"
RECORDER_KEYS = (TEXT_STAMP_KEY, EXPOSURE_KEY, FRAME_NUMBER_KEY)
TEMPERATURE_JUMP = 1.0  # degrees between consecutive frames worth marking


@dataclass
class Timeline:
    """Per frame (N,): ``seconds`` since the first stamped frame (NaN where unknown; None: no stamps at all),
    ``exposure_us`` (NaN where unknown; None: none recorded), the camera's ``frame_numbers`` (None: not
    recorded), ``temperatures`` by sensor name, and ``notes`` on what is missing or odd."""

    frames: int
    seconds: np.ndarray | None = None
    exposure_us: np.ndarray | None = None
    frame_numbers: np.ndarray | None = None
    temperatures: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        """Frames the camera counted but the file does not hold (jumps of the frame counter)."""
        if self.frame_numbers is None or self.frames < 2:
            return 0
        steps = np.diff(self.frame_numbers[np.isfinite(self.frame_numbers)])
        return int(np.clip(steps - 1, 0, None).sum())

    def exposure_range(self) -> tuple[float, float] | None:
        if self.exposure_us is None or not np.isfinite(self.exposure_us).any():
            return None
        return float(np.nanmin(self.exposure_us)), float(np.nanmax(self.exposure_us))


    def per_frame(self) -> dict[str, np.ndarray]:
        """Datasets for a maps file: (N,) float64 per recorded quantity (NaN where unknown)."""
        columns = {"exposure_us": self.exposure_us, "acq_nframe": self.frame_numbers}
        columns.update({f"temperature_{name}": values for name, values in self.temperatures.items()})
        return {name: values for name, values in columns.items() if values is not None}

    def marks(self) -> dict[int, list[str]]:
        """Frame index -> what changed at that frame: an exposure change, a sensor temperature jump of more
        than :data:`TEMPERATURE_JUMP` degrees since the previous frame, frames dropped just before it."""
        marks: dict[int, list[str]] = {}
        for index in range(1, self.frames):
            found = [*self._exposure_change(index), *self._temperature_jumps(index), *self._drop(index)]
            if found:
                marks[index] = found
        return marks

    def _exposure_change(self, index: int) -> list[str]:
        if self.exposure_us is None:
            return []
        before, now = self.exposure_us[index - 1], self.exposure_us[index]
        changed = np.isfinite(before) and np.isfinite(now) and before != now
        return [f"exposure changed from {before:g} to {now:g} us"] if changed else []

    def _temperature_jumps(self, index: int) -> list[str]:
        jumps = []
        for name, values in self.temperatures.items():
            step = values[index] - values[index - 1]
            if np.isfinite(step) and abs(step) > TEMPERATURE_JUMP:
                jumps.append(f"{name} temperature jumped by {step:+.1f} degrees to {values[index]:.1f}")
        return jumps

    def _drop(self, index: int) -> list[str]:
        if self.frame_numbers is None:
            return []
        step = self.frame_numbers[index] - self.frame_numbers[index - 1]
        return [f"{_frames(int(step) - 1)} dropped before this one"] if np.isfinite(step) and step > 1 else []


def read_timeline(meta: dict[str, Any], frames: int, path: Path, recorder_file: bool = False) -> Timeline:
    """The time line of a recording of ``frames`` frames whose metadata is ``meta``. ``recorder_file``: the
    format always carries metadata when the recorder closed the file (a ``.b2nd``), so none is worth a note."""
    timeline = Timeline(frames)
    if recorder_file and not any(key in meta for key in (*RECORDER_KEYS, *SECONDS_KEYS)):
        timeline.notes.append(f"{path}: no metadata (time stamps, exposure): the recorder writes it when it closes "
                              "the file, so this recording was probably not closed (a crash); frames are numbered "
                              "in file order and calibrated at the references' exposure")  # fmt: skip
    timeline.seconds = _seconds(meta, frames, path, timeline.notes)
    timeline.exposure_us = _numbers(meta, EXPOSURE_KEY, frames, path, timeline.notes)
    timeline.frame_numbers = _numbers(meta, FRAME_NUMBER_KEY, frames, path, timeline.notes)
    for key in sorted(k for k in meta if k.startswith(TEMPERATURE_PREFIX)):
        values = _numbers(meta, key, frames, path, timeline.notes)
        if values is not None:
            timeline.temperatures[key[len(TEMPERATURE_PREFIX) :]] = values
    if timeline.dropped:
        skipped = _frames(timeline.dropped)
        timeline.notes.append(f"{path}: the camera's frame counter ({FRAME_NUMBER_KEY}) skips {skipped}: frames "
                              "were dropped while recording")  # fmt: skip
    return timeline


def _frames(count: int) -> str:
    return f"{count} frame" if count == 1 else f"{count} frames"


def parse_stamp(text: str) -> datetime:
    """``20241115_14-40-59-871`` -> datetime (local time, as the recorder wrote it)."""
    return datetime.strptime(text.strip(), TEXT_STAMP_FORMAT)


def _seconds(meta: dict[str, Any], frames: int, path: Path, notes: list[str]) -> np.ndarray | None:
    for key in SECONDS_KEYS:
        if key in meta:
            values = _numbers(meta, key, frames, path, notes)
            if values is not None and not np.isfinite(values).any():
                return None
            return values
    if TEXT_STAMP_KEY not in meta:
        return None
    stamps = _aligned(meta[TEXT_STAMP_KEY], frames, TEXT_STAMP_KEY, path, notes)
    if stamps is None:
        return None
    parsed = [_parse_or_none(value) for value in stamps]
    unreadable = sum(stamp is None for stamp, value in zip(parsed, stamps, strict=True) if value is not None)
    if unreadable:
        notes.append(f"{path}: {unreadable} '{TEXT_STAMP_KEY}' values are not in the recorder's format "
                     "yyyyMMdd_hh-mm-ss-zzz; those frames have no time")  # fmt: skip
    known = [stamp for stamp in parsed if stamp is not None]
    if not known:
        return None
    first = known[0]
    return np.array([(stamp - first).total_seconds() if stamp else np.nan for stamp in parsed])


def _parse_or_none(value: Any) -> datetime | None:
    try:
        return parse_stamp(str(value)) if value is not None else None
    except ValueError:
        return None


def _numbers(meta: dict[str, Any], key: str, frames: int, path: Path, notes: list[str]) -> np.ndarray | None:
    """(frames,) float64 of ``meta[key]``, NaN where missing or not finite; None when absent."""
    values = _aligned(meta.get(key), frames, key, path, notes)
    if values is None:
        return None
    try:
        numbers = np.array([np.nan if value is None else float(value) for value in values])
    except (TypeError, ValueError):
        raise HsisegError(f"{path}: metadata {key!r} holds values that are not numbers") from None
    broken = int((~np.isfinite(numbers)).sum() - sum(value is None for value in values))
    if broken:
        notes.append(f"{path}: metadata {key!r} holds {broken} values that are not finite numbers; those frames "
                     "have none")  # fmt: skip
        numbers[~np.isfinite(numbers)] = np.nan
    return numbers


def _aligned(values: Any, frames: int, key: str, path: Path, notes: list[str]) -> list[Any] | None:
    """A per-frame list, padded with None (a resumed file whose later session crashed) or cut to ``frames``."""
    if values is None:
        return None
    if not isinstance(values, list | tuple):
        values = [values] if frames == 1 else None
        if values is None:
            notes.append(f"{path}: metadata {key!r} is one value, not one per frame; ignored")
            return None
    values = list(values)
    if len(values) < frames:
        notes.append(f"{path}: metadata {key!r} covers {len(values)} of {frames} frames (a recording resumed "
                     "into the same file whose later session did not close it); the rest have none")  # fmt: skip
        return values + [None] * (frames - len(values))
    if len(values) > frames:
        notes.append(f"{path}: metadata {key!r} has {len(values)} values for {frames} frames; the extra ones are "
                     "ignored")  # fmt: skip
    return values[:frames]


def seconds_or_none(values: np.ndarray | None) -> list[float] | None:
    """The per-frame seconds as a list (NaN where unknown), or None when no frame has a time."""
    if values is None or not any(math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values]
