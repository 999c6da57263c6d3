"""End-to-end tests of the ``hsiseg`` command line (typer runner and the installed console script)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from hsiseg.losses import LOSSES
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
    version = subprocess.run([sys.executable, "-m", "cli.main", "--version"], capture_output=True, text=True)
    assert version.stdout.strip().startswith("hsiseg ")
