"""Packaging: every hsiseg package is installed, and the command line installs as hsiseg_cli, not cli."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")


def test_every_package_is_listed_and_the_cli_has_a_project_name() -> None:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(settings["tool"]["setuptools"]["packages"])
    modules = [path for path in (ROOT / "hsiseg").rglob("*.py") if "__pycache__" not in path.parts]
    found = {".".join(path.parent.relative_to(ROOT).parts) for path in modules}
    assert found - listed == set(), "add these packages to pyproject.toml's [tool.setuptools] packages"
    assert all((ROOT / name.replace(".", "/") / "__init__.py").is_file() for name in found)  # no namespace package
    assert "cli" not in listed and "hsiseg_cli" in listed
    assert settings["tool"]["setuptools"]["package-dir"] == {"hsiseg_cli": "cli"}
    assert settings["project"]["scripts"]["hsiseg"] == "hsiseg_cli.entry:main"
    for module in (ROOT / "cli").glob("*.py"):  # relative imports: the folder works under its installed name
        assert "from cli" not in module.read_text() and "import cli" not in module.read_text(), module
