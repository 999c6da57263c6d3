"""Label trees of any size: 300 and 1,000 leaves through maps, PNGs, the HTML report and ``hsiseg tree``."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from hsiseg.export.html import _label_image, script_json
from hsiseg.render.overlay import node_colours, save_indexed_png
from hsiseg.synthetic.dataset import demo_tree, generate_demo_data
from hsiseg.synthetic.recording import write_demo_recording
from hsiseg.training import TrainConfig, train
from hsiseg.tree import LabelTree
from hsiseg_cli.main import app

runner = CliRunner()


def wide_tree(leaves: int) -> dict:
    """Four families of ``leaves // 4`` leaves each (at least 2 levels deep)."""
    per = leaves // 4
    return {"name": "big", "children": [
        {"name": f"family {f}", "children": [{"name": f"group {f}.{g}", "children": [
            f"leaf {f}.{g}.{k}" for k in range(per // 5)]} for g in range(5)]} for f in range(4)
    ]}  # fmt: skip


@pytest.mark.parametrize("leaves", [300, 1000])
def test_distance_rows_equal_the_matrix(leaves: int) -> None:
    tree = LabelTree.from_dict(wide_tree(leaves))
    assert tree.num_leaves == leaves
    matrix = tree.distance_matrix()
    for leaf in (0, 1, leaves // 2, leaves - 1):
        np.testing.assert_array_equal(tree.distance_row(leaf), matrix[leaf])


def test_distance_rows_with_weights_and_uneven_depths() -> None:
    tree = LabelTree.from_dict({"name": "r", "children": [
        "a", {"name": "b", "weight": 2.5, "children": ["c", {"name": "d", "weight": 0.5, "children": ["e", "f"]}]},
        {"name": "g", "children": ["h"]}]})  # fmt: skip
    for leaf in range(tree.num_leaves):
        np.testing.assert_allclose(tree.distance_row(leaf), tree.distance_matrix()[leaf])


@pytest.mark.parametrize("leaves", [300, 1000])
def test_label_pngs_keep_every_code(tmp_path: Path, leaves: int) -> None:
    tree = LabelTree.from_dict(wide_tree(leaves))
    codes = np.arange(-2, leaves).reshape(1, -1)
    save_indexed_png(tmp_path / "labels.png", codes, node_colours(tree)[:leaves])
    stored = np.asarray(Image.open(tmp_path / "labels.png"))
    np.testing.assert_array_equal(stored, np.where(codes >= 0, codes + 1, 0))
    embedded = _label_image(codes, wide=True).astype(np.int32)
    np.testing.assert_array_equal(embedded[..., 0] + 256 * embedded[..., 1] - 3, codes)


def test_hsiseg_tree_streams_the_distances_of_a_large_tree(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(wide_tree(1000)))
    result = runner.invoke(app, ["tree", str(path), "--distances"])
    assert result.exit_code == 0, result.output
    table = result.stdout[result.stdout.index("leaf,leaf 0.0.0") :]  # after the tree view
    rows = list(csv.reader(io.StringIO(table)))
    tree = LabelTree.from_file(path)
    assert rows[0][1:] == list(tree.leaves) and len(rows) == 1001
    assert [float(v) for v in rows[500][1:]] == pytest.approx(tree.distance_row(499))


def test_names_are_text_not_markup(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "children": [
        {"name": "glioma", "children": ["glioma [grade 2]", "glioma [grade 4]", "metastasis [/]"]}, "[bold]x"]}))
    result = runner.invoke(app, ["tree", str(path), "--distances"])
    assert result.exit_code == 0, result.output
    for name in ("glioma [grade 2]", "glioma [grade 4]", "metastasis [/]", "[bold]x"):
        assert name in result.output
    page_data = script_json({"name": "</script><!--<script>"})
    assert "<" not in page_data and json.loads(page_data)["name"] == "</script><!--<script>"


def test_a_300_leaf_model_end_to_end(tmp_path: Path) -> None:
    """Batch prediction and a recording's report with 300 leaves: every frame written, the report's label
    maps equal maps.h5 pixel for pixel."""
    spec = generate_demo_data(tmp_path / "data", surgeries=3, frames=1, shape=(24, 32), seed=1)
    tree = yaml.safe_load((tmp_path / "data" / "label_tree.yaml").read_text())
    tree["children"].append({"name": "extra", "children": [f"extra leaf {k}" for k in range(286)]})
    (tmp_path / "data" / "label_tree.yaml").write_text(yaml.safe_dump(tree))
    train(spec, tmp_path / "run", TrainConfig(steps=2, validate_every=2, model="pixel", refit=False, device="cpu"))
    model = tmp_path / "run" / "checkpoints" / "best.json"
    batch = runner.invoke(app, ["predict", str(model), str(tmp_path / "data" / "cubes"), "-o", str(tmp_path / "p")])
    assert batch.exit_code == 0, batch.output
    assert "3 frames predicted" in batch.output and len(list((tmp_path / "p").glob("*/panel.png"))) == 3
    recording, camera = write_demo_recording(tmp_path / "rec", demo_tree(), frames=3, shape=(24, 32))
    out = tmp_path / "r"
    streamed = runner.invoke(app, ["predict", str(model), str(recording), "--camera", str(camera), "-o", str(out)])
    assert streamed.exit_code == 0, streamed.output
    page = (out / "report.html").read_text()
    data = json.loads(page.split('<script id="report-data" type="application/json">')[1].split("</script>")[0])
    assert data["wide"] is True
    with h5py.File(out / "maps.h5") as maps:
        stored = maps["labels"][()]
    for slot, frame in enumerate(data["frames"]):
        png = np.asarray(Image.open(io.BytesIO(base64.b64decode(frame["labels"].split(",", 1)[1])))).astype(int)
        np.testing.assert_array_equal(png[..., 0] + 256 * png[..., 1] - data["offset"], stored[slot])


def browser() -> str | None:
    import shutil

    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
                None)  # fmt: skip


def renamed(node):
    """A tree mapping with the HOSTILE names in place of the demo's."""
    if isinstance(node, str):
        return HOSTILE.get(node, node)
    if isinstance(node, list):
        return [renamed(child) for child in node]
    return {key: renamed(value) if key in ("name", "children") else value for key, value in node.items()}


HOSTILE = {
    "grey matter": "grey <!--<script> matter",
    "white matter": "</script><img src=x onerror=document.title='owned'>",
    "tumour core": "$x^$ core & [bold]",
    "artery": "artery\u2028line",
    "vein": "vein</script><script>document.title='owned'</script>",
}


@pytest.mark.skipif(browser() is None, reason="no Chromium on this machine (Debian package chromium)")
def test_hostile_class_names_are_shown_as_text_in_the_report(tmp_path: Path) -> None:
    """Class names that look like markup, in a real browser: the page's script still runs (frame 0 drawn,
    one toggle per class), the names appear as text, and nothing from them becomes an element."""
    import subprocess

    spec = generate_demo_data(tmp_path / "data", surgeries=3, frames=1, shape=(24, 32), seed=1)
    tree_file = tmp_path / "data" / "label_tree.yaml"
    tree_file.write_text(yaml.safe_dump(renamed(yaml.safe_load(tree_file.read_text()))))
    document = yaml.safe_load(spec.read_text())
    labels = document["annotations"]["labels"]
    document["annotations"]["labels"] = {value: HOSTILE.get(name, name) for value, name in labels.items()}
    spec.write_text(yaml.safe_dump(document))
    tree = LabelTree.from_file(tmp_path / "data" / "label_tree.yaml")
    assert set(HOSTILE.values()) <= set(tree.leaves)
    train(spec, tmp_path / "run", TrainConfig(steps=30, validate_every=30, model="pixel", refit=False, device="cpu"))
    recording, camera = write_demo_recording(tmp_path / "rec", demo_tree(), frames=2, shape=(24, 32))
    out = tmp_path / "r"
    model = tmp_path / "run" / "checkpoints" / "best.json"
    result = runner.invoke(app, ["predict", str(model), str(recording), "--camera", str(camera), "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert "<img src=x" not in page and "<!--<script>" not in page
    command = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
               "--dump-dom", (out / "report.html").as_uri()]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    assert '<b id="name">frame 0' in dom  # the script ran to the end of drawing frame 0
    data = json.loads(page.split('<script id="report-data" type="application/json">')[1].split("</script>")[0])
    assert dom.count('type="checkbox"') == len(data["classes"])
    assert "<img src=\"x\"" not in dom and "owned" not in dom.split("<title>")[1].split("</title>")[0]
    shown = [entry["name"] for entry in data["classes"]]
    assert len(set(shown) & set(HOSTILE.values())) >= 2, shown  # the hostile names are in the legend
    for name in shown:  # every legend name is in the page as text (escaped by the DOM serialiser)
        escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert escaped in dom, name
