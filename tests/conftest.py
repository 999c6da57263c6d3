"""Shared fixtures: small label trees with known structure."""

from __future__ import annotations

from pathlib import Path

import pytest

from hsiseg.tree import LabelTree

REPO = Path(__file__).resolve().parents[1]

# An unbalanced tree: depth 3, a leaf at depth 1, a node with a single child, a non-unit edge weight.
UNBALANCED = {
    "name": "root",
    "children": [
        {"name": "a", "children": ["a1", "a2", {"name": "a3", "children": ["x", "y"]}]},
        {"name": "b", "weight": 2.0, "children": ["b1"]},
        "c",
    ],
}


@pytest.fixture
def unbalanced_tree() -> LabelTree:
    return LabelTree.from_dict(UNBALANCED)


@pytest.fixture
def demo_tree() -> LabelTree:
    return LabelTree.from_file(REPO / "data_specs" / "trees" / "neurosurgery.yaml")
