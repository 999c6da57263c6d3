"""The nodes of a label tree: :class:`TreeNode`, and numbering a validated tree spec into target codes.

Leaves take codes ``0 .. C-1`` in depth-first (file) order, internal nodes ``C .. N-1`` in the same order;
see :mod:`hsiseg.tree` for the conventions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hsiseg.errors import HsisegError
from hsiseg.tree.schema import WeightScheme, _NodeSpec, _TreeSpec, as_node

__all__ = ["NumberedNodes", "TreeNode", "number_nodes"]

_Entry = tuple[_NodeSpec, int, int | None]  # a node as written, its depth, its parent's depth-first position


@dataclass(frozen=True)
class TreeNode:
    """One non-root node of a :class:`~hsiseg.tree.LabelTree`.

    Attributes
    ----------
    name: unique name of the node.
    code: target code (leaves: channel index ``0..C-1``; internal nodes: ``C..N-1``).
    depth: 1 for children of the root.
    parent: code of the parent, or ``None`` for children of the root.
    children: codes of the children, in listed order (empty for a leaf).
    weight: weight of the edge to the parent.
    color: display colour as ``'#rrggbb'``, or ``None`` when the file gives none.
    """

    name: str
    code: int
    depth: int
    parent: int | None
    children: tuple[int, ...]
    weight: float
    color: str | None = None
    description: str | None = None

    @property
    def is_leaf(self) -> bool:
        """Whether the node has no children (it is a class, an output channel)."""
        return not self.children


@dataclass(frozen=True)
class NumberedNodes:
    """A tree's non-root nodes ordered by code, the codes of the root's children, and the number of leaves."""

    nodes: tuple[TreeNode, ...]
    top_codes: tuple[int, ...]
    num_leaves: int


def number_nodes(spec: _TreeSpec, source: str) -> NumberedNodes:
    """Give every node of ``spec`` its code and edge weight; an empty tree, duplicate names or fewer than two
    leaves are errors naming ``source``."""
    if not spec.children:
        raise HsisegError(f"{source}: the tree is empty (the root has no children)")
    order = _depth_first(spec)
    _check_names_and_leaves(spec.name, order, source)
    code_of_position = _codes_by_position(order)
    nodes = _make_nodes(order, code_of_position, spec.weight_scheme)
    top_codes = tuple(code_of_position[position] for position, entry in enumerate(order) if entry[2] is None)
    num_leaves = sum(1 for node, _, _ in order if not node.children)
    return NumberedNodes(nodes, top_codes, num_leaves)


def _depth_first(spec: _TreeSpec) -> list[_Entry]:
    """Every non-root node in file order (depth-first, children in listed order)."""
    order: list[_Entry] = []

    def visit(node: _NodeSpec, depth: int, parent_position: int | None) -> None:
        position = len(order)
        order.append((node, depth, parent_position))
        for child in node.children:
            visit(as_node(child), depth + 1, position)

    for child in spec.children:
        visit(as_node(child), 1, None)
    return order


def _check_names_and_leaves(root_name: str, order: list[_Entry], source: str) -> None:
    """Every name (the root's too) must be unique, and the tree must have at least two leaves."""
    counts = Counter([root_name] + [node.name for node, _, _ in order])
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise HsisegError(f"{source}: duplicate node names {duplicates}; every name must be unique")
    num_leaves = sum(1 for node, _, _ in order if not node.children)
    if num_leaves < 2:
        raise HsisegError(f"{source}: the tree has {num_leaves} leaf; at least 2 classes are needed")


def _codes_by_position(order: list[_Entry]) -> list[int]:
    """The code of each depth-first position: leaves first, then internal nodes, each in depth-first order."""
    leaves = [position for position, (node, _, _) in enumerate(order) if not node.children]
    internal = [position for position, (node, _, _) in enumerate(order) if node.children]
    code_of_position = [0] * len(order)
    for code, position in enumerate(leaves + internal):
        code_of_position[position] = code
    return code_of_position


def _make_nodes(order: list[_Entry], code_of_position: list[int], scheme: WeightScheme | None) -> tuple[TreeNode, ...]:
    """The :class:`TreeNode` of every entry, ordered by code, with parent and child codes filled in."""
    child_codes: dict[int, list[int]] = {code: [] for code in code_of_position}
    for position, (_, _, parent_position) in enumerate(order):
        if parent_position is not None:
            child_codes[code_of_position[parent_position]].append(code_of_position[position])
    by_code: list[TreeNode | None] = [None] * len(order)
    for position, (node, depth, parent_position) in enumerate(order):
        code = code_of_position[position]
        by_code[code] = TreeNode(
            name=node.name,
            code=code,
            depth=depth,
            parent=None if parent_position is None else code_of_position[parent_position],
            children=tuple(child_codes[code]),
            weight=_edge_weight(node, depth, scheme),
            color=node.color,
            description=node.description,
        )
    return tuple(node for node in by_code if node is not None)


def _edge_weight(node: _NodeSpec, depth: int, scheme: WeightScheme | None) -> float:
    """The node's explicit weight, else the scheme's weight for its depth, else 1."""
    weight = node.weight
    if weight is None:
        weight = scheme.weight(depth) if scheme is not None else 1.0
    return float(weight)
