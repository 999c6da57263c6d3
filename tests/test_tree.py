"""hsiseg.tree: parsing, validation errors, lookups and the tree matrices against brute force."""

from __future__ import annotations

import json
import math
from itertools import combinations

import numpy as np
import pytest
import yaml
from hypothesis import given, settings

from hsiseg import HsisegError, LabelTree
from tests.conftest import REPO, UNBALANCED
from tests.strategies import random_trees


def path_distance(tree: LabelTree, a: str, b: str) -> float:
    """Brute force: walk both paths to the root and add the weights of the edges not shared."""
    path_a, path_b = tree.path(a), tree.path(b)
    shared = 0
    while shared < min(len(path_a), len(path_b)) and path_a[shared] == path_b[shared]:
        shared += 1
    return sum(tree.node(name).weight for name in path_a[shared:] + path_b[shared:])


# --- structure and order ---------------------------------------------------------------------------------


def test_leaves_follow_file_order_and_codes(unbalanced_tree: LabelTree) -> None:
    tree = unbalanced_tree
    assert tree.leaves == ("a1", "a2", "x", "y", "b1", "c")
    assert [tree.index(name) for name in tree.leaves] == list(range(6))
    assert [tree.index(name) for name in ("a", "a3", "b")] == [6, 7, 8]
    assert tree.num_leaves == 6 and tree.num_nodes == 9 and tree.depth == 3
    assert tree.top_level == ("a", "b", "c")


def test_lookups(unbalanced_tree: LabelTree) -> None:
    tree = unbalanced_tree
    assert tree.leaves_of("a") == ("a1", "a2", "x", "y")
    assert tree.leaves_of("x") == ("x",)
    assert tree.depth_of("x") == 3 and tree.depth_of("c") == 1
    assert tree.path("y") == ("a", "a3", "y")
    assert tree.ancestor("y", 1) == "a" and tree.ancestor("y", 2) == "a3" and tree.ancestor("y", 3) == "y"
    assert tree.ancestor("c", 3) == "c"  # a shallow leaf is its own ancestor at deeper levels
    assert tree.leaf_index("b1") == 4
    with pytest.raises(HsisegError, match="internal node"):
        tree.leaf_index("a3")
    with pytest.raises(HsisegError, match="unknown label 'zebra'"):
        tree.index("zebra")


def test_level_map_and_level_codes(unbalanced_tree: LabelTree) -> None:
    tree = unbalanced_tree
    names = [[tree.node(int(code)).name for code in row] for row in tree.level_map()]
    assert names == [
        ["a", "a", "a", "a", "b", "c"],
        ["a1", "a2", "a3", "a3", "b1", "c"],
        ["a1", "a2", "x", "y", "b1", "c"],
    ]
    level_names = [[tree.node(int(c)).name for c in tree.level_codes(d)] for d in (1, 2, 3)]
    assert level_names == [["a", "b", "c"], ["a1", "a2", "a3", "b1", "c"], list(tree.leaves)]


def test_ancestor_matrix_matches_leaves_of(unbalanced_tree: LabelTree) -> None:
    tree = unbalanced_tree
    ancestors = tree.ancestor_matrix()
    assert ancestors.shape == (9, 6)
    np.testing.assert_array_equal(ancestors[:6], np.eye(6))
    for node in tree.nodes:
        expected = [leaf in tree.leaves_of(node.name) for leaf in tree.leaves]
        np.testing.assert_array_equal(ancestors[node.code], expected)
    assert not ancestors.flags.writeable


def test_distance_matrix_hand_computed(unbalanced_tree: LabelTree) -> None:
    distances = unbalanced_tree.distance_matrix()
    # a1-a2: 2 edges; a1-x: a1, a3, x; a1-b1: a1, a, b (weight 2), b1; x-b1: x, a3, a, b(2), b1
    assert distances[0, 1] == 2 and distances[0, 2] == 3 and distances[0, 4] == 5 and distances[2, 4] == 6
    assert distances[4, 5] == 4  # b1, b (2), c


@settings(max_examples=60, deadline=None)
@given(random_trees(max_depth=3))
def test_distance_matrix_is_the_weighted_path_length(tree: LabelTree) -> None:
    distances = tree.distance_matrix()
    for (i, a), (j, b) in combinations(enumerate(tree.leaves), 2):
        assert math.isclose(distances[i, j], path_distance(tree, a, b))
    np.testing.assert_allclose(distances, distances.T)
    np.testing.assert_array_equal(np.diag(distances), 0)
    # a tree metric satisfies the four-point condition, hence the triangle inequality
    assert (distances[:, :, None] <= distances[:, None, :] + distances[None, :, :].transpose(0, 2, 1) + 1e-9).all()


@settings(max_examples=40, deadline=None)
@given(random_trees(max_depth=3))
def test_node_distance_collapses_the_subtree(tree: LabelTree) -> None:
    rows = tree.node_distance_matrix()
    np.testing.assert_array_equal(rows[: tree.num_leaves], tree.distance_matrix())
    for node in tree.nodes[tree.num_leaves :]:
        under = set(tree.leaves_of(node.name))
        for leaf_index, leaf in enumerate(tree.leaves):
            if leaf in under:
                assert rows[node.code, leaf_index] == 0
            else:
                # path from the node to the leaf = distance from any leaf below, minus the part below
                below = tree.leaves_of(node.name)[0]
                depth_below = path_distance(tree, below, node.name) if below != node.name else 0
                expected = path_distance(tree, below, leaf) - depth_below
                assert math.isclose(rows[node.code, leaf_index], expected)


def test_flat_tree_distance_is_two_minus_two_identity() -> None:
    tree = LabelTree.from_dict({"children": ["a", "b", "c", "d"]})
    np.testing.assert_array_equal(tree.distance_matrix(), 2 * (1 - np.eye(4)))
    assert tree.depth == 1 and tree.name == "root"


# --- weights ----------------------------------------------------------------------------------------------


def test_exponential_weight_scheme_and_explicit_override() -> None:
    tree = LabelTree.from_dict(
        {
            "weight_scheme": {"type": "exponential", "gamma": 0.5},
            "children": [{"name": "a", "children": ["a1", {"name": "a2", "weight": 3}]}, "b"],
        }
    )
    assert tree.node("a").weight == pytest.approx(math.exp(-0.5))
    assert tree.node("a1").weight == pytest.approx(math.exp(-1.0))
    assert tree.node("a2").weight == 3
    assert tree.distance_matrix()[0, 1] == pytest.approx(math.exp(-1.0) + 3)


def test_per_depth_weight_scheme() -> None:
    tree = LabelTree.from_dict(
        {
            "weight_scheme": {"type": "per-depth", "weights": [4, 1]},
            "children": [{"name": "a", "children": ["x", "y"]}, "b"],
        }
    )
    assert tree.node("a").weight == 4 and tree.node("x").weight == 1
    assert tree.distance_matrix()[tree.leaf_index("x"), tree.leaf_index("b")] == 1 + 4 + 4


# --- files ------------------------------------------------------------------------------------------------


def test_yaml_and_json_files_round_trip(tmp_path, unbalanced_tree: LabelTree) -> None:
    (tmp_path / "t.json").write_text(json.dumps(UNBALANCED))
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(unbalanced_tree.to_dict()))
    for path in (tmp_path / "t.json", tmp_path / "t.yaml"):
        tree = LabelTree.from_file(path)
        assert tree.leaves == unbalanced_tree.leaves
        np.testing.assert_array_equal(tree.distance_matrix(), unbalanced_tree.distance_matrix())


def test_data_spec_with_label_tree_path(tmp_path) -> None:
    (tmp_path / "trees").mkdir()
    (tmp_path / "trees" / "t.yaml").write_text(yaml.safe_dump(UNBALANCED))
    (tmp_path / "spec.yaml").write_text("label_tree: trees/t.yaml\n")
    assert LabelTree.from_file(tmp_path / "spec.yaml").num_leaves == 6


def test_shipped_trees(demo_tree: LabelTree) -> None:
    assert demo_tree.top_level == (
        "surgical equipment",
        "abnormal tissue",
        "normal tissue",
        "vascular structures",
    )
    assert demo_tree.num_leaves >= 12
    for a, b in [("artery", "vein"), ("grey matter", "white matter"), ("tumour core", "tumour infiltration")]:
        assert demo_tree.node(a).parent == demo_tree.node(b).parent
    pines = LabelTree.from_file(REPO / "data_specs" / "trees" / "indian_pines.yaml")
    assert pines.num_leaves == 16
    # the packaged copies (used when hsiseg is installed without the repository) are identical
    for name in ("neurosurgery", "indian_pines"):
        shipped = (REPO / "data_specs" / "trees" / f"{name}.yaml").read_bytes()
        assert (REPO / "hsiseg" / "resources" / f"{name}_tree.yaml").read_bytes() == shipped


def test_colors_are_normalised(demo_tree: LabelTree) -> None:
    assert demo_tree.node("vascular structures").color == "#c0392b"
    tree = LabelTree.from_dict({"children": [{"name": "a", "colour": "red"}, "b"]})
    assert tree.node("a").color == "#ff0000"


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"children": []}, "the tree is empty"),
        ({"children": ["only"]}, "has 1 leaf; at least 2"),
        (
            {"children": [{"name": "a", "children": ["x"]}, {"name": "b", "children": ["x"]}]},
            r"duplicate node names \['x'\]",
        ),
        ({"name": "a", "children": ["a", "b"]}, r"duplicate node names \['a'\]"),
        (
            {"children": [{"name": "a", "weight": -1}, "b"]},
            "node 'root/a': 'weight': Input should be greater than or equal to 0",
        ),
        ({"children": [{"name": "a", "colr": "red"}, "b"]}, "node 'root/a': unknown key 'colr'"),
        ({"children": ["a", "b"], "levels": 3}, "unknown key 'levels'"),
        ({"children": [{"name": "a", "color": "nope"}, "b"]}, "'nope' is not a colour"),
        ({"children": [3, "b"]}, "expected a node mapping or a leaf name, got int"),
        (
            {"children": [{"name": "a", "children": [{"weight": 1}]}, "b"]},
            "node 'root/a/#0': 'name': Field required",
        ),
        ({"children": "ab"}, "'children': Input should be a valid list"),
        ({"weight_scheme": {"type": "cubic"}, "children": ["a", "b"]}, "weight_scheme"),
    ],
)
def test_invalid_trees_raise_one_clear_error(data, message) -> None:
    with pytest.raises(HsisegError, match=message):
        LabelTree.from_dict(data, source="trees/bad.yaml")


def test_errors_name_the_source(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("children: [a]\n")
    with pytest.raises(HsisegError, match=f"{path}: the tree has 1 leaf"):
        LabelTree.from_file(path)


def test_not_a_mapping() -> None:
    with pytest.raises(HsisegError, match="must be a mapping"):
        LabelTree.from_dict(["a", "b"])  # type: ignore[arg-type]


def test_yaml_alias_cycle_and_shared_subtree() -> None:
    cyclic = yaml.safe_load("&x {name: r, children: [{name: a, children: [*x]}, b]}")
    with pytest.raises(HsisegError, match="contains itself"):
        LabelTree.from_dict(cyclic)
    shared = yaml.safe_load("{children: [&s {name: a, children: [x, y]}, *s]}")
    with pytest.raises(HsisegError, match="appears under two parents"):
        LabelTree.from_dict(shared)


def test_parent_map_form_and_its_cycles() -> None:
    tree = LabelTree.from_parents({"vessel": None, "artery": "vessel", "vein": "vessel", "bone": None})
    assert tree.leaves == ("artery", "vein", "bone")
    with pytest.raises(HsisegError, match="cycle: a -> b -> a"):
        LabelTree.from_parents({"a": "b", "b": "a", "c": None})
    with pytest.raises(HsisegError, match="parent 'zz' of 'a' is not a node"):
        LabelTree.from_parents({"a": "zz", "b": None})


def test_file_errors(tmp_path) -> None:
    with pytest.raises(HsisegError, match="not found"):
        LabelTree.from_file(tmp_path / "missing.yaml")
    bad = tmp_path / "t.yaml"
    bad.write_text("children: [a, b\n")
    with pytest.raises(HsisegError, match=r"t.yaml: line \d+, column \d+: invalid YAML"):
        LabelTree.from_file(bad)
    bad_json = tmp_path / "t.json"
    bad_json.write_text('{"children": [}')
    with pytest.raises(HsisegError, match="line 1, column 15: invalid JSON"):
        LabelTree.from_file(bad_json)
    other = tmp_path / "t.txt"
    other.write_text("x")
    with pytest.raises(HsisegError, match="unknown label tree format '.txt'"):
        LabelTree.from_file(other)
