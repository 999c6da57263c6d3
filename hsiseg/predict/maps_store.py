"""``maps.h5`` written so that a kill at any moment loses at most the frames not yet finished.

HDF5 is not crash-safe: a process killed while a file is open for writing leaves it unreadable ("file is
already open for write"), with every frame in it. So ``maps.h5`` is never open for writing in place:

1. each finished frame goes to the *journal*, ``OUT/maps.journal/``: one small file per frame
   (``NNNNNN.npz``, or ``NNNNNN.failed.json`` for a frame that failed), each written atomically, beside
   ``identity.json`` (what ``--continue`` compares);
2. at the end of the run (also after Ctrl-C or an error) the journal is *consolidated*: a copy of the
   previous ``maps.h5`` (or a new file) gets the journal's rows and replaces ``maps.h5`` in one rename, then
   the journal is removed.

A kill (SIGKILL included) at any point leaves a readable ``maps.h5`` from the last consolidation, or none,
and a journal holding every frame finished since; ``--continue`` consolidates those and predicts the rest.
Consolidating twice is harmless (the same rows are written again).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hsiseg.areas import area_columns
from hsiseg.errors import HsisegError
from hsiseg.io.atomic import atomic_path
from hsiseg.labels import INVALID

MAPS = "maps.h5"
JOURNAL = "maps.journal"
IDENTITY = "identity.json"
JOURNAL_FILE = re.compile(r"\d{6}\.npz|\d{6}\.failed\.json|identity\.json")


@dataclass
class MapsLayout:
    """What a new ``maps.h5`` holds besides the frames: one row per selected frame."""

    indices: list[int]  # recording frame index of each row
    shape: tuple[int, int]  # (h, w) of the maps
    classes: int  # leaves of the label tree
    timestamps: np.ndarray  # (N,) seconds, NaN where unknown
    attributes: dict[str, str]  # file attributes (identity, classes, label tree, ...)
    per_frame: dict[str, np.ndarray] = field(default_factory=dict)  # (N,) recorded per frame: exposure_us ...


@dataclass
class FrameRow:
    """One finished frame: (h, w) int16 labels, (h, w) float16 score, (h, w, 3) uint8 RGB, (2 + C,) pixel
    counts and the frame's warnings."""

    labels: np.ndarray
    score: np.ndarray
    rgb: np.ndarray
    pixels: np.ndarray
    warnings: list[str]


def half_precision(score: np.ndarray) -> np.ndarray:
    """(h, w) scores as float16, saturated at its largest finite values (+-65504) rather than overflowing to
    infinity: distance scores of pixels far from every trained class reach -1e6 and beyond, all far past any
    calibrated threshold; NaN stays NaN."""
    limit = np.finfo(np.float16).max
    return np.clip(score, -limit, limit).astype(np.float16)


class MapsStore:
    """``OUT/maps.h5`` and its journal (see module docstring)."""

    def __init__(self, output: Path, layout: MapsLayout, identity: dict[str, Any]) -> None:
        self.path, self.journal = output / MAPS, output / JOURNAL
        self.layout, self.identity = layout, identity

    def prepare(self, resume: bool, overwrite: bool) -> np.ndarray:
        """(N,) bool: the rows already done (``resume``); refuses outputs of another run, and existing outputs
        unless ``resume`` or ``overwrite`` says what to do with them."""
        existing = next((path for path in (self.path, self.journal) if path.exists()), None)
        if existing is not None and overwrite:
            _remove_journal(self.journal, refuse_foreign=True)  # first: it refuses before anything is deleted
            self.path.unlink(missing_ok=True)
        elif existing is not None and not resume:
            raise HsisegError(f"{existing} exists; pass --continue to finish the run or --overwrite to start again")
        for stale in self.path.parent.glob(f".{MAPS}.*.part"):  # a consolidation killed before its rename
            stale.unlink(missing_ok=True)
        done = self._stored_done() if self.path.exists() else np.zeros(len(self.layout.indices), bool)
        if self.journal.exists():
            self._check_identity(self._journal_identity(), self.journal / IDENTITY)
            done[sorted(self._journal_rows())] = True
        else:
            self.journal.mkdir(parents=True)
            with atomic_path(self.journal / IDENTITY) as temporary:
                temporary.write_text(json.dumps(self.identity))
        return done

    def write(self, slot: int, row: FrameRow) -> None:
        """One finished frame into the journal (atomic: the frame is in it whole, or not at all)."""
        with atomic_path(self.journal / f"{slot:06d}.npz") as temporary, temporary.open("wb") as handle:
            np.savez_compressed(handle, labels=row.labels.astype(np.int16), score=half_precision(row.score),
                                rgb=row.rgb, pixels=row.pixels.astype(np.int64),
                                warnings=np.array(json.dumps(row.warnings) if row.warnings else ""))  # fmt: skip

    def write_failure(self, slot: int, message: str) -> None:
        with atomic_path(self.journal / f"{slot:06d}.failed.json") as temporary:
            temporary.write_text(json.dumps([message]))

    def consolidate(self) -> None:
        """The journal's rows into ``maps.h5`` (a copy, renamed over it), then the journal removed."""
        if not self.journal.exists():
            return
        with atomic_path(self.path) as temporary:
            if self.path.exists():
                shutil.copyfile(self.path, temporary)
                handle = h5py.File(temporary, "r+")
            else:
                handle = _create(temporary, self.layout)
            with handle:
                self._apply_journal(handle)
        _remove_journal(self.journal, refuse_foreign=False)

    def _apply_journal(self, handle: h5py.File) -> None:
        for slot, path in sorted(self._entries(".failed.json").items()):
            handle["failures"][slot] = path.read_text(encoding="utf-8")
        for slot, path in sorted(self._entries(".npz").items()):
            row = self._read_row(path)
            if row is None:  # damaged (checked when the run began; a file changed since): the frame stays to do
                continue
            for name in ("labels", "score", "rgb", "pixels"):
                handle[name][slot] = row[name]
            handle["warnings"][slot] = str(row["warnings"])
            handle["failures"][slot] = ""  # a frame that failed earlier and succeeded now
            handle["done"][slot] = True

    def _journal_rows(self) -> dict[int, Path]:
        """Slot -> journal file, for every entry that holds a whole frame of this layout (each is read once,
        one at a time); an entry that does not (damaged, or not hsiseg's) is removed, so its frame is
        predicted again."""
        rows = {}
        for slot, path in self._entries(".npz").items():
            if self._read_row(path) is None:
                path.unlink(missing_ok=True)
            else:
                rows[slot] = path
        return rows

    def _read_row(self, path: Path) -> dict[str, np.ndarray] | None:
        height, width = self.layout.shape
        shapes = {"labels": (height, width), "score": (height, width), "rgb": (height, width, 3),
                  "pixels": (area_columns(self.layout.classes),), "warnings": ()}  # fmt: skip
        try:
            with np.load(path, allow_pickle=False) as stored:
                row = {name: stored[name] for name in shapes}
        except Exception:  # noqa: BLE001 - any damage (truncated, not a zip, a missing array) means "not done"
            return None
        return row if all(row[name].shape == shape for name, shape in shapes.items()) else None

    def _entries(self, suffix: str) -> dict[int, Path]:
        """Journal files ``NNNNNN<suffix>`` of this layout's slots (anything else in the folder is ignored)."""
        entries = {}
        for path in self.journal.glob(f"[0-9][0-9][0-9][0-9][0-9][0-9]{suffix}"):
            slot = int(path.name[:6])
            if slot < len(self.layout.indices):
                entries[slot] = path
        return entries

    def _journal_identity(self) -> dict[str, Any]:
        try:
            identity = json.loads((self.journal / IDENTITY).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            identity = None
        if not isinstance(identity, dict):
            raise HsisegError(f"{self.journal}: not a journal of hsiseg's streaming prediction; choose another "
                              "output folder, or pass --overwrite to start again")  # fmt: skip
        return identity

    def _stored_done(self) -> np.ndarray:
        try:
            with h5py.File(self.path, "r") as handle:
                stored = json.loads(handle.attrs["identity"])
                done = handle["done"][()]
        except (OSError, KeyError, ValueError):
            raise HsisegError(f"{self.path}: not a maps file of hsiseg's streaming prediction; choose another "
                              "output folder, or pass --overwrite to start again") from None  # fmt: skip
        self._check_identity(stored, self.path)
        return done

    def _check_identity(self, stored: dict[str, Any], source: Path) -> None:
        differing = sorted(key for key in self.identity if stored.get(key) != self.identity[key])
        if differing:
            raise HsisegError(f"{source} was written by a run that differs in: {', '.join(differing)}; pass "
                              "--overwrite to start again, or choose another output folder")  # fmt: skip


def _remove_journal(journal: Path, refuse_foreign: bool) -> None:
    """Delete the journal's own files (frame entries, ``identity.json``, unfinished temporaries) and then the
    folder if nothing else is in it. Anything else is someone else's: with ``refuse_foreign`` the run stops,
    naming it, before deleting anything; otherwise it is left, and the folder with it."""
    if not journal.is_dir() or journal.is_symlink():
        journal.unlink(missing_ok=True)
        return
    own = [path for path in journal.iterdir() if _journal_file(path.name)]
    foreign = sorted(set(journal.iterdir()) - set(own))
    if foreign and refuse_foreign:
        raise HsisegError(f"{foreign[0]} is not a file of hsiseg's journal; move it before --overwrite, or choose "
                          "another output folder")  # fmt: skip
    for path in own:
        path.unlink(missing_ok=True)
    if not foreign:
        journal.rmdir()


def _journal_file(name: str) -> bool:
    """A name the journal writes: ``NNNNNN.npz``, ``NNNNNN.failed.json``, ``identity.json``, or the temporary
    of one (``.<name>.<random>.part``, :func:`~hsiseg.io.atomic.atomic_path`)."""
    temporary = re.fullmatch(r"\.(.+)\.[^.]+\.part", name)
    return bool(JOURNAL_FILE.fullmatch(temporary.group(1) if temporary else name))


def _create(path: Path, layout: MapsLayout) -> h5py.File:
    """A new ``maps.h5`` with every dataset sized for the layout and nothing done."""
    handle = h5py.File(path, "w", libver="latest")  # compact chunk indexes: memory flat in frames
    count, (height, width) = len(layout.indices), layout.shape
    frame_chunks = (1, height, width)
    handle.create_dataset("labels", (count, height, width), np.int16, chunks=frame_chunks, compression="gzip",
                          fillvalue=INVALID)  # fmt: skip
    handle.create_dataset("score", (count, height, width), np.float16, chunks=frame_chunks, compression="gzip")
    handle.create_dataset("rgb", (count, height, width, 3), np.uint8, chunks=(1, height, width, 3),
                          compression="gzip")  # fmt: skip
    handle.create_dataset("pixels", (count, area_columns(layout.classes)), np.int64)
    handle["frame"] = np.asarray(layout.indices, dtype=np.int64)
    handle["timestamp"] = np.asarray(layout.timestamps, dtype=np.float64)
    for name, values in layout.per_frame.items():  # what the recorder wrote per frame (NaN where unknown)
        handle[name] = np.asarray(values, dtype=np.float64)
    handle.create_dataset("done", (count,), bool)
    for name in ("warnings", "failures"):  # per frame, a JSON list of messages ("" = none)
        handle.create_dataset(name, (count,), h5py.string_dtype())
    handle.attrs.update(layout.attributes)
    return handle
