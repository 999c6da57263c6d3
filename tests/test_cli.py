"""End-to-end tests of the ``hsiseg`` command line (typer runner and the installed console script)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from hsiseg.losses import LOSSES
from hsiseg_cli.main import app
from tests.conftest import REPO, UNBALANCED

runner = CliRunner()


def test_tree_prints_the_builtin_demo_tree() -> None:
    result = runner.invoke(app, ["tree"])
    assert result.exit_code == 0, result.output
    assert "neurosurgery  (14 leaves, 22 nodes, depth 3)" in result.output
    assert "artery  channel 11, depth 3, w=1" in result.output
    assert "vessel  code 21, depth 2" in result.output


def test_tree_with_distances(tmp_path) -> None:
    path = tmp_path / "tree.yaml"
    path.write_text(yaml.safe_dump(UNBALANCED))
    result = runner.invoke(app, ["tree", str(path), "--distances"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│ 4 b1")]
    # row of leaf b1: distances to a1, a2, x, y, b1, c (edge b weighs 2)
    assert rows and rows[0].split("│")[2:8] == [f" {value} " for value in ("5", "5", "6", "6", "0", "4")]


def test_bad_tree_is_one_line_and_exit_code_2(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("children:\n  - {name: a, colr: red}\n  - b\n")
    result = runner.invoke(app, ["tree", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0] == (
        f"hsiseg: error: {path}: node 'root/a': unknown key 'colr' "
        "(allowed: name, children, weight, color, description)"
    )


def test_losses_lists_every_loss() -> None:
    result = runner.invoke(app, ["losses"])
    assert result.exit_code == 0
    for name in LOSSES:
        assert name in result.output


@pytest.mark.skipif(shutil.which("hsiseg") is None, reason="console script not installed")
def test_installed_console_script() -> None:
    shipped = REPO / "data_specs" / "trees" / "indian_pines.yaml"
    done = subprocess.run(["hsiseg", "tree", str(shipped)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "Stone-Steel-Towers  channel 15" in done.stdout
    missing = subprocess.run(["hsiseg", "tree", "missing.yaml"], capture_output=True, text=True, check=False)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "hsiseg: error: missing.yaml: label tree file not found"
    version = subprocess.run([sys.executable, "-m", "hsiseg_cli.main", "--version"], capture_output=True, text=True)
    assert version.stdout.strip().startswith("hsiseg ")


# --- hsiseg info / convert -------------------------------------------------------------------------------


def make_recordings(root):
    """A small 'surgery' folder: two Tivita frames in a sub-folder, one ENVI cube, one broken file."""
    import numpy as np

    from hsiseg.io import Cube, write_cube

    rng = np.random.default_rng(0)
    cubes = {}
    for name in ("frames/t0_SpecCube.dat", "frames/t1_SpecCube.dat", "scan.hdr"):
        cube = Cube(rng.random((6, 5, 100)).astype(np.float32), np.linspace(500, 1000, 100))
        write_cube(root / name, cube)
        cubes[name] = cube
    return cubes


def test_info_table_and_json(tmp_path) -> None:
    import json

    make_recordings(tmp_path)
    result = runner.invoke(app, ["info", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "t0_SpecCube.dat" in result.output and "6 x 5 x 100" in result.output and "500-1000" in result.output
    result = runner.invoke(app, ["info", str(tmp_path / "scan.hdr"), "--json"])
    summary = json.loads(result.output)
    assert summary["format"] == "envi" and summary["shape"] == [6, 5, 100] and summary["nan_count"] == 0
    assert summary["file_bytes"] == (tmp_path / "scan.hdr").stat().st_size + (tmp_path / "scan.img").stat().st_size


def test_info_reports_bad_files_and_exits_2(tmp_path) -> None:
    make_recordings(tmp_path)
    (tmp_path / "frames" / "t2_SpecCube.dat").write_bytes(b"\x00" * 30)
    result = runner.invoke(app, ["info", str(tmp_path)])
    assert result.exit_code == 2
    assert "t2_SpecCube.dat: header says 0 x 0 x 0" in result.output
    assert "t1_SpecCube.dat" in result.output  # the others are still listed


def test_convert_folder_to_hdf5_cache_and_resume(tmp_path) -> None:
    import numpy as np

    from hsiseg.io import read_cube

    cubes = make_recordings(tmp_path / "surgery")
    source_bytes = {p: p.read_bytes() for p in (tmp_path / "surgery").rglob("*") if p.is_file()}
    out = tmp_path / "cache"
    result = runner.invoke(app, ["convert", str(tmp_path / "surgery"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "converted 3 of 3 cubes" in result.output
    for name, cube in cubes.items():
        back = read_cube(out / name.replace("_SpecCube.dat", "_SpecCube.h5").replace(".hdr", ".h5"))
        assert back.data.tobytes() == cube.data.tobytes()
        np.testing.assert_array_equal(back.wavelengths, cube.wavelengths)
    assert {p: p.read_bytes() for p in source_bytes} == source_bytes  # inputs untouched
    again = runner.invoke(app, ["convert", str(tmp_path / "surgery"), "-o", str(out)])
    assert again.exit_code == 0 and "0 of 3 cubes" in again.output and "3 skipped" in again.output


def test_convert_reports_a_failed_file_and_goes_on(tmp_path) -> None:
    make_recordings(tmp_path / "in")
    (tmp_path / "in" / "bad_SpecCube.dat").write_bytes(b"\x00" * 30)
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--to", "envi"])
    assert result.exit_code == 2
    assert "converted 3 of 4 cubes" in result.output and "1 failed" in result.output
    assert (tmp_path / "out" / "scan.hdr").is_file() and (tmp_path / "out" / "scan.img").is_file()


def test_convert_reader_options(tmp_path) -> None:
    import numpy as np

    np.save(tmp_path / "c.npy", np.ones((2, 3, 4), dtype=np.float32))
    result = runner.invoke(
        app, ["convert", str(tmp_path / "c.npy"), "-o", str(tmp_path / "o"), "-O", "wavelengths=[1, 2, 3, 4]"]
    )
    assert result.exit_code == 0, result.output
    bad = runner.invoke(app, ["convert", str(tmp_path / "c.npy"), "-o", str(tmp_path / "o"), "-O", "oops"])
    assert bad.exit_code == 2 and "--option 'oops': expected KEY=VALUE" in bad.output


def test_outputs_that_name_the_wrong_kind_of_path_are_one_line(tmp_path) -> None:
    from hsiseg.synthetic.dataset import generate_demo_data

    spec = generate_demo_data(tmp_path / "data", surgeries=3, frames=1, shape=(24, 32), seed=1)
    cube = str(next((tmp_path / "data" / "cubes").rglob("*.dat")))
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    folder = tmp_path / "folder"
    folder.mkdir()
    commands = {
        "train": ["train", str(spec), "-o", str(taken), "--steps", "1"],
        "demo-data": ["demo-data", str(taken)],
        "convert": ["convert", cube, "-o", str(taken)],
        "render": ["render", cube, "-o", str(folder)],
    }
    for name, arguments in commands.items():
        result = runner.invoke(app, arguments)
        assert result.exit_code == 2, (name, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("hsiseg: error: ")]
        assert "Traceback" not in result.output and len(errors) == 1, (name, result.output)
        assert errors[0].endswith("is a file, not a folder; choose a folder") or errors[0].endswith(
            "is a folder; give a file path"
        ), errors[0]
    assert taken.read_text() == "keep me" and list(folder.iterdir()) == []
