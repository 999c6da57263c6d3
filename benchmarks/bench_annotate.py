"""hsiseg annotate's latency targets on this machine, through the web API as the page calls it.

Run: ``python benchmarks/bench_annotate.py`` (``--quick``: a small scene, for the tests).

- First map: the synthetic demo (96 x 128 x 100, 14 leaves), a simulated annotator draws a short stroke in
  two places of every class of the first image (from the dense truth), then asks for an update; seconds from
  the request to the map on the page (target <= 15 s).
- Update: one more stroke, then the warm-started update until its map (target <= 5 s).
- A stroke saved: POST of a 20-point brush stroke until the saved layer comes back (target <= 100 ms).
- A 480 x 640 x 100 cube (Tivita file) opened and shown: layer state + RGB PNG of a new sample (target <= 1 s).
- The spectrum under the cursor: one GET (target <= 50 ms).

Baseline beside each: what the user would do instead. For the map, ``hsiseg train`` with its defaults on the
same strokes (the full recipe, run folder included), in the same process; for the cube, reading the same file
with raw numpy (``np.fromfile``), so the ratio is the cost of the page beyond the bytes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from starlette.testclient import TestClient

from hsiseg.annotate import AnnotationSession, LiveWorker
from hsiseg.annotate.demo import demo_scene
from hsiseg.annotate.server import TOKEN_HEADER, create_app
from hsiseg.dataset.spec import DataSpec
from hsiseg.io import Cube, write_cube
from hsiseg.synthetic.dataset import generate_demo_data


def draw(client: TestClient, index: int, label: str, points: list) -> float:
    version = client.get(f"/api/samples/{index}/layer").json()["version"]
    started = time.perf_counter()
    body = {"version": version, "tool": "brush", "points": points, "label": label, "width": 3}
    answer = client.post(f"/api/samples/{index}/strokes", json=body)
    answer.raise_for_status()
    return time.perf_counter() - started


def until_map(client: TestClient, version: int, index: int = 1, timeout: float = 300) -> None:
    """Wait for a model newer than ``version``, then fetch its map of sample ``index`` as the page does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get("/api/status").json()
        if status["model_version"] > version and status["state"] == "ready":
            client.get(f"/api/samples/{index}/map").raise_for_status()
            return
        if status["state"] == "error":
            raise RuntimeError(status["message"])
        time.sleep(0.05)
    raise TimeoutError("no map")


def class_points(spec: DataSpec, sample_id: str, per_class: int) -> list[tuple[str, list[list[int]]]]:
    truth = spec.read_truth(sample_id)
    strokes = []
    for code in np.unique(truth[truth >= 0]):
        depth = ndimage.distance_transform_edt(truth == code)
        order = np.argsort(depth.ravel())[::-1]
        for rank in range(per_class):
            y, x = np.unravel_index(order[rank * 25], depth.shape)
            strokes.append((spec.tree.leaves[int(code)], [[int(x), int(y)], [int(x) + 1, int(y)]]))
    return strokes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small scene and cube (for the tests)")
    args = parser.parse_args()
    shape, cube_shape = ((48, 64), (60, 80)) if args.quick else ((96, 128), (480, 640))
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        generate_demo_data(folder / "demo", surgeries=2, frames=1, shape=shape, seed=0)
        spec_path = demo_scene(folder / "demo")
        big = write_cube(folder / "demo" / "big" / "big_SpecCube.dat",
                         Cube(np.random.default_rng(0).random((*cube_shape, 100), dtype=np.float32) * 0.6 + 0.2,
                              np.linspace(500, 995, 100)))  # fmt: skip
        entry = f"samples:\n- id: big\n  subject: big\n  cube: {big.relative_to(folder / 'demo')}\n"
        text = spec_path.read_text(encoding="utf-8").replace("samples:\n", entry, 1)
        spec_path.write_text(text, encoding="utf-8")
        results = measure(spec_path)
    print(f"hsiseg annotate on this machine ({'quick' if args.quick else 'full'} sizes)")
    print("| measure | hsiseg annotate | baseline | target |")
    print("|---|---|---|---|")
    for row in results:
        print("| " + " | ".join(row) + " |")


def measure(spec_path: Path) -> list[tuple[str, str, str, str]]:
    session = AnnotationSession(spec_path, "bench")
    worker = LiveWorker(session, debounce=0.0)
    client = TestClient(create_app(session, worker, "t"))
    client.headers[TOKEN_HEADER] = "t"
    spec = DataSpec.from_file(spec_path)
    sample_id = session.sample_ids()[1]  # the first demo image (0 is the big cube)
    strokes = class_points(spec, sample_id, 2)
    saves = []
    for label, points in strokes:
        saves.append(draw(client, 1, label, points))
    started = time.perf_counter()
    client.post("/api/update")
    until_map(client, 0)
    first_map = time.perf_counter() - started
    label, points = strokes[0]
    draw(client, 1, label, [[p[0], p[1] + 1] for p in points])
    started = time.perf_counter()
    until_map(client, client.get("/api/status").json()["model_version"])
    update = time.perf_counter() - started
    live_accuracy = dense_accuracy(client.get("/api/samples/1/map").content, spec.read_truth(sample_id))
    baseline, baseline_accuracy = baseline_training(spec_path, session, sample_id)
    saves += [draw(client, 1, label, [[5 + k, 5] for k in range(20)]) for _ in range(10)]  # after the training
    opened, raw = open_big(client, spec)
    spectra = []
    for k in range(30):
        started = time.perf_counter()
        client.get(f"/api/samples/0/spectrum?x={k}&y={k}").raise_for_status()
        spectra.append(time.perf_counter() - started)
    worker.stop()
    return [
        ("first map after strokes of every class", f"{first_map:.1f} s", f"hsiseg train: {baseline:.1f} s", "<= 15 s"),
        ("leaf accuracy of that map on the image's dense truth", live_accuracy, f"hsiseg train: {baseline_accuracy}",
         "-"),
        ("update after one more stroke", f"{update:.1f} s", "-", "<= 5 s"),
        (f"a stroke saved (median of {len(saves)})", f"{1000 * statistics.median(saves):.0f} ms", "-", "<= 100 ms"),
        ("480 x 640 x 100 cube opened and shown", f"{opened:.2f} s", f"np.fromfile: {raw:.2f} s", "<= 1 s"),
        ("spectrum under the cursor (median of 30)", f"{1000 * statistics.median(spectra):.0f} ms", "-", "<= 50 ms"),
    ]


def dense_accuracy(map_bytes: bytes, truth: np.ndarray) -> str:
    """Share of the truth's pixels the map labels with their leaf (unknown counts as wrong), and the share
    it calls unknown."""
    labels = np.frombuffer(map_bytes, dtype="<i2").reshape(truth.shape)
    known = truth >= 0
    return f"{(labels[known] == truth[known]).mean():.3f} ({(labels[known] == -1).mean():.1%} unknown)"


def baseline_training(spec_path: Path, session: AnnotationSession, sample_id: str) -> tuple[float, str]:
    """``hsiseg train`` with its defaults on the strokes saved so far (the final-model path): seconds, and
    the leaf accuracy of its final model's map on the image's dense truth."""
    from hsiseg.annotate.spec_file import training_spec
    from hsiseg.predict import Predictor
    from hsiseg.training import final_checkpoint, train

    with tempfile.TemporaryDirectory() as run_name:
        run = Path(run_name) / "run"
        spec = training_spec(DataSpec.from_file(spec_path), Path(run_name) / "spec.yaml")
        started = time.perf_counter()
        train(spec, run)
        seconds = time.perf_counter() - started
        predictor = Predictor.from_checkpoint(final_checkpoint(run))
        view = session.view(sample_id)
        prediction = predictor.predict(view.cube)
    truth = DataSpec.from_file(spec_path).read_truth(sample_id)
    return seconds, dense_accuracy(prediction.labels_with_unknown().astype("<i2").tobytes(), truth)


def open_big(client: TestClient, spec: DataSpec) -> tuple[float, float]:
    path = spec.resolve(spec.samples["big"].cube)
    np.fromfile(path, dtype=">f4")  # both read from the page cache
    started = time.perf_counter()
    np.fromfile(path, dtype=">f4")
    raw = time.perf_counter() - started
    started = time.perf_counter()
    client.get("/api/samples/0/layer").raise_for_status()
    client.get("/api/samples/0/image").raise_for_status()
    return time.perf_counter() - started, raw


if __name__ == "__main__":
    main()
