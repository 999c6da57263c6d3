"""``hsiseg info`` for recordings: what a recording holds before it is predicted (frames, size, duration,
exposure, dropped frames, temperatures, metadata keys, notes) and, with its camera file, the decoded geometry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.io.camera import CameraDescription
from hsiseg.io.recording import RECORDING_READERS, MosaicVideo, Recording, open_recording


def describe_recording(path: str | Path, camera: str | Path | None = None) -> dict[str, Any]:
    """A JSON-ready description of the recording at ``path``; with ``camera``, the tiles, bands and
    references as the camera file decodes them."""
    recording = open_recording(path)
    try:
        timeline, first = recording.timeline, recording.raw(0) if len(recording) else None
        seconds = timeline.seconds
        stamped = seconds[np.isfinite(seconds)] if seconds is not None else np.array([])
        duration = float(stamped.max() - stamped.min()) if stamped.size > 1 else None
        summary: dict[str, Any] = {
            "path": str(recording.path), "format": _format(recording), "frames": len(recording),
            "frame_shape": list(first.shape) if first is not None else None,
            "dtype": str(first.dtype) if first is not None else None,
            "value_max": int(first.max()) if first is not None and first.dtype.kind in "ui" else None,
            "duration_s": duration,
            "frames_per_second": (stamped.size - 1) / duration if duration else None,
            "stamped_frames": int(stamped.size), "exposure_us": timeline.exposure_range(),
            "dropped_frames": timeline.dropped,
            "temperatures": {name: [float(np.nanmin(v)), float(np.nanmax(v))] for name, v in
                             timeline.temperatures.items() if np.isfinite(v).any()},
            "metadata_keys": sorted(recording.meta), "notes": list(timeline.notes),
            "file_bytes": _bytes(recording.path),
        }  # fmt: skip
        if camera is not None:
            summary["camera"] = _geometry(MosaicVideo(recording, CameraDescription.from_file(camera)), first)
        return summary
    finally:
        recording.close()


def _geometry(video: MosaicVideo, first: np.ndarray | None) -> dict[str, Any]:
    camera = video.camera
    tiles = camera.tiles(first.shape) if first is not None else None
    wavelengths = video.decoder.wavelengths
    return {
        "name": camera.name, "mosaic": list(camera.mosaic), "tiles": list(tiles) if tiles else None,
        "bands": int(wavelengths.size), "nm": [float(wavelengths.min()), float(wavelengths.max())],
        "calibrated": video.decoder.white is not None, "white_exposure_us": video.white_exposure_us,
        "notes": video.notes[len(video.recording.timeline.notes) :],
    }  # fmt: skip


def _format(recording: Recording) -> str:
    return next((name for name in RECORDING_READERS if RECORDING_READERS[name] is type(recording)), "?")


def _bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size
