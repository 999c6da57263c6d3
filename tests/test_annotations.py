"""hsiseg.annotations: every format round-trips to the same label map; strokes rasterise where expected."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as imageio
import numpy as np
import pytest

from hsiseg import HsisegError, HsisegWarning, LabelTree
from hsiseg.annotations import (
    UNLABELLED,
    count_labels,
    merge_label_maps,
    rasterize_strokes,
    read_colour_image,
    read_heiporspectral,
    read_label_image,
    read_strokes,
)

U = UNLABELLED


def reference_map(tree: LabelTree) -> np.ndarray:
    label_map = np.full((6, 8), U, dtype=np.int32)
    label_map[1:3, 1:4] = tree.index("artery")
    label_map[4, 2:7] = tree.index("vein")
    label_map[0, 7] = tree.index("vessel")  # a partial label
    return label_map


@pytest.mark.parametrize("suffix", [".png", ".tif", ".npy"])
def test_label_image_round_trip(tmp_path: Path, demo_tree: LabelTree, suffix: str) -> None:
    expected = reference_map(demo_tree)
    values = {"artery": 3, "vein": 7, "vessel": 9}
    image = np.zeros(expected.shape, dtype=np.uint8)
    for name, value in values.items():
        image[expected == demo_tree.index(name)] = value
    path = tmp_path / f"labels{suffix}"
    np.save(path, image) if suffix == ".npy" else imageio.imwrite(path, image)
    got = read_label_image(path, demo_tree, {v: k for k, v in values.items()})
    np.testing.assert_array_equal(got, expected)


def test_label_image_with_other_ignore_value_and_errors(tmp_path: Path, demo_tree: LabelTree) -> None:
    image = np.full((3, 3), 255, dtype=np.uint8)
    image[1, 1] = 1
    path = tmp_path / "a.png"
    imageio.imwrite(path, image)
    got = read_label_image(path, demo_tree, {1: "bone"}, ignore_value=255)
    assert (got == U).sum() == 8 and got[1, 1] == demo_tree.index("bone")
    with pytest.raises(HsisegError, match=r"a.png: label values \[255\] are not in the spec's label table"):
        read_label_image(path, demo_tree, {1: "bone"})
    with pytest.raises(HsisegError, match="label 'femur' .* is not a node"):
        read_label_image(path, demo_tree, {1: "femur"}, ignore_value=255)
    with pytest.raises(HsisegError, match="annotation file not found"):
        read_label_image(tmp_path / "none.png", demo_tree, {})


def test_colour_image_round_trip(tmp_path: Path, demo_tree: LabelTree) -> None:
    expected = reference_map(demo_tree)
    colours = {"#ff0000": "artery", "#0000ff": "vein", "#ff00ff": "vessel"}
    rgb = np.zeros((*expected.shape, 3), dtype=np.uint8)
    rgb[expected == demo_tree.index("artery")] = (255, 0, 0)
    rgb[expected == demo_tree.index("vein")] = (0, 0, 255)
    rgb[expected == demo_tree.index("vessel")] = (255, 0, 255)
    imageio.imwrite(tmp_path / "c.png", rgb)
    np.testing.assert_array_equal(read_colour_image(tmp_path / "c.png", demo_tree, colours), expected)
    rgb[0, 0] = (1, 2, 3)
    imageio.imwrite(tmp_path / "d.png", rgb)
    with pytest.raises(HsisegError, match="colour #010203 is not in the spec's colour table"):
        read_colour_image(tmp_path / "d.png", demo_tree, colours)


def test_polyline_rasterisation_known_pixels(demo_tree: LabelTree) -> None:
    strokes = [{"label": "artery", "width": 1, "points": [[1, 2], [6, 2]]}]  # x = column, y = row
    label_map = rasterize_strokes(strokes, (5, 8), demo_tree, "test")
    expected = np.full((5, 8), U)
    expected[2, 1:7] = demo_tree.index("artery")
    np.testing.assert_array_equal(label_map, expected)
    wide = rasterize_strokes([{"label": "vein", "width": 3, "points": [[4, 4]]}], (9, 9), demo_tree, "t")
    assert (wide == demo_tree.index("vein")).sum() == 9  # a radius-1.5 disk: the 3 x 3 block
    assert wide[3:6, 3:6].min() == demo_tree.index("vein")


def test_polygon_fill_and_overdraw(tmp_path: Path, demo_tree: LabelTree) -> None:
    strokes = [
        {"label": "grey matter", "polygon": [[0, 0], [9, 0], [9, 9], [0, 9]]},
        {"label": "artery", "points": [[0, 5], [9, 5]], "width": 1},
    ]
    (tmp_path / "s.json").write_text(json.dumps({"strokes": strokes}))
    label_map = read_strokes(tmp_path / "s.json", demo_tree, (10, 10))
    assert (label_map[5] == demo_tree.index("artery")).all()
    assert (label_map[:5] == demo_tree.index("grey matter")).all()
    (tmp_path / "bad.json").write_text(json.dumps({"strokes": [{"label": "artery", "pts": [[0, 0]]}]}))
    with pytest.raises(HsisegError, match=r"bad.json: stroke 0: unknown keys \['pts'\]"):
        read_strokes(tmp_path / "bad.json", demo_tree, (3, 3))


def test_heiporspectral_masks_and_annotator_conflicts(tmp_path: Path, demo_tree: LabelTree) -> None:
    def mask(rows: slice, columns: slice) -> np.ndarray:
        image = np.zeros((4, 4), dtype=np.uint8)
        image[rows, columns] = 255
        return image

    stamp = "2021_02_05_15_28_51"
    imageio.imwrite(tmp_path / f"{stamp}#polygon#annotator1#blood#binary.png", mask(slice(0, 2), slice(0, 4)))
    imageio.imwrite(tmp_path / f"{stamp}#polygon#annotator2#blood#binary.png", mask(slice(0, 1), slice(0, 4)))
    imageio.imwrite(tmp_path / f"{stamp}#polygon#annotator2#bone#binary.png", mask(slice(1, 3), slice(0, 4)))
    maps = read_heiporspectral(tmp_path, demo_tree, {"blood": "pooled blood"})
    assert sorted(maps) == ["annotator1", "annotator2"]
    assert (maps["annotator1"][:2] == demo_tree.index("pooled blood")).all()
    with pytest.warns(HsisegWarning, match="4 pixels labelled differently"):
        merged = merge_label_maps(list(maps.values()))
    assert merged.conflicts == 4 and (merged.label_map[1] == U).all()  # row 1: blood vs bone
    assert (merged.label_map[0] == demo_tree.index("pooled blood")).all()
    assert (merged.label_map[2] == demo_tree.index("bone")).all()
    assert count_labels(merged.label_map, demo_tree) == {"bone": 4, "pooled blood": 4}
    with pytest.raises(HsisegError, match="label 'blood' is not a node"):
        read_heiporspectral(tmp_path, demo_tree)
