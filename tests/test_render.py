"""hsiseg.render: RGB of cubes that are not reflectance or miss the visible range (issue 12, item 17), and image
writers that take ``str`` paths as well as ``Path`` (item 18)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hsiseg.errors import HsisegWarning
from hsiseg.render import cie_rgb, node_colours, overlay, rgb, save_indexed_png, save_panel, save_png, window_rgb
from hsiseg.tree import LabelTree
from tests.conftest import UNBALANCED

VISIBLE = np.arange(400, 701, 10.0)  # 31 bands, CIE coverage above 0.8


def counts_cube() -> np.ndarray:
    """(16, 16, 31) 12-bit counts: brightness rises from 0 (left) to 4095 (right), a slightly reddish spectrum."""
    ramp = np.linspace(0, 1, 16)[None, :, None]
    spectrum = np.linspace(0.6, 1.0, len(VISIBLE))[None, None, :]
    return np.broadcast_to(4095 * ramp * spectrum, (16, 16, len(VISIBLE))).astype(np.float32)


def test_counts_render_as_an_image_not_white() -> None:
    cube = counts_cube()
    original = cube.copy()
    with pytest.warns(HsisegWarning, match="look like raw counts, not reflectance") as records:
        image = rgb(cube, VISIBLE)
    assert len([r for r in records if issubclass(r.category, HsisegWarning)]) == 1
    assert "reader option 'scale'" in str(records[0].message)
    np.testing.assert_array_equal(cube, original)  # the input is not modified
    white = (image >= 250).all(-1)
    assert white.mean() < 0.15  # today: every pixel is white
    grey = image.mean(axis=(0, 2))
    assert grey[0] < 10 and (np.diff(grey) >= 0).all() and grey[8] < 220  # a visible ramp from black
    assert image[0, 15, 0] >= image[0, 15, 2]  # reddish spectrum: red at least blue


def test_counts_render_like_the_same_cube_as_reflectance() -> None:
    cube = counts_cube()
    with pytest.warns(HsisegWarning):
        image = cie_rgb(cube, VISIBLE)
    scale = np.percentile(cube, 99)
    np.testing.assert_array_equal(image, cie_rgb(cube / scale, VISIBLE))


def test_reflectance_renders_without_warning() -> None:
    cube = np.random.default_rng(0).uniform(0, 1.2, (8, 8, len(VISIBLE)))  # a few specular values above 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = rgb(cube, VISIBLE)
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8


def test_cie_of_a_near_infrared_cube_warns_and_renders_band_windows() -> None:
    nm = np.linspace(900, 1700, 64)
    cube = np.random.default_rng(1).uniform(0, 1, (6, 7, 64))
    with pytest.warns(HsisegWarning, match=r"\(900-1700 nm\) covers 0% .* rendered from band windows instead"):
        image = rgb(cube, nm, method="cie")
    np.testing.assert_array_equal(image, window_rgb(cube, nm))


def test_cie_of_a_cube_starting_at_500_nm_warns() -> None:
    nm = np.linspace(500, 1000, 100)
    cube = np.random.default_rng(2).uniform(0, 1, (4, 4, 100))
    with pytest.warns(HsisegWarning, match=r"covers \d+% of the visible .* colours are not faithful"):
        image = rgb(cube, nm, method="cie")
    np.testing.assert_array_equal(image, cie_rgb(cube, nm))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(rgb(cube, nm), window_rgb(cube, nm))  # auto chooses quietly


def test_writers_take_str_paths(tmp_path: Path) -> None:
    tree = LabelTree.from_dict(UNBALANCED)
    colours = node_colours(tree)
    image = np.zeros((5, 6, 3), dtype=np.uint8)
    codes = np.zeros((5, 6), dtype=np.int64)
    codes[0, 0] = -1
    save_png(str(tmp_path / "image.png"), image)
    save_indexed_png(str(tmp_path / "labels.png"), codes, colours[: tree.num_leaves])
    save_panel(str(tmp_path / "panel.png"), image, overlay(image, codes, colours), tree, codes, colours)
    assert np.array(Image.open(tmp_path / "image.png")).shape == (5, 6, 3)
    assert np.array(Image.open(tmp_path / "labels.png"))[0, :2].tolist() == [0, 1]
    assert Image.open(tmp_path / "panel.png").size[0] > 12


def sibling_groups(tree: LabelTree) -> list[list[int]]:
    return [[tree.node(name).code for name in tree.top_level]] + [
        list(n.children) for n in tree.iter_depth_first() if n.children
    ]


def min_delta_e(colours: np.ndarray, groups: list[list[int]]) -> float:
    from itertools import combinations

    from skimage.color import deltaE_ciede2000, rgb2lab

    lab = rgb2lab(colours[None])[0]
    return min(float(deltaE_ciede2000(lab[a], lab[b])) for group in groups for a, b in combinations(group, 2))


@pytest.mark.parametrize("name", ["neurosurgery", "indian_pines"])
def test_siblings_get_visibly_different_shades_of_their_family_hue(name: str) -> None:
    import colorsys

    from tests.conftest import REPO

    tree = LabelTree.from_file(REPO / "data_specs" / "trees" / f"{name}.yaml")
    colours = node_colours(tree)
    assert min_delta_e(colours, sibling_groups(tree)) >= 10  # CIEDE2000; about 2 is a just-noticeable difference
    assert min_delta_e(colours, [list(range(tree.num_leaves))]) >= 10  # every pair of leaves, families included
    for family in tree.top_level:
        hue = colorsys.rgb_to_hsv(*colours[tree.node(family).code])[0]
        for node in tree.iter_depth_first():
            if tree.path(node.name)[0] == family and not node.color:
                offset = abs((colorsys.rgb_to_hsv(*colours[node.code])[0] - hue + 0.5) % 1 - 0.5)
                assert offset <= 0.13, (node.name, offset)  # within +-45 degrees: still the family's hue


def test_a_hundred_leaves_stay_distinguishable() -> None:
    big = {"name": "root", "children": [
        {"name": f"f{f}", "children": [{"name": f"g{f}{g}", "children": [f"l{f}{g}{leaf}" for leaf in range(5)]}
                                       for g in range(5)]} for f in range(4)]}  # fmt: skip
    tree = LabelTree.from_dict(big)
    assert tree.num_leaves == 100
    assert min_delta_e(node_colours(tree), [list(range(tree.num_leaves))]) >= 5


def test_legend_swatches_show_the_colours_drawn(tmp_path: Path) -> None:
    tree = LabelTree.from_dict(UNBALANCED)
    colours = node_colours(tree)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 40, 3)).astype(np.uint8)
    codes = np.zeros((40, 40), dtype=np.int64)
    codes[:, 20:] = 3
    codes[:5] = -1  # unknown
    drawn = overlay(image, codes, colours, 0.5)
    save_panel(tmp_path / "panel.png", image, drawn, tree, codes, colours, opacity=0.5)
    canvas = np.asarray(Image.open(tmp_path / "panel.png").convert("RGB"))
    legend = canvas[:, 2 * 320 :]  # right of the (enlarged) image and overlay
    for code in (0, 3):
        mean = np.round(drawn[codes == code].astype(np.float64).mean(axis=0)).astype(np.uint8)
        plain = np.round(colours[code] * 255).astype(np.uint8)
        assert (legend == mean).all(axis=-1).sum() >= 13 * 21, code  # the swatch (inside its outline): mean drawn
        assert not (legend == plain).all(axis=-1).any() or (plain == mean).all(), code  # not the undrawn colour
    outlined = tmp_path / "outlines.png"
    save_panel(outlined, image, overlay(image, codes, colours, contours=True), tree, codes, colours, opacity=None)
    plain = np.round(colours[3] * 255).astype(np.uint8)
    legend = np.asarray(Image.open(outlined).convert("RGB"))[:, 2 * 320 :]
    assert (legend == plain).all(axis=-1).sum() >= 13 * 21  # outlines are opaque: the plain colour
