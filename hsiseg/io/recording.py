"""Recordings of raw snapshot-mosaic frames, read lazily frame by frame, and turned into cubes.

==============  ==========================================  ================================================
format          files                                       notes
==============  ==========================================  ================================================
``b2nd``        ``.b2nd`` (XiLens; Blosc2 N-d array)        frames on axis 0; ``vlmeta`` kept as metadata,
                                                            ``timestamps`` / ``time_stamps`` read as seconds
``npy``         ``.npy`` stack (N, H, W)                    memory-mapped
``hdf5``        ``.h5``/``.hdf5`` dataset (N, H, W)          option ``dataset`` (default: the only 3-D one)
``frames``      a folder of 16-bit ``.png``/``.tif`` frames  frames in name order
==============  ==========================================  ================================================

A reader is a class registered in :data:`RECORDING_READERS`; :func:`open_recording` picks one from the
path. ``Recording.raw(i)`` reads frame ``i`` only (memory stays flat in the number of frames);
:class:`MosaicVideo` adds the camera (:mod:`hsiseg.io.camera`) and demosaicking (:mod:`hsiseg.io.mosaic`):
``video.cube(i)`` is a calibrated :class:`~hsiseg.io.cube.Cube`. A frame that cannot be read (a truncated
or corrupt file) is a :class:`HsisegError` naming the file and the frame; the frames before it stay readable.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.io.camera import CameraDescription
from hsiseg.io.cube import Cube
from hsiseg.io.images import load_image
from hsiseg.io.mosaic import MosaicDecoder, active_region
from hsiseg.io.timeline import Timeline, read_timeline, seconds_or_none
from hsiseg.registry import Registry

FRAME_EXTENSIONS = (".png", ".tif", ".tiff")


class Recording:
    """A sequence of raw (H, W) frames with file metadata and the time line read from it
    (:mod:`hsiseg.io.timeline`: per-frame seconds, exposure, frame counter, temperatures, notes)."""

    path: Path
    meta: dict[str, Any]
    timeline: Timeline

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def timestamps(self) -> list[float] | None:
        """Seconds since the first stamped frame per frame (NaN where unknown); None without any stamp."""
        return seconds_or_none(self.timeline.seconds)

    def _read_timeline(self, recorder_file: bool = False) -> None:
        self.timeline = read_timeline(self.meta, len(self), self.path, recorder_file)

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as stored (H, W); subclasses implement it."""
        raise NotImplementedError

    def raw(self, index: int) -> np.ndarray:
        """Frame ``index`` (H, W), or an :class:`HsisegError` naming the file and frame."""
        if not 0 <= index < len(self):
            raise HsisegError(f"{self.path}: frame {index} does not exist (the recording has {len(self)})")
        try:
            frame = np.asarray(self.read(index))
        except HsisegError:
            raise
        except Exception as error:  # noqa: BLE001 - decompression libraries raise their own types
            raise HsisegError(f"{self.path}: frame {index} cannot be read ({type(error).__name__}: {error})"
                              .splitlines()[0]) from None  # fmt: skip
        if frame.ndim != 2 or frame.dtype.kind not in "uif":
            raise HsisegError(f"{self.path}: frame {index} is not a 2-D raw frame (shape {frame.shape}, "
                              f"{frame.dtype})")  # fmt: skip
        return frame

    def close(self) -> None:
        """Release the file (readers that hold one open override this)."""

    def mean_frame(self) -> np.ndarray:
        """(H, W) float32 average of every frame (white and dark references)."""
        total = np.zeros(self.raw(0).shape, dtype=np.float64)
        for index in range(len(self)):
            total += self.raw(index)
        return (total / len(self)).astype(np.float32)


# Recording readers by name, with the file suffixes they read (``""``: a folder), e.g.
# ``@RECORDING_READERS.register("npy", suffixes=(".npy",))`` on the class.
RECORDING_READERS: Registry[type[Recording]] = Registry("recording format", skip=("path",))


def _suffixes() -> dict[str, str]:
    """File suffix -> recording format."""
    return {suffix: name for name in RECORDING_READERS for suffix in RECORDING_READERS.meta(name)["suffixes"]}


@RECORDING_READERS.register("b2nd", suffixes=(".b2nd",))
class B2ndRecording(Recording):
    """XiLens recordings: one Blosc2 N-d array, frames on axis 0, metadata in ``schunk.vlmeta``."""

    def __init__(self, path: Path) -> None:
        import blosc2

        self.path = path
        try:
            self.array = blosc2.open(str(path), mode="r")
        except Exception as error:  # noqa: BLE001 - blosc2 raises RuntimeError/ValueError for damaged files
            raise HsisegError(f"{path}: not a readable Blosc2 recording ({error})".splitlines()[0]) from None
        if len(self.array.shape) != 3:
            raise HsisegError(f"{path}: a recording is frames x height x width, got shape {self.array.shape}")
        self.meta = _json_safe(_vlmeta(self.array))
        self._read_timeline(recorder_file=True)

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def read(self, index: int) -> np.ndarray:
        return self.array[index, ...]


@RECORDING_READERS.register("npy", suffixes=(".npy",))
class NpyRecording(Recording):
    """An (N, H, W) ``.npy`` stack, memory-mapped (never unpickled)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:
            raise HsisegError(f"{path}: not a numeric .npy stack ({error})".splitlines()[0]) from None
        if self.array.ndim != 3:
            raise HsisegError(f"{path}: a recording is frames x height x width, got shape {self.array.shape}")
        self.meta = {}
        self._read_timeline()

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def read(self, index: int) -> np.ndarray:
        return np.array(self.array[index])


@RECORDING_READERS.register("hdf5", suffixes=(".h5", ".hdf5"))
class Hdf5Recording(Recording):
    """An (N, H, W) HDF5 dataset (option ``dataset``; default the only 3-D dataset); attributes as metadata."""

    def __init__(self, path: Path, dataset: str | None = None) -> None:
        import h5py

        self.path = path
        try:
            self.handle = h5py.File(path, "r")
        except OSError as error:
            raise HsisegError(f"{path}: not a readable HDF5 file ({error})") from None
        found = [name for name, node in self.handle.items() if isinstance(node, h5py.Dataset) and node.ndim == 3]
        name = dataset or (found[0] if len(found) == 1 else None)
        if name is None or name not in self.handle:
            raise HsisegError(f"{path}: say which dataset holds the frames (option 'dataset'); 3-D ones: {found}")
        self.array = self.handle[name]
        self.meta = _json_safe(dict(self.array.attrs))
        self._read_timeline()

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def read(self, index: int) -> np.ndarray:
        return self.array[index]

    def close(self) -> None:
        self.handle.close()


@RECORDING_READERS.register("frames", suffixes=("",))
class FrameFolder(Recording):
    """A folder of raw frames as 16-bit PNG or TIFF files, in name order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS)
        if not self.files:
            raise HsisegError(f"{path}: no {'/'.join(FRAME_EXTENSIONS)} frames in this folder")
        self.meta = {}
        self._read_timeline()

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> np.ndarray:
        return load_image(self.files[index])


def open_recording(path: str | Path, format: str | None = None, **options: Any) -> Recording:
    """The recording at ``path`` (a file, or a folder of frames), by ``format`` or by its suffix."""
    path = Path(path)
    if not path.exists():
        raise HsisegError(f"{path}: recording not found")
    suffixes = _suffixes()
    kind = format or suffixes.get("" if path.is_dir() else path.suffix.lower())
    if kind is None or kind not in RECORDING_READERS:
        raise HsisegError(f"{path}: not a recording hsiseg reads; formats: {sorted(RECORDING_READERS)} "
                          f"(suffixes {sorted(s for s in suffixes if s)} or a folder of frames)")  # fmt: skip
    try:
        reader: Any = RECORDING_READERS[kind]  # each reader has its own constructor options
        return reader(path, **options)
    except TypeError as error:
        raise HsisegError(f"{path}: the {kind} recording reader does not take these options ({error})") from None


def is_recording(path: str | Path) -> bool:
    """Whether ``path`` is read as a mosaic recording (a ``.b2nd`` file) rather than as a cube."""
    return Path(path).suffix.lower() == ".b2nd"


class MosaicVideo:
    """A recording seen through its camera: ``cube(i)`` is frame ``i`` calibrated and demosaicked.

    ``white`` / ``dark``: the camera's references (recordings or frame files, averaged), unless given here.
    """

    def __init__(
        self, recording: Recording, camera: CameraDescription, method: str = "subsample",
        white: str | Path | None = None, dark: str | Path | None = None,
    ) -> None:  # fmt: skip
        self.recording, self.camera = recording, camera
        white_path = Path(white) if white else (camera.resolve(camera.white) if camera.white else None)
        dark_path = Path(dark) if dark else (camera.resolve(camera.dark) if camera.dark else None)
        white_frame, white_exposure = _reference(white_path) if white_path else (None, None)
        self.white_exposure_us: float | None = white_exposure
        dark_frame = _reference(dark_path)[0] if dark_path else None
        if dark_frame is not None and white_frame is None:
            raise HsisegError(f"{camera.source}: a dark reference without a white one; give 'white' too")
        if white_frame is not None and white_path is not None:
            _check_gain(white_frame, dark_frame, camera, white_path)
        self.decoder = MosaicDecoder(camera, method, white_frame, dark_frame)
        self.reading = threading.Lock()  # one raw read at a time (a Blosc2 file's context is not thread-safe)
        self.notes = [*recording.timeline.notes, *self._exposure_notes(white_path)]

    def _exposure_notes(self, white_path: Path | None) -> list[str]:
        exposures = self.recording.timeline.exposure_range()
        if exposures is None or white_path is None:
            return []
        low, high = exposures
        notes = []
        if low != high:
            notes.append(f"{self.recording.path}: the exposure changes from {low:g} to {high:g} us during the "
                         "recording; each frame is calibrated with its own exposure")  # fmt: skip
        if self.white_exposure_us is None:
            notes.append(f"{white_path}: the white reference's exposure is not recorded; frames are calibrated as "
                         "if it had theirs, so reflectance is off by the ratio of the two exposures if they "
                         "differ")  # fmt: skip
        return notes

    def exposure_gain(self, index: int) -> float:
        """White exposure / frame exposure (signal grows linearly with exposure); 1 when either is unknown."""
        exposure = self.recording.timeline.exposure_us
        frame = float(exposure[index]) if exposure is not None else math.nan
        if self.white_exposure_us is None or not frame > 0:
            return 1.0
        return self.white_exposure_us / frame

    def reference_fingerprint(self) -> str:
        """SHA-256 of the white and dark references as used (a changed reference file changes the maps)."""
        digest = hashlib.sha256()
        for reference in (self.decoder.white, self.decoder.dark):
            digest.update(b"none" if reference is None else np.ascontiguousarray(reference, np.float32).tobytes())
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.recording)

    @property
    def timestamps(self) -> list[float] | None:
        return self.recording.timestamps

    def cube(self, index: int) -> Cube:
        """Frame ``index`` as a calibrated cube; ``meta`` has its source (``path#index``) and time stamp. Safe
        to call from several threads: the raw reads take turns, calibration and demosaicking run side by side."""
        with self.reading:
            raw = self.recording.raw(index)
        meta: dict[str, Any] = {"source": f"{self.recording.path}#{index}", "frame": index}
        if self.timestamps is not None:
            meta["timestamp"] = self.timestamps[index]
        gain = self.exposure_gain(index)
        if gain != 1.0:
            meta["exposure_gain"] = gain
        return self.decoder.cube(raw, meta, gain)


MIN_GAIN_SHARE = 0.5  # below this share of sensor pixels brighter in the white than in the dark: not a white


def _check_gain(white: np.ndarray, dark: np.ndarray | None, camera: CameraDescription, path: Path) -> None:
    """Refuse a white reference that gives no signal over the dark one on most of the sensor (e.g. the dark
    file recorded twice): every pixel would be invalid."""
    if white.ndim != 2 or (dark is not None and dark.shape != white.shape):
        return  # the decoder names the shape mismatch against the frames
    span = active_region(white, camera) - (active_region(dark, camera) if dark is not None else 0)
    share = float((span > 0).mean()) if span.size else 0.0
    if share < MIN_GAIN_SHARE:
        raise HsisegError(f"{path}: the white reference is brighter than the dark one on only {share:.0%} of the "
                          "sensor; record it against a white target with the lens open")  # fmt: skip


def _reference(path: Path) -> tuple[np.ndarray, float | None]:
    """A white or dark reference: a recording (averaged over its frames) or one frame file, and its mean
    exposure (us) when the recording has it."""
    if path.suffix.lower() in FRAME_EXTENSIONS:
        return load_image(path).astype(np.float32), None
    recording = open_recording(path)
    try:
        exposure = recording.timeline.exposure_us
        known = exposure[np.isfinite(exposure)] if exposure is not None else np.array([])
        return recording.mean_frame(), (float(known.mean()) if known.size and known.mean() > 0 else None)
    finally:
        recording.close()


def _vlmeta(array: Any) -> dict[str, Any]:
    try:
        return {str(key): value for key, value in array.schunk.vlmeta.getall().items()}
    except Exception:  # noqa: BLE001 - absent or unreadable metadata is not an error for the frames
        return {}


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    """Metadata as JSON values (arrays to lists, bytes to text); what cannot be converted is left out."""
    safe = {}
    for key, value in values.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        safe[key] = value
    return safe
