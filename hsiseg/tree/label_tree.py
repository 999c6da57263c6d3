"""The clinical label tree: classes are its leaves, the tree says how far apart two classes are.

A label tree is read from a nested mapping (YAML or JSON)::

    name: neurosurgery               # the root (optional, default "root")
    weight_scheme: {type: exponential, gamma: 0.5}   # optional, default: every edge weighs 1
    children:
      - name: vascular structures
        color: "#c0392b"             # optional display colour (any matplotlib colour)
        children:
          - {name: artery, weight: 1.0}   # optional edge weight to the parent
          - vein                          # terse form: a bare string is a leaf

Conventions (see METHOD.md section 1):

- ``depth``: children of the root have depth 1; ``tree.depth`` (D) is the depth of the deepest leaf.
- ``tree.leaves``: leaf names in output-channel order, which is the order in which leaves appear in the
  file when it is read top to bottom (depth-first, children in listed order). Channel ``c`` of a
  network's output is ``tree.leaves[c]``.
- Target codes: every node except the root has an integer code. Leaves take codes ``0 .. C-1`` (their
  channel index), internal nodes take ``C .. N-1`` in the same depth-first order. An integer target
  map holding an internal node's code is a *partial label* ("vessel" rather than "artery");
  :meth:`LabelTree.index` gives the code of any node name.
- Edge weights: each non-root node ``n`` has the weight ``w_n >= 0`` of the edge to its parent. An
  explicit ``weight`` wins; otherwise the tree's ``weight_scheme`` gives it from the node's depth.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.tree.files import nested_from_parents, parse_tree_dict, read_tree_data
from hsiseg.tree.nodes import TreeNode, number_nodes
from hsiseg.tree.schema import _TreeSpec

__all__ = ["LabelTree", "TreeNode"]


class LabelTree:
    """A rooted label tree whose leaves are the segmentation classes.

    Build it with :meth:`from_dict`, :meth:`from_file` or :meth:`from_parents`. Instances are immutable;
    the matrices below are computed once and returned read-only.
    """

    def __init__(self, spec: _TreeSpec, source: str = "label tree") -> None:
        self.name = spec.name
        self.description = spec.description
        self.source = source
        self._scheme = spec.weight_scheme
        self._nodes: list[TreeNode] = []
        self._build(spec)

    # --- construction ------------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "label tree") -> LabelTree:
        """Build a tree from the nested form ``{"name": ..., "children": [{"name": ..., ...}, ...]}``.

        ``source`` names the origin (a file path) in error messages.
        """
        return cls(parse_tree_dict(data, source), source)

    @classmethod
    def from_file(cls, path: str | Path) -> LabelTree:
        """Read a tree from a YAML (``.yaml``/``.yml``) or JSON (``.json``) file.

        A data spec holding the tree under ``label_tree`` (inline, or a path relative to the spec) works too.
        """
        data, source = read_tree_data(Path(path))
        return cls.from_dict(data, source=source)

    @classmethod
    def from_parents(cls, parents: Mapping[str, str | None], root: str = "root") -> LabelTree:
        """Build a tree from a ``child -> parent`` mapping (``None`` or ``root`` for top-level nodes).

        Children keep the mapping's order. Cycles, unknown parents and disconnected nodes are errors.
        """
        return cls.from_dict(nested_from_parents(parents, root))

    def _build(self, spec: _TreeSpec) -> None:
        """Number the nodes of ``spec`` and index them by code and name."""
        numbered = number_nodes(spec, self.source)
        self._nodes = list(numbered.nodes)
        self._top_codes = numbered.top_codes
        self._code = {node.name: node.code for node in self._nodes}
        self.leaves: tuple[str, ...] = tuple(node.name for node in self._nodes[: numbered.num_leaves])

    # --- lookups -----------------------------------------------------------------------------------------

    @property
    def num_leaves(self) -> int:
        """C, the number of classes (output channels)."""
        return len(self.leaves)

    @property
    def num_nodes(self) -> int:
        """N, the number of non-root nodes (valid target codes are ``0..N-1``)."""
        return len(self._nodes)

    @cached_property
    def depth(self) -> int:
        """D, the depth of the deepest leaf (the number of levels)."""
        return max(node.depth for node in self._nodes)

    @property
    def nodes(self) -> tuple[TreeNode, ...]:
        """All non-root nodes, ordered by code."""
        return tuple(self._nodes)

    @property
    def top_level(self) -> tuple[str, ...]:
        """Names of the children of the root, in listed order."""
        return tuple(self._nodes[code].name for code in self._top_codes)

    def __len__(self) -> int:
        return self.num_leaves

    def __contains__(self, name: object) -> bool:
        return name in self._code

    def __repr__(self) -> str:
        return f"LabelTree({self.name!r}, leaves={self.num_leaves}, nodes={self.num_nodes}, depth={self.depth})"

    def node(self, name_or_code: str | int) -> TreeNode:
        """The node with this name or target code."""
        if isinstance(name_or_code, str):
            return self._nodes[self.index(name_or_code)]
        if not 0 <= int(name_or_code) < self.num_nodes:
            raise HsisegError(f"{self.source}: no node has code {name_or_code} (valid: 0..{self.num_nodes - 1})")
        return self._nodes[int(name_or_code)]

    def index(self, name: str) -> int:
        """Target code of a node (the channel index when it is a leaf)."""
        try:
            return self._code[name]
        except KeyError:
            raise HsisegError(f"{self.source}: unknown label {name!r}; known labels: {sorted(self._code)}") from None

    def leaf_index(self, name: str) -> int:
        """Output channel of a leaf."""
        code = self.index(name)
        if code >= self.num_leaves:
            raise HsisegError(f"{self.source}: {name!r} is an internal node, not a leaf class")
        return code

    def leaves_of(self, name: str) -> tuple[str, ...]:
        """Names of the leaves under a node (a leaf gives itself), in channel order."""
        row = self.ancestor_matrix()[self.index(name)]
        return tuple(self.leaves[c] for c in np.flatnonzero(row))

    def depth_of(self, name: str) -> int:
        """Depth of a node (1 for children of the root)."""
        return self.node(name).depth

    def path(self, name: str) -> tuple[str, ...]:
        """Names from the top-level ancestor down to the node itself."""
        node = self.node(name)
        names = [node.name]
        while node.parent is not None:
            node = self._nodes[node.parent]
            names.append(node.name)
        return tuple(reversed(names))

    def ancestor(self, name: str, depth: int) -> str:
        """Ancestor of a node at ``depth``; a node shallower than ``depth`` is its own ancestor there."""
        if depth < 1:
            raise HsisegError(f"depth must be >= 1, got {depth}")
        path = self.path(name)
        return path[min(depth, len(path)) - 1]

    def iter_depth_first(self) -> Iterator[TreeNode]:
        """Nodes in file order (depth-first, children in listed order)."""

        def walk(code: int) -> Iterator[TreeNode]:
            yield self._nodes[code]
            for child in self._nodes[code].children:
                yield from walk(child)

        for code in self._top_codes:
            yield from walk(code)

    # --- matrices (numpy, computed once, read-only) ------------------------------------------------------

    @cached_property
    def _ancestor_matrix(self) -> np.ndarray:
        matrix = np.zeros((self.num_nodes, self.num_leaves))
        for leaf in range(self.num_leaves):
            matrix[self._up_to_root(leaf), leaf] = 1.0
        return _readonly(matrix)

    def _up_to_root(self, code: int) -> list[int]:
        """``code`` and the codes of its ancestors, deepest first."""
        chain: list[int] = []
        current: int | None = code
        while current is not None:
            chain.append(current)
            current = self._nodes[current].parent
        return chain

    def ancestor_matrix(self) -> np.ndarray:
        """A, (N, C) float64: ``A[n, l] = 1`` iff leaf ``l`` is under node ``n``.

        Rows are ordered by code, so ``A[:C]`` is the identity.
        """
        return self._ancestor_matrix

    @cached_property
    def _edge_weights(self) -> np.ndarray:
        return _readonly(np.array([node.weight for node in self._nodes]))

    def edge_weights(self) -> np.ndarray:
        """w, (N,) float64: weight of each node's edge to its parent, by code."""
        return self._edge_weights

    @cached_property
    def _distance_matrix(self) -> np.ndarray:
        return _readonly(self.node_distance_matrix()[: self.num_leaves])

    def distance_matrix(self) -> np.ndarray:
        """M, (C, C) float64: ``M[l, l'] = sum_n w_n |A[n, l] - A[n, l']|``, the tree path length."""
        return self._distance_matrix

    def distance_row(self, leaf: int) -> np.ndarray:
        """Row ``leaf`` of :meth:`distance_matrix`, (C,) float64, in O(C x depth) memory and time: what large
        trees (thousands of leaves) use instead of the (C, C) matrix.

        Leaves under a node have consecutive codes (depth-first numbering), so the distance from ``leaf`` to
        every leaf under its ancestor ``a`` is ``height(leaf) + height(l) - 2 height(a)``, with ``height`` the
        summed edge weights from the root; deeper ancestors overwrite the ranges of shallower ones.
        """
        heights = self._heights
        row = heights[leaf] + heights[: self.num_leaves]  # ancestor: the root (height 0)
        for ancestor in reversed(self._up_to_root(leaf)):
            first, stop = self._leaf_spans[ancestor]
            row[first:stop] = heights[leaf] + heights[first:stop] - 2 * heights[ancestor]
        return row

    @cached_property
    def _heights(self) -> np.ndarray:
        """(N,) summed edge weights from the root to each node."""
        heights = np.zeros(self.num_nodes)
        for node in self.iter_depth_first():
            above = heights[node.parent] if node.parent is not None else 0.0
            heights[node.code] = above + node.weight
        return heights

    @cached_property
    def _leaf_spans(self) -> list[tuple[int, int]]:
        """Per node code: the leaf codes under it, as ``range(first, stop)``."""
        leaves = self.num_leaves
        spans = [(code, code + 1) if code < leaves else (leaves, -1) for code in range(self.num_nodes)]
        for node in sorted(self._nodes, key=lambda n: -n.depth):
            if node.parent is not None:
                first, stop = spans[node.parent]
                spans[node.parent] = (min(first, spans[node.code][0]), max(stop, spans[node.code][1]))
        return spans

    @cached_property
    def _node_distance_matrix(self) -> np.ndarray:
        ancestors = self.ancestor_matrix()
        weights = self.edge_weights()
        # on_path[n, t] = 1 iff n is t or an ancestor of t.
        on_path = np.zeros((self.num_nodes, self.num_nodes))
        for target in range(self.num_nodes):
            on_path[self._up_to_root(target), target] = 1.0
        below = on_path.T - np.eye(self.num_nodes)  # below[n, t] = 1 iff n is strictly under t
        distances = np.empty((self.num_nodes, self.num_leaves))
        for target in range(self.num_nodes):
            kept = weights * (1.0 - below[:, target])  # edges outside the target's subtree
            distances[target] = kept @ np.abs(ancestors - on_path[:, target, None])
        return _readonly(distances)

    def node_distance_matrix(self) -> np.ndarray:
        """(N, C) float64: distance from node ``t`` to leaf ``l`` with ``t``'s subtree collapsed into ``t``.

        For a leaf ``t`` this is row ``t`` of :meth:`distance_matrix`; for an internal node it is the path
        length from ``t`` to ``l`` (0 for leaves under ``t``). This is how partial labels enter the
        Wasserstein losses: a pixel labelled "vessel" is not penalised for artery versus vein.
        """
        return self._node_distance_matrix

    @cached_property
    def _level_codes(self) -> tuple[np.ndarray, ...]:
        levels = []
        for depth in range(1, self.depth + 1):
            codes = [
                node.code
                for node in self.iter_depth_first()
                if node.depth == depth or (node.is_leaf and node.depth < depth)
            ]
            if depth == self.depth:
                codes = sorted(codes)  # the deepest level is all leaves, in channel order
            levels.append(_readonly(np.array(codes, dtype=np.int64)))
        return tuple(levels)

    def level_codes(self, depth: int) -> np.ndarray:
        """Codes of the nodes partitioning the leaves at ``depth``: nodes at that depth and shallower leaves.

        The deepest level (``depth == tree.depth``) is all leaves in channel order.
        """
        self._check_depth(depth)
        return self._level_codes[depth - 1]

    @cached_property
    def _level_map(self) -> np.ndarray:
        table = np.array(
            [[self.index(self.ancestor(leaf, d)) for leaf in self.leaves] for d in range(1, self.depth + 1)],
            dtype=np.int64,
        )
        return _readonly(table)

    def level_map(self) -> np.ndarray:
        """(D, C) int64: ``level_map[d - 1, l]`` is the code of leaf ``l``'s ancestor at depth ``d``."""
        return self._level_map

    def _check_depth(self, depth: int) -> None:
        if not 1 <= depth <= self.depth:
            raise HsisegError(f"{self.source}: depth must be in 1..{self.depth}, got {depth}")

    # --- export -----------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The nested form :meth:`from_dict` reads, with every edge weight written out explicitly."""

        def node_dict(node: TreeNode) -> dict[str, Any]:
            out: dict[str, Any] = {"name": node.name, "weight": node.weight}
            if node.color is not None:
                out["color"] = node.color
            if node.description is not None:
                out["description"] = node.description
            if node.children:
                out["children"] = [node_dict(self._nodes[c]) for c in node.children]
            return out

        top = [self._nodes[code] for code in self._top_codes]
        out: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            out["description"] = self.description
        out["children"] = [node_dict(node) for node in top]
        return out


def _readonly(array: np.ndarray) -> np.ndarray:
    """Make ``array`` read-only and return it."""
    array.setflags(write=False)
    return array
