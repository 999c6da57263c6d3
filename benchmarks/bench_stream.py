"""Streaming prediction of a snapshot-mosaic recording against pure network time, its memory over recording
length, and the cost of the MP4 and HTML exports against the prediction.

Run: ``python benchmarks/bench_stream.py`` (``--frames 300``, ``--memory-frames 100 1000``).

- Wall time of ``predict_recording`` (read, demosaic, preprocess, predict, write ``maps.h5``) against the
  network time inside it (``Predictor.predict``), on a 5 x 5 NIR-like camera: 2045 x 1085 sensor, 409 x 217 x 25
  cubes, the default model (untrained: the work is the same), CPU. Target: wall <= 1.15x network.
- Peak memory of the whole run in a fresh process for a short and a long recording of small frames (80 x 64
  tiles of 5 x 5): target long <= 1.1x short.
- Writing ``overlay.mp4`` and ``report.html`` from ``maps.h5`` against the prediction time of the same run:
  target <= 20%.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import blosc2
import numpy as np

from hsiseg.export import StreamMaps, export
from hsiseg.io.camera import CameraDescription
from hsiseg.io.recording import MosaicVideo, open_recording
from hsiseg.models import DEFAULT_MODEL, build_model
from hsiseg.models.card import ModelCard, NetworkConfig
from hsiseg.models.checkpoint import save_model
from hsiseg.predict.stream import predict_recording
from hsiseg.spectral import Preprocessing
from hsiseg.synthetic.dataset import demo_tree
from hsiseg.training import TrainConfig

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_in_child  # noqa: E402

BANDS = 25
WAVELENGTHS = list(np.linspace(665.0, 975.0, BANDS))


def default_model(folder: Path) -> Path:
    """The default network (hsiseg train's model and options), untrained, saved as a checkpoint."""
    config, tree = TrainConfig(), demo_tree()
    model = build_model(DEFAULT_MODEL, BANDS, tree.num_leaves, **config.model_options)
    multiple = getattr(model, "input_multiple", 1)
    network = NetworkConfig(name=DEFAULT_MODEL, in_channels=BANDS, classes=tree.num_leaves,
                            options=config.model_options, input_multiple=multiple)  # fmt: skip
    card = ModelCard.create(tree, model=network, trained_classes=list(tree.leaves),
                            preprocessing=Preprocessing(wavelengths=WAVELENGTHS))  # fmt: skip
    save_model(folder / "model", model, card)
    return folder / "model.json"


def recording(folder: Path, frames: int, sensor: tuple[int, int]) -> MosaicVideo:
    rng = np.random.default_rng(0)
    base = rng.integers(100, 900, sensor).astype(np.uint16)
    stack = np.stack([np.roll(base, 3 * index, axis=1) for index in range(frames)])
    blosc2.asarray(stack, urlpath=str(folder / "recording.b2nd"), mode="w", chunks=(1, *sensor))
    size = (sensor[0] // 5 * 5, sensor[1] // 5 * 5)
    camera = CameraDescription(name="5x5 NIR", mosaic=(5, 5), size=size, wavelengths=WAVELENGTHS,
                               saturation=1023, source=str(folder / "camera.yaml"))  # fmt: skip
    return MosaicVideo(open_recording(folder / "recording.b2nd"), camera)


def child(frames: str) -> None:
    """In a fresh process: peak RSS rise of a streaming run over ``frames`` frames of 400 x 320 pixels."""
    from common import measure_peak_rise

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        model, video = default_model(root), recording(root, int(frames), (400, 320))
        print(measure_peak_rise(lambda: predict_recording(model, video, root / "out")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--memory-frames", type=int, nargs=2, default=(100, 1000))
    parser.add_argument("--child", nargs=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0])
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        model, video = default_model(root), recording(root, args.frames, (1088, 2048))
        result = predict_recording(model, video, root / "out")
        shape = video.cube(0).shape
        print(f"\n{args.frames} frames of {shape[0]} x {shape[1]} x {shape[2]}: {result.seconds:.1f} s wall, "
              f"{result.network_seconds:.1f} s network, ratio {result.seconds / result.network_seconds:.3f}x "
              f"(target <= 1.15x); {args.frames / result.seconds:.2f} frames/s")  # fmt: skip
        maps = StreamMaps(result.maps)
        for name in ("mp4", "html"):
            started = time.perf_counter()
            path = export(name, maps, root / "out")
            seconds = time.perf_counter() - started
            print(f"{name}: {seconds:.1f} s = {100 * seconds / result.seconds:.1f}% of the prediction time "
                  f"(target <= 20%), {path.stat().st_size / 2**20:.1f} MiB")  # fmt: skip
    short, long = args.memory_frames
    peaks = {frames: peak_in_child(__file__, str(frames)) for frames in (short, long)}
    print(f"peak memory rise: {short} frames {peaks[short] / 2**20:.0f} MiB, {long} frames "
          f"{peaks[long] / 2**20:.0f} MiB, ratio {peaks[long] / peaks[short]:.3f}x (target <= 1.1x)")  # fmt: skip


if __name__ == "__main__":
    main()
