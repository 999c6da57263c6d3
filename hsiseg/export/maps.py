"""Read access to a streaming run's ``maps.h5``, as the exporters see it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np

from hsiseg.areas import column_code
from hsiseg.tree import LabelTree


@dataclass
class StreamMaps:
    """Read access to a streaming run's ``maps.h5``: frames that are done, in order, one at a time."""

    path: Path

    @cached_property
    def _attributes(self) -> dict:
        with h5py.File(self.path, "r") as handle:
            return {key: handle.attrs[key] for key in handle.attrs} | {
                "frame": handle["frame"][()], "timestamp": handle["timestamp"][()], "done": handle["done"][()],
                "pixels": handle["pixels"][()],
            }  # fmt: skip

    @cached_property
    def tree(self) -> LabelTree:
        return LabelTree.from_dict(json.loads(self._attributes["label_tree"]), source=f"{self.path} (label_tree)")

    @property
    def slots(self) -> np.ndarray:
        """(K,) row numbers of the frames that are done."""
        return np.flatnonzero(self._attributes["done"])

    @property
    def frames(self) -> np.ndarray:
        """(K,) recording indices of the done frames."""
        return self._attributes["frame"][self.slots]

    @property
    def timestamps(self) -> np.ndarray:
        """(K,) seconds (NaN where the recording has none)."""
        return self._attributes["timestamp"][self.slots]

    @property
    def pixels(self) -> np.ndarray:
        """(K, 2 + C) counts of invalid, unknown and each leaf per done frame."""
        return self._attributes["pixels"][self.slots]

    @property
    def selected(self) -> int:
        """Frames the run selected (done or not)."""
        return len(self._attributes["done"])

    @property
    def recording(self) -> str:
        return str(self._attributes.get("recording", ""))

    @property
    def model_sha256(self) -> str:
        return str(self._attributes.get("model_sha256", ""))

    @property
    def ood_score(self) -> str:
        """The unknown-tissue score the run used ("" when none was calibrated)."""
        return str(self._attributes.get("ood_score", ""))

    def per_frame(self) -> dict[str, np.ndarray]:
        """What the recorder wrote per frame (``exposure_us``, ``acq_nframe``, ``temperature_*``): (N,) float64,
        NaN where unknown; ``{}`` for recordings without it."""
        with h5py.File(self.path, "r") as handle:
            recorded = [name for name in handle if name in RECORDED or name.startswith("temperature_")]
            return {name: handle[name][()].astype(np.float64) for name in recorded}

    @property
    def notes(self) -> list[str]:
        """What the recording lacks or changes (time stamps, exposure, dropped frames; ``[]`` for older files)."""
        try:
            return [str(note) for note in json.loads(str(self._attributes.get("notes", "[]")))]
        except ValueError:
            return []

    @property
    def ood_promise(self) -> str:
        """What the run's unknown-tissue map promises (:func:`hsiseg.ood.trust.promise`; "" for older files)."""
        return str(self._attributes.get("ood_promise", ""))

    def messages(self, kind: str) -> dict[int, list[str]]:
        """``warnings`` or ``failures``: recording frame index -> messages (frames that have any)."""
        with h5py.File(self.path, "r") as handle:
            rows = handle[kind].asstr()[()]
            frames = handle["frame"][()]
        return {int(frame): json.loads(row) for frame, row in zip(frames, rows, strict=True) if row}

    def present_codes(self) -> list[int]:
        """Codes drawn anywhere in the run (leaves, UNKNOWN -1, INVALID -2), most pixels first."""
        totals = self.pixels.sum(axis=0)
        order = np.argsort(-totals, kind="stable")
        return [column_code(int(i)) for i in order if totals[i] > 0]

    def iterate(self):
        """(slot, frame index, timestamp, image, labels) of every done frame, reading one at a time."""
        with h5py.File(self.path, "r") as handle:
            for slot, frame, stamp in zip(self.slots, self.frames, self.timestamps, strict=True):
                yield int(slot), int(frame), float(stamp), handle["rgb"][slot], handle["labels"][slot]


RECORDED = ("exposure_us", "acq_nframe")  # per-frame datasets from the recorder, besides temperature_*


def frame_label(frame: int, stamp: float) -> str:
    """``frame 12, 0:00.48`` (with the time stamp when the recording has one)."""
    if np.isnan(stamp):
        return f"frame {frame}"
    minutes, seconds = divmod(stamp, 60)
    return f"frame {frame}, {int(minutes)}:{seconds:05.2f}"
