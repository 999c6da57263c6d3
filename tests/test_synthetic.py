"""hsiseg.synthetic: the spectra carry the real chromophore features; scenes are seeded and well formed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hsiseg.io import read_cube
from hsiseg.synthetic.dataset import demo_tree, generate_demo_data
from hsiseg.synthetic.scene import make_scene
from hsiseg.synthetic.tissues import TISSUES, tissue_reflectance, wavelengths
from hsiseg_cli.main import app

NM = wavelengths()


def at(spectrum: np.ndarray, nm: float) -> float:
    return float(spectrum[..., np.argmin(np.abs(NM - nm))].mean())


@pytest.mark.parametrize("name", ["grey matter", "tumour core", "artery", "pooled blood"])
def test_oxyhaemoglobin_double_dip(name: str) -> None:
    r = tissue_reflectance(name)
    assert at(r, 542) < at(r, 560) > at(r, 576)  # HbO2 absorption peaks at 542 and 576 nm


def test_deoxyhaemoglobin_bump_near_760_nm() -> None:
    vein, artery = tissue_reflectance("vein"), tissue_reflectance("artery")
    assert at(vein, 757) < (at(vein, 720) + at(vein, 800)) / 2  # Hb absorbs at 757 nm
    assert at(vein, 757) < at(artery, 757)  # and deoxygenated blood more than oxygenated


@pytest.mark.parametrize("name", ["grey matter", "white matter", "necrosis"])
def test_water_dip_near_970_nm(name: str) -> None:
    r = tissue_reflectance(name)
    assert at(r, 970) < at(r, 930) and at(r, 970) < at(r, 1000)


def test_close_siblings_are_close_but_different() -> None:
    names = list(TISSUES)
    spectra = {n: tissue_reflectance(n) for n in names}
    distance = {(a, b): np.abs(spectra[a] - spectra[b]).mean() for a in names for b in names if a < b}
    close = distance[("artery", "vein")], distance[("grey matter", "white matter")]
    assert all(d > 0.01 for d in close)
    assert distance[("tumour core", "tumour infiltration")] < distance[("bone", "tumour core")]


def test_scene_is_seeded_and_consistent() -> None:
    tree = demo_tree()
    first = make_scene(tree, np.random.default_rng(3), (48, 64))
    second = make_scene(tree, np.random.default_rng(3), (48, 64))
    assert first.cube.tobytes() == second.cube.tobytes()
    assert first.cube.shape == (48, 64, 100) and first.cube.dtype == np.float32
    assert np.isfinite(first.cube).all() and first.cube.min() > -0.1
    labelled = first.scribbles != -100
    assert 0 < labelled.mean() < 0.1
    np.testing.assert_array_equal(first.scribbles[labelled], first.truth[labelled])


def test_partial_labels_name_parents() -> None:
    tree = demo_tree()
    scene = make_scene(tree, np.random.default_rng(5), (64, 64), partial_fraction=1.0)
    codes = set(np.unique(scene.scribbles[scene.scribbles != -100]).tolist())
    assert codes and all(code >= tree.num_leaves or tree.node(code).parent is None for code in codes)


def test_generated_files_are_real_formats(tmp_path: Path) -> None:
    generate_demo_data(tmp_path, surgeries=2, frames=1, shape=(32, 40))
    tivita = read_cube(tmp_path / "cubes/surgery01/frame00_SpecCube.dat")
    envi = read_cube(tmp_path / "cubes/surgery02/frame00.hdr")
    assert tivita.meta["format"] == "tivita" and envi.meta["format"] == "envi"
    np.testing.assert_allclose(envi.wavelengths, NM)
    assert (tmp_path / "cubes/surgery01/frame00_SpecCube.dat").stat().st_size == 12 + 4 * 32 * 40 * 100


def test_demo_data_cli_refuses_to_overwrite(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(
        app, ["demo-data", str(tmp_path), "--surgeries", "2", "--frames", "1", "--height", "24", "--width", "24"]
    )
    assert first.exit_code == 0, first.output
    assert "wrote 2 scenes of 2 surgeries" in first.output
    again = runner.invoke(app, ["demo-data", str(tmp_path), "--surgeries", "2", "--frames", "1"])
    assert again.exit_code == 2 and "exists; choose another folder or pass --overwrite" in again.output
