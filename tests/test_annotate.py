"""hsiseg annotate: the API end to end with the ASGI test client, every security rule, saving, undo / redo,
conflicts, the live model and the final model; the CLI's refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from hsiseg.annotate import AnnotationSession, LiveSettings, LiveWorker, StrokeEdit
from hsiseg.annotate.demo import demo_scene
from hsiseg.annotate.live_model import Cancelled, LiveModel
from hsiseg.annotate.server import MAX_BODY, TOKEN_HEADER, create_app
from hsiseg.annotations import rasterize_strokes
from hsiseg.dataset.spec import DataSpec
from hsiseg.labels import UNLABELLED
from hsiseg.synthetic.dataset import generate_demo_data
from hsiseg.training import TrainConfig
from hsiseg_cli.main import app as cli

TOKEN = "test-token"
FAST = LiveSettings(first_steps=40, update_steps=10)


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    generate_demo_data(folder, surgeries=3, frames=1, shape=(40, 56), seed=3)
    return folder


@pytest.fixture
def scene(demo_folder: Path, tmp_path: Path) -> Path:
    """A fresh copy of the blank annotation scene (cubes, truth, spec)."""
    copy = tmp_path / "scene"
    shutil.copytree(demo_folder, copy)
    return demo_scene(copy)


@pytest.fixture
def client(scene: Path, tmp_path: Path):
    session = AnnotationSession(scene, "alice")
    final = TrainConfig(model="pixel", steps=20, validate_every=10)
    worker = LiveWorker(session, FAST, debounce=0.0, final_config=final)
    with TestClient(create_app(session, worker, TOKEN, tmp_path / "runs")) as test_client:
        test_client.headers[TOKEN_HEADER] = TOKEN
        yield test_client
    worker.stop()


def truth_point(spec: DataSpec, sample_id: str, code: int, rank: int = 0) -> tuple[int, int]:
    """(x, y) of a pixel deep inside ``code``'s truth (rank: another of the deepest pixels)."""
    from scipy import ndimage

    truth = spec.read_truth(sample_id)
    depth = ndimage.distance_transform_edt(truth == code)
    order = np.argsort(depth.ravel())[::-1]
    y, x = np.unravel_index(order[rank * 7], depth.shape)
    return int(x), int(y)


def draw(client: TestClient, index: int, label: str | None, points: list, tool: str = "brush", width: float = 3):
    version = client.get(f"/api/samples/{index}/layer").json()["version"]
    body = {"version": version, "tool": tool, "points": points, "label": label, "width": width}
    return client.post(f"/api/samples/{index}/strokes", json=body)


# --- security -----------------------------------------------------------------------------------------------------


def test_every_request_needs_the_token(client: TestClient) -> None:
    anonymous = TestClient(client.app)
    assert anonymous.get("/").status_code == 403
    assert anonymous.get("/?token=wrong").status_code == 403
    assert anonymous.get("/api/session").status_code == 403
    assert anonymous.get("/api/session", headers={TOKEN_HEADER: "wrong"}).status_code == 403
    assert anonymous.get(f"/api/session?token={TOKEN}").status_code == 403  # the query opens the page only
    assert anonymous.post(f"/api/update?token={TOKEN}").status_code == 403  # POST: the header, never the query
    page = anonymous.get(f"/?token={TOKEN}")
    assert page.status_code == 200 and "hsiseg annotate" in page.text and "/*SCRIPT*/" not in page.text
    assert "script-src 'unsafe-inline'" in page.headers["content-security-policy"]
    assert "access-control-allow-origin" not in page.headers


def test_bad_requests_get_one_clear_line(client: TestClient) -> None:
    assert client.post("/api/samples/0/strokes", content=b"x" * (MAX_BODY + 1)).status_code == 413
    bad = client.post("/api/samples/0/strokes", content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"] == "request body: not JSON"
    assert "sample index must be in 0..2" in client.get("/api/samples/7/layer").json()["error"]
    assert client.get("/api/samples/..%2F..%2Fetc/layer").status_code == 404  # no path reaches the disk
    assert "outside the 56 x 40 image" in client.get("/api/samples/0/spectrum?x=56&y=0").json()["error"]
    assert "x: expected an integer" in client.get("/api/samples/0/spectrum?x=a&y=0").json()["error"]
    assert "not a node of the label tree" in draw(client, 0, "<script>", [[3, 3]]).json()["error"]
    assert "width must be in" in draw(client, 0, "artery", [[3, 3]], width=0).json()["error"]
    assert "every point must be a pair" in draw(client, 0, "artery", [[3, 3, 3]]).json()["error"]
    assert "a polygon needs at least 3 points" in draw(client, 0, "artery", [[1, 1], [2, 2]], "polygon").json()["error"]


def test_names_reach_the_page_as_json_text(client: TestClient) -> None:
    info = client.get("/api/session").json()
    assert info["annotator"] == "alice" and info["leaves"] == 14
    assert {n["name"] for n in info["nodes"]} >= {"artery", "vessel", "vascular structures"}
    assert all(n["colour"].startswith("#") and len(n["colour"]) == 7 for n in info["nodes"])
    script = (Path(__file__).parents[1] / "hsiseg" / "annotate" / "static" / "app.js").read_text()
    assert "innerHTML" not in script  # names are set with textContent only


# --- strokes, saving, undo / redo, conflicts ----------------------------------------------------------------------


def test_a_stroke_is_saved_in_the_specs_format(client: TestClient, scene: Path) -> None:
    points = [[5, 6], [20, 9], [30, 9]]
    state = draw(client, 0, "artery", points, width=3).json()
    assert state["version"] == 1 and state["can_undo"]
    spec = DataSpec.from_file(scene)
    sample_id = list(spec.samples)[0]
    assert spec.samples[sample_id].annotations == [f"annotations/{sample_id}/alice.png"]
    assert scene.with_name("annotate.yaml.bak").is_file()  # the spec's first version, kept once
    expected = rasterize_strokes([{"label": "artery", "points": points, "width": 3}], (40, 56), spec.tree, "ref")
    np.testing.assert_array_equal(spec.read_annotation(sample_id), expected)
    codes = np.frombuffer(client.get("/api/samples/0/codes").content, dtype="<i2").reshape(40, 56)
    np.testing.assert_array_equal(codes, expected)


def test_partial_labels_polygons_and_the_eraser(client: TestClient, scene: Path) -> None:
    draw(client, 0, "vessel", [[2, 2], [12, 2], [12, 12], [2, 12]], "polygon")
    draw(client, 0, None, [[7, 7]], "eraser", width=3)
    spec = DataSpec.from_file(scene)
    tree, sample_id = spec.tree, list(spec.samples)[0]
    polygon = rasterize_strokes([{"label": "vessel", "polygon": [[2, 2], [12, 2], [12, 12], [2, 12]]}], (40, 56), tree,
                                "ref")  # fmt: skip
    erased = rasterize_strokes([{"label": "vessel", "points": [[7, 7]], "width": 3}], (40, 56), tree, "ref")
    expected = np.where(erased != UNLABELLED, UNLABELLED, polygon)
    np.testing.assert_array_equal(spec.read_annotation(sample_id), expected)
    assert tree.index("vessel") >= tree.num_leaves  # an internal node: a partial label


def test_a_node_missing_from_the_value_table_gets_a_new_value(scene: Path) -> None:
    document = scene.read_text(encoding="utf-8").replace("    22: vessel\n", "")
    scene.write_text(document, encoding="utf-8")
    session = AnnotationSession(scene, "bob")
    session.edit(session.sample_ids()[1], StrokeEdit("brush", ((4.0, 4.0),), "vessel", 2), 0)
    spec = DataSpec.from_file(scene)
    assert spec.document.annotations.labels["22"] == "vessel"  # one above the largest value in use
    assert (spec.read_annotation(session.sample_ids()[1]) == spec.tree.index("vessel")).sum() > 0


def test_undo_and_redo_rewrite_the_file(client: TestClient, scene: Path) -> None:
    draw(client, 1, "bone", [[4, 4], [10, 4]])
    draw(client, 1, "bone", [[4, 20], [10, 20]])
    sample_id = list(DataSpec.from_file(scene).samples)[1]

    def rows_drawn() -> list[int]:
        labels = DataSpec.from_file(scene).read_annotation(sample_id)
        return sorted({int(r) for r in np.nonzero(labels != UNLABELLED)[0]})

    both = rows_drawn()
    state = client.post("/api/samples/1/undo", json={"version": 2}).json()
    assert state["version"] == 3 and state["can_redo"] and max(rows_drawn()) < 10
    client.post("/api/samples/1/redo", json={"version": 3})
    assert rows_drawn() == both


def test_two_windows_are_told_never_merged(client: TestClient) -> None:
    draw(client, 0, "artery", [[5, 5]])
    stale = client.post("/api/samples/0/strokes", json={"version": 0, "tool": "brush", "points": [[9, 9]],
                                                         "label": "vein", "width": 2})  # fmt: skip
    assert stale.status_code == 409 and "changed in another window" in stale.json()["error"]
    assert client.post("/api/samples/0/undo", json={"version": 0}).status_code == 409


def test_a_file_changed_on_disk_is_never_overwritten(client: TestClient, scene: Path) -> None:
    draw(client, 0, "artery", [[5, 5]])
    spec = DataSpec.from_file(scene)
    path = spec.resolve(spec.samples[list(spec.samples)[0]].annotations[0])
    path.write_bytes(b"changed by another program")
    answer = draw(client, 0, "vein", [[9, 9]])
    assert answer.status_code == 409 and "changed on disk" in answer.json()["error"]
    assert path.read_bytes() == b"changed by another program"


def test_another_annotators_file_is_shown_and_never_written(scene: Path) -> None:
    first = AnnotationSession(scene, "alice")
    first.edit(first.sample_ids()[0], StrokeEdit("brush", ((10.0, 10.0), (20.0, 10.0)), "vein", 3), 0)
    theirs = DataSpec.from_file(scene).resolve(f"annotations/{first.sample_ids()[0]}/alice.png")
    before = theirs.read_bytes()
    second = AnnotationSession(scene, "bob")
    state = second.layer_state(second.sample_ids()[0])
    assert state["others"] == ["alice"] and state["file"].endswith("/bob.png")
    second.edit(second.sample_ids()[0], StrokeEdit("brush", ((10.0, 30.0),), "bone", 3), 0)
    assert theirs.read_bytes() == before
    merged = np.frombuffer(second.layer_codes(second.sample_ids()[0]), dtype="<i2").reshape(40, 56)
    assert {int(c) for c in np.unique(merged)} == {UNLABELLED, first.tree.index("vein"), first.tree.index("bone")}
    alone = np.frombuffer(second.layer_codes(second.sample_ids()[0], 1), dtype="<i2").reshape(40, 56)
    np.testing.assert_array_equal(alone, first.view(first.sample_ids()[0]).own.codes)  # alice's layer alone


# --- the live model -----------------------------------------------------------------------------------------------


def strokes_of_every_class(client: TestClient, scene: Path, strokes: int = 2) -> DataSpec:
    spec = DataSpec.from_file(scene)
    sample_id = list(spec.samples)[0]
    truth = spec.read_truth(sample_id)
    for code in np.unique(truth[truth >= 0]):
        for rank in range(strokes):
            x, y = truth_point(spec, sample_id, int(code), rank)
            draw(client, 0, spec.tree.leaves[int(code)], [[x, y]], width=1)
    return spec


def test_strokes_give_a_map_with_unknown_tissue(client: TestClient, scene: Path) -> None:
    assert client.get("/api/samples/0/map").status_code == 204  # no model yet
    strokes_of_every_class(client, scene)
    worker: LiveWorker = client.app.state.hsiseg.worker  # type: ignore[attr-defined]
    status = worker.wait_for_model()
    assert status.state == "ready" and status.model_version >= 1, status
    assert status.held_out["pixels"] > 0 and status.calibrated_on == "held-out strokes"
    answer = client.get("/api/samples/0/map")
    labels = np.frombuffer(answer.content, dtype="<i2").reshape(40, 56)
    assert labels.min() >= -2 and labels.max() < 14
    classes = json.loads(answer.headers["x-classes"])
    assert abs(sum(share for share, _ in classes.values()) + float(answer.headers["x-unknown-share"]) - 1) < 0.01
    other = np.frombuffer(client.get("/api/samples/2/map").content, dtype="<i2")  # an image without strokes
    assert other.size == 40 * 56
    assert set(client.get("/api/class-spectra").json()) <= set(DataSpec.from_file(scene).tree.leaves)


def test_the_page_gets_suggestions_from_the_live_model(client: TestClient, scene: Path) -> None:
    assert client.get("/api/samples/0/suggestions").status_code == 204  # no model yet
    spec = strokes_of_every_class(client, scene, strokes=1)
    client.app.state.hsiseg.worker.wait_for_model()  # type: ignore[attr-defined]
    found = client.get("/api/samples/0/suggestions?count=3").json()
    assert [s["rank"] for s in found] == [1, 2, 3] and all(s["outline"] and s["accept"] for s in found)
    assert all(all(name in spec.tree for name in s["accept"]) for s in found)
    assert "count must be in 1..20" in client.get("/api/samples/0/suggestions?count=50").json()["error"]
    # "no class here": the first suggestion is declined and never offered again in this session
    view = client.app.state.hsiseg.session.view(client.app.state.hsiseg.session.sample_ids()[0])  # type: ignore[attr-defined]
    first = view.offered[0].copy()
    assert client.post("/api/samples/0/suggestions/1/decline").status_code == 204
    np.testing.assert_array_equal(view.declined, first)
    assert len(client.get("/api/samples/0/suggestions?count=20").json()) == len(view.offered)
    assert view.offered and not any((mask & first).any() for mask in view.offered)
    assert "rank must be one of the" in client.post("/api/samples/0/suggestions/99/decline").json()["error"]


def test_the_live_threshold_comes_from_held_out_strokes_only(scene: Path) -> None:
    from hsiseg.annotate.live_model import _values_at

    session = AnnotationSession(scene, "alice")
    spec = DataSpec.from_file(scene)
    sample_id = session.sample_ids()[0]
    truth = spec.read_truth(sample_id)
    for code in np.unique(truth[truth >= 0]):
        for rank in range(3):
            x, y = truth_point(spec, sample_id, int(code), rank)
            session.edit(sample_id, StrokeEdit("brush", ((float(x), float(y)),), spec.tree.leaves[int(code)], 1),
                         session.layer_state(sample_id)["version"])  # type: ignore[arg-type]  # fmt: skip
    session.view(sample_id)
    samples = session.live_samples()
    model = LiveModel(session.tree, session.preprocessing, int(samples[0].prepared.image.shape[0]), FAST)
    result = model.update(samples)
    _, validation = model._split(samples)
    held = _values_at(result.predictions, validation)
    expected = float(np.quantile(held, 1 - FAST.ood_keep))
    assert result.predictor.ood_threshold == pytest.approx(expected)
    train_only = {k: np.where(v != UNLABELLED, UNLABELLED, samples[0].codes) for k, v in validation.items()}
    assert not np.any((train_only[sample_id] != UNLABELLED) & (validation[sample_id] != UNLABELLED))
    with pytest.raises(Cancelled):
        model.update(samples, should_stop=lambda: True)


def test_the_final_model_writes_a_run_folder(client: TestClient, scene: Path, tmp_path: Path) -> None:
    strokes_of_every_class(client, scene, strokes=2)
    client.post("/api/final")
    worker: LiveWorker = client.app.state.hsiseg.worker  # type: ignore[attr-defined]
    assert client.post("/api/final").status_code == 400  # one at a time
    worker._final.join(timeout=300)  # type: ignore[union-attr]
    status = client.get("/api/status").json()
    assert status["final_state"] == "done", status["final_message"]
    run = Path(status["final_run"])
    assert run.parent == tmp_path / "runs" and (run / "args.json").is_file()
    assert (run / "checkpoints" / "best.json").is_file()


# --- the command line -----------------------------------------------------------------------------------------------


def test_the_cli_refuses_bad_arguments_in_one_line(scene: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["annotate"])
    assert result.exit_code == 2 and "give a data spec, or --demo" in result.output
    result = runner.invoke(cli, ["annotate", str(scene), "--annotator", "../evil"])
    assert result.exit_code == 2 and "must be 1-64 letters" in result.output
    result = runner.invoke(cli, ["annotate", str(scene), "--port", "70000"])
    assert result.exit_code == 2 and "--port must be in 0..65535" in result.output


def test_a_folder_of_cubes_with_a_tree_becomes_a_spec(demo_folder: Path, tmp_path: Path) -> None:
    from hsiseg.annotate.demo import folder_scene

    folder = tmp_path / "cubes"
    shutil.copytree(demo_folder / "cubes", folder)
    spec_path = folder_scene(folder, demo_folder / "label_tree.yaml")
    spec = DataSpec.from_file(spec_path)
    assert len(spec.samples) == 3 and {s.subject for s in spec.samples.values()} == {"surgery01", "surgery02",
                                                                                     "surgery03"}  # fmt: skip
    session = AnnotationSession(spec_path, "carol")
    sample_id = session.sample_ids()[2]
    session.edit(sample_id, StrokeEdit("brush", ((3.0, 3.0),), "necrosis", 1), 0)
    labels = DataSpec.from_file(spec_path).read_annotation(sample_id)
    assert labels[3, 3] == spec.tree.index("necrosis") and (labels != UNLABELLED).sum() == 1
    result = CliRunner().invoke(cli, ["annotate", str(tmp_path / "cubes" / "surgery01")])
    assert result.exit_code == 2 and "needs --tree TREE.yaml" in result.output


def test_frames_of_a_recording_become_samples(demo_folder: Path, tmp_path: Path) -> None:
    from hsiseg.annotate.demo import recording_scene
    from hsiseg.io import read_cube
    from hsiseg.io.camera import CameraDescription
    from hsiseg.io.recording import MosaicVideo, open_recording
    from hsiseg.synthetic.dataset import demo_tree
    from hsiseg.synthetic.recording import write_demo_recording

    video, camera = write_demo_recording(tmp_path / "recording", demo_tree(), 6, (40, 56), 11)
    spec_path = recording_scene(video, camera, demo_folder / "label_tree.yaml", every=2)
    spec = DataSpec.from_file(spec_path)
    assert list(spec.samples) == ["frame000000", "frame000002", "frame000004"]
    expected = MosaicVideo(open_recording(video), CameraDescription.from_file(camera)).cube(2)
    written = read_cube(spec.resolve(spec.samples["frame000002"].cube))
    np.testing.assert_array_equal(written.data, expected.data)  # calibrated and demosaicked, as predict sees it
    np.testing.assert_allclose(written.wavelengths, expected.wavelengths)
    session = AnnotationSession(spec_path, "dave")
    state = session.edit("frame000004", StrokeEdit("brush", ((2.0, 2.0),), "metal", 1), 0)
    assert state["version"] == 1 and recording_scene(video, camera, demo_folder / "label_tree.yaml") == spec_path
    result = CliRunner().invoke(cli, ["annotate", str(video), "--camera", str(camera)])
    assert result.exit_code == 2 and "a recording needs --tree" in result.output
