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

import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from hsiseg.errors import HsisegError
from hsiseg.structured_files import load_structured

__all__ = ["LabelTree", "TreeNode"]


# ----------------------------------------------------------------------------------------------------------
# Schema of the file format (validated with pydantic so every error names its node and key)
# ----------------------------------------------------------------------------------------------------------


class _ConstantScheme(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["constant"]
    value: float = Field(1.0, ge=0)

    def weight(self, depth: int) -> float:
        return self.value


class _ExponentialScheme(BaseModel):
    """w = exp(-gamma * depth): deep (fine) distinctions cost less than top-level ones for gamma > 0."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["exponential"]
    gamma: float

    def weight(self, depth: int) -> float:
        return math.exp(-self.gamma * depth)


class _PerDepthScheme(BaseModel):
    """Explicit weights per depth, top level first; deeper nodes reuse the last value."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["per-depth"]
    weights: list[Annotated[float, Field(ge=0)]] = Field(min_length=1)

    def weight(self, depth: int) -> float:
        return self.weights[min(depth, len(self.weights)) - 1]


_WeightScheme = Annotated[_ConstantScheme | _ExponentialScheme | _PerDepthScheme, Field(discriminator="type")]


class _NodeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    weight: float | None = Field(None, ge=0, allow_inf_nan=False)
    color: str | None = Field(None, validation_alias=AliasChoices("color", "colour"))
    description: str | None = None
    children: list[_NodeSpec | str] = Field(default_factory=list)

    @field_validator("color")
    @classmethod
    def _valid_color(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from matplotlib.colors import is_color_like, to_hex

        if not is_color_like(value):
            raise ValueError(f"{value!r} is not a colour (use '#rrggbb' or a matplotlib colour name)")
        return to_hex(value)


class _TreeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("root", min_length=1)
    description: str | None = None
    weight_scheme: _WeightScheme | None = None
    children: list[_NodeSpec | str]


# ----------------------------------------------------------------------------------------------------------
# The tree
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeNode:
    """One non-root node of a :class:`LabelTree`.

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
        return not self.children


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
        if not isinstance(data, Mapping):
            raise HsisegError(f"{source}: a label tree must be a mapping with 'children', got {type(data).__name__}")
        _reject_shared_or_cyclic(data, source)
        try:
            spec = _TreeSpec.model_validate(data)
        except ValidationError as error:
            raise HsisegError(_describe_validation_error(error, data, source)) from None
        return cls(spec, source)

    @classmethod
    def from_file(cls, path: str | Path) -> LabelTree:
        """Read a tree from a YAML (``.yaml``/``.yml``) or JSON (``.json``) file.

        A data spec holding the tree under ``label_tree`` (inline, or a path relative to the spec) works too.
        """
        path = Path(path)
        data = _load_mapping(path)
        if isinstance(data, Mapping) and "label_tree" in data:
            inner = data["label_tree"]
            if isinstance(inner, str):
                return cls.from_file(path.parent / inner)
            return cls.from_dict(inner, source=f"{path} (label_tree)")
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_parents(cls, parents: Mapping[str, str | None], root: str = "root") -> LabelTree:
        """Build a tree from a ``child -> parent`` mapping (``None`` or ``root`` for top-level nodes).

        Children keep the mapping's order. Cycles, unknown parents and disconnected nodes are errors.
        """
        children: dict[str, list[str]] = {root: []}
        for child in parents:
            children.setdefault(child, [])
        for child, parent in parents.items():
            parent = root if parent is None else parent
            if parent not in children:
                raise HsisegError(f"label tree: parent {parent!r} of {child!r} is not a node")
            if child == root:
                raise HsisegError(f"label tree: the root {root!r} cannot have a parent")
            children[parent].append(child)
        for start in parents:
            seen = [start]
            node = parents[start]
            while node is not None and node != root:
                if node in seen:
                    cycle = " -> ".join([*seen[seen.index(node) :], node])
                    raise HsisegError(f"label tree: the parent links form a cycle: {cycle}")
                seen.append(node)
                node = parents[node]

        def nested(name: str) -> dict[str, Any]:
            return {"name": name, "children": [nested(child) for child in children[name]]}

        return cls.from_dict(nested(root))

    def _build(self, spec: _TreeSpec) -> None:
        if not spec.children:
            raise HsisegError(f"{self.source}: the tree is empty (the root has no children)")
        leaves: list[tuple[_NodeSpec, int, int | None]] = []
        internal: list[tuple[_NodeSpec, int, int | None]] = []
        order: list[tuple[_NodeSpec, int, int | None]] = []  # depth-first order of all nodes

        def visit(node: _NodeSpec, depth: int, parent_position: int | None) -> None:
            position = len(order)
            entry = (node, depth, parent_position)
            order.append(entry)
            (internal if node.children else leaves).append(entry)
            for child in node.children:
                visit(_as_node(child), depth + 1, position)

        for child in spec.children:
            visit(_as_node(child), 1, None)
        top_positions = [position for position, entry in enumerate(order) if entry[2] is None]

        counts = Counter([spec.name] + [node.name for node, _, _ in order])
        duplicates = sorted(name for name, count in counts.items() if count > 1)
        if duplicates:
            raise HsisegError(f"{self.source}: duplicate node names {duplicates}; every name must be unique")
        if len(leaves) < 2:
            raise HsisegError(f"{self.source}: the tree has {len(leaves)} leaf; at least 2 classes are needed")

        position_of = {id(entry): position for position, entry in enumerate(order)}
        code_of_position = {position_of[id(entry)]: code for code, entry in enumerate(leaves + internal)}
        child_codes: dict[int, list[int]] = {code: [] for code in code_of_position.values()}
        for position, (_, _, parent_position) in enumerate(order):
            if parent_position is not None:
                child_codes[code_of_position[parent_position]].append(code_of_position[position])

        by_code: list[TreeNode | None] = [None] * len(order)
        for position, (node, depth, parent_position) in enumerate(order):
            code = code_of_position[position]
            weight = node.weight
            if weight is None:
                weight = self._scheme.weight(depth) if self._scheme is not None else 1.0
            by_code[code] = TreeNode(
                name=node.name,
                code=code,
                depth=depth,
                parent=None if parent_position is None else code_of_position[parent_position],
                children=tuple(child_codes[code]),
                weight=float(weight),
                color=node.color,
                description=node.description,
            )
        self._nodes = [node for node in by_code if node is not None]
        self._top_codes = tuple(code_of_position[position] for position in top_positions)
        self._code = {node.name: node.code for node in self._nodes}
        self.leaves: tuple[str, ...] = tuple(node.name for node in self._nodes[: len(leaves)])

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
            code: int | None = leaf
            while code is not None:
                matrix[code, leaf] = 1.0
                code = self._nodes[code].parent
        return _readonly(matrix)

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

    @cached_property
    def _node_distance_matrix(self) -> np.ndarray:
        ancestors = self.ancestor_matrix()
        weights = self.edge_weights()
        # on_path[n, t] = 1 iff n is t or an ancestor of t.
        on_path = np.zeros((self.num_nodes, self.num_nodes))
        for target in range(self.num_nodes):
            code: int | None = target
            while code is not None:
                on_path[code, target] = 1.0
                code = self._nodes[code].parent
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


# ----------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------


def _as_node(child: _NodeSpec | str) -> _NodeSpec:
    return _NodeSpec(name=child) if isinstance(child, str) else child


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _load_mapping(path: Path) -> Any:
    if path.suffix.lower() not in (".yaml", ".yml", ".json") and path.is_file():
        raise HsisegError(f"{path}: unknown label tree format {path.suffix.lower()!r}; use .yaml, .yml or .json")
    return load_structured(path, "label tree file", "the label tree")[0]


def _reject_shared_or_cyclic(data: Any, source: str) -> None:
    """Reject nested input that is not a tree: a node inside itself (YAML alias cycles), shared subtrees."""
    seen: set[int] = set()

    def walk(node: Any, path: tuple[int, ...]) -> None:
        if not isinstance(node, Mapping):
            return
        name = str(node.get("name", "?"))
        if id(node) in path:
            raise HsisegError(f"{source}: node {name!r} contains itself (a cycle); a label tree must be a tree")
        if id(node) in seen:
            raise HsisegError(f"{source}: node {name!r} appears under two parents; a label tree must be a tree")
        seen.add(id(node))
        children = node.get("children", [])
        if isinstance(children, list):
            for child in children:
                walk(child, (*path, id(node)))

    walk(data, ())


def _describe_validation_error(error: ValidationError, data: Any, source: str) -> str:
    """Turn pydantic's index paths (children.0.children.2.colr) into node names."""
    problems = []
    for item in error.errors():
        node: Any = data
        names = [str(data.get("name", "root"))] if isinstance(data, Mapping) else ["root"]
        key = ""
        tags = {"_NodeSpec", "str"}
        location = [part for part in item["loc"] if part not in tags]
        for position, part in enumerate(location):
            last = position == len(location) - 1
            if isinstance(part, int) and isinstance(node, list) and part < len(node):
                node = node[part]
                if isinstance(node, Mapping) and "name" in node:
                    names.append(str(node["name"]))
                elif isinstance(node, str):
                    names.append(node)
                else:
                    names.append(f"#{part}")
            elif isinstance(part, str) and isinstance(node, Mapping) and part in node and not last:
                node = node[part]
            else:
                key = str(part)
        if "str" in item["loc"] and isinstance(node, Mapping):
            continue  # the mapping alternative of "node or leaf name" explains the real problem
        if item["loc"] and item["loc"][-1] == "_NodeSpec" and not isinstance(node, Mapping | str):
            item = {**item, "msg": f"expected a node mapping or a leaf name, got {type(node).__name__}"}
        elif "str" in item["loc"]:
            continue
        where = "/".join(names)
        if item["type"] == "extra_forbidden":
            message = f"unknown key {key!r} (allowed: name, children, weight, color, description)"
        elif key:
            message = f"{key!r}: {item['msg']}"
        else:
            message = item["msg"]
        problems.append(f"node {where!r}: {message}")
    # Children may be a mapping or a string; pydantic reports both alternatives. Keep distinct lines.
    unique = list(dict.fromkeys(problems))
    return f"{source}: " + "; ".join(unique)
