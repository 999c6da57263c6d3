"""Snapshot-mosaic frames: demosaicking + white/dark calibration against reading the raw frame itself.

Run: ``python benchmarks/bench_mosaic.py`` (``--repeats 15``, ``--frames 8``).

A 5 x 5 NIR camera (2048 x 1088 10-bit sensor, 25 bands, active region 2045 x 1085 from (0, 0)), frames stored
losslessly in a Blosc2 ``.b2nd`` recording as XiLens writes them. Baseline: ``recording.raw(i)`` (read and
decompress one raw frame, what any reader must do). Candidate: ``video.cube(i)`` (the same read, then
calibration, demosaicking and band sorting) with ``subsample`` (the default, target <= 1.5x) and ``bilinear``
(reported). Times are medians of pairwise ratios, candidate and baseline alternating in one process.

A second baseline is what a user would write by hand in numpy: read the frame, cut the active region, reshape
to tiles, ``(raw - dark) / (white - dark)`` in float32, transpose to (h, w, B) (no band sorting, no invalid
pixels). hsiseg's ``subsample`` does more (saturation, dead reference pixels, band order) and should still be
faster.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import blosc2
import numpy as np

from hsiseg.io.camera import CameraDescription
from hsiseg.io.recording import MosaicVideo, open_recording

sys.path.insert(0, str(Path(__file__).parent))
from common import paired_ratio  # noqa: E402

SENSOR = (1088, 2048)
ACTIVE = (1085, 2045)


def by_hand(frame: np.ndarray, white: np.ndarray, dark: np.ndarray) -> np.ndarray:
    """(H, W) raw -> (h, w, 25) reflectance as a user would write it in numpy."""
    rows, columns = ACTIVE[0] // 5, ACTIVE[1] // 5
    raw = frame[: ACTIVE[0], : ACTIVE[1]].astype(np.float32)
    reflectance = (raw - dark) / (white - dark)
    return reflectance.reshape(rows, 5, columns, 5).transpose(0, 2, 1, 3).reshape(rows, columns, 25)


def write(path: Path, frames: np.ndarray) -> None:
    blosc2.asarray(frames, urlpath=str(path), mode="w", chunks=(1, *frames.shape[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=["subsample", "bilinear"])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    scene = rng.integers(100, 900, (args.frames, *SENSOR)).astype(np.uint16)
    camera = CameraDescription(
        name="5x5 NIR", mosaic=(5, 5), size=(1085, 2045), saturation=1023,
        wavelengths=list(np.linspace(665, 975, 25)), white="white.b2nd", dark="dark.b2nd",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write(root / "recording.b2nd", scene)
        write(root / "white.b2nd", np.full((2, *SENSOR), 1000, dtype=np.uint16))
        write(root / "dark.b2nd", np.full((2, *SENSOR), 60, dtype=np.uint16))
        camera.source = str(root / "camera.yaml")
        recording = open_recording(root / "recording.b2nd")
        print(f"{args.frames} frames {SENSOR[0]} x {SENSOR[1]} uint16, 5 x 5 mosaic, blosc2 {blosc2.__version__}")
        print("| per frame | hsiseg ms | raw read ms | ratio (median) | target |")
        print("|---|---|---|---|---|")
        counter = {"i": 0}

        def next_index() -> int:
            counter["i"] = (counter["i"] + 1) % args.frames
            return counter["i"]

        targets = {"subsample": "<= 1.5x", "bilinear": "reported"}
        for method in args.methods:
            target = targets[method]
            video = MosaicVideo(recording, camera, method)
            shape = video.cube(0).shape
            ratio, ours, base = paired_ratio(lambda v=video: v.cube(next_index()),
                                             lambda: recording.raw(next_index()), args.repeats)  # fmt: skip
            print(f"| read + calibrate + demosaic ({method}, {shape[0]} x {shape[1]} x {shape[2]}) | {ours:.1f} | "
                  f"{base:.1f} | {ratio:.2f}x | {target} |")  # fmt: skip
        white = np.full(ACTIVE, 1000, np.float32)
        dark = np.full(ACTIVE, 60, np.float32)
        video = MosaicVideo(recording, camera, "subsample")

        def hand() -> np.ndarray:
            return by_hand(recording.raw(next_index()), white, dark)

        ratio, ours, base = paired_ratio(lambda: video.cube(next_index()), hand, args.repeats)
        print(f"| hsiseg subsample vs numpy by hand (read included) | {ours:.1f} | {base:.1f} (by hand) | "
              f"{ratio:.2f}x | < 1x |")  # fmt: skip


if __name__ == "__main__":
    main()
