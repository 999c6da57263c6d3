"""Reading label trees: YAML/JSON files, nested mappings and ``child -> parent`` mappings, checked and validated.

Everything here returns plain data (the nested mapping, or the validated :class:`~hsiseg.tree.schema._TreeSpec`);
:class:`hsiseg.tree.LabelTree` builds itself from it. Errors are :class:`HsisegError` naming the source and node.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hsiseg.errors import HsisegError
from hsiseg.structured_files import load_structured
from hsiseg.tree.schema import _TreeSpec

__all__ = ["nested_from_parents", "parse_tree_dict", "read_tree_data"]

_UNION_TAGS = {"_NodeSpec", "str"}  # pydantic's names for the two forms of a child: a node mapping, a leaf name


# --- files ------------------------------------------------------------------------------------------------


def read_tree_data(path: Path, seen: tuple[Path, ...] = ()) -> tuple[Any, str]:
    """The nested tree data in a YAML/JSON file and the source to name in errors.

    A data spec holding the tree under ``label_tree`` works too: inline, or a path relative to the spec (a
    chain of such paths that comes back to a file already read is refused).
    """
    if path.resolve() in seen:
        raise HsisegError(f"{seen[-1]}: label_tree points back to {path}; point it at the tree file")
    data = _load_mapping(path)
    if isinstance(data, Mapping) and "label_tree" in data:
        inner = data["label_tree"]
        if isinstance(inner, str):
            return read_tree_data(path.parent / inner, (*seen, path.resolve()))
        return inner, f"{path} (label_tree)"
    return data, str(path)


def _load_mapping(path: Path) -> Any:
    if path.suffix.lower() not in (".yaml", ".yml", ".json") and path.is_file():
        raise HsisegError(f"{path}: unknown label tree format {path.suffix.lower()!r}; use .yaml, .yml or .json")
    return load_structured(path, "label tree file", "the label tree")[0]


# --- nested mappings --------------------------------------------------------------------------------------


def parse_tree_dict(data: Any, source: str) -> _TreeSpec:
    """Validate the nested form ``{"name": ..., "children": [...]}``; errors name ``source`` and the node."""
    if not isinstance(data, Mapping):
        raise HsisegError(f"{source}: a label tree must be a mapping with 'children', got {type(data).__name__}")
    _reject_shared_or_cyclic(data, source)
    try:
        return _TreeSpec.model_validate(data)
    except ValidationError as error:
        raise HsisegError(_describe_validation_error(error, data, source)) from None


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
        node, names, key = _locate_error(item["loc"], data)
        if "str" in item["loc"] and isinstance(node, Mapping):
            continue  # the mapping alternative of "node or leaf name" explains the real problem
        if item["loc"] and item["loc"][-1] == "_NodeSpec" and not isinstance(node, Mapping | str):
            item = {**item, "msg": f"expected a node mapping or a leaf name, got {type(node).__name__}"}
        elif "str" in item["loc"]:
            continue
        where = "/".join(names)
        problems.append(f"node {where!r}: {_error_message(item, key)}")
    # Children may be a mapping or a string; pydantic reports both alternatives. Keep distinct lines.
    unique = list(dict.fromkeys(problems))
    return f"{source}: " + "; ".join(unique)


def _locate_error(loc: tuple[Any, ...], data: Any) -> tuple[Any, list[str], str]:
    """Follow an error location into ``data``: the value reached, the node names on the way, the rejected key."""
    node: Any = data
    names = [str(data.get("name", "root"))] if isinstance(data, Mapping) else ["root"]
    key = ""
    location = [part for part in loc if part not in _UNION_TAGS]
    for position, part in enumerate(location):
        last = position == len(location) - 1
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
            names.append(_node_label(node, part))
        elif isinstance(part, str) and isinstance(node, Mapping) and part in node and not last:
            node = node[part]
        else:
            key = str(part)
    return node, names, key


def _node_label(node: Any, index: int) -> str:
    """How an error names a child: its name, the leaf name itself, or ``#index`` when it has neither."""
    if isinstance(node, Mapping) and "name" in node:
        return str(node["name"])
    if isinstance(node, str):
        return node
    return f"#{index}"


def _error_message(item: Mapping[str, Any], key: str) -> str:
    """The message of one pydantic error, with the rejected key in front when there is one."""
    if item["type"] == "extra_forbidden":
        return f"unknown key {key!r} (allowed: name, children, weight, color, description)"
    if key:
        return f"{key!r}: {item['msg']}"
    return item["msg"]


# --- child -> parent mappings -----------------------------------------------------------------------------


def nested_from_parents(parents: Mapping[str, str | None], root: str = "root") -> dict[str, Any]:
    """The nested form of a ``child -> parent`` mapping (``None`` or ``root`` for top-level nodes).

    Children keep the mapping's order. Cycles, unknown parents and disconnected nodes are errors.
    """
    children = _children_by_parent(parents, root)
    _reject_parent_cycles(parents, root)

    def nested(name: str) -> dict[str, Any]:
        return {"name": name, "children": [nested(child) for child in children[name]]}

    return nested(root)


def _children_by_parent(parents: Mapping[str, str | None], root: str) -> dict[str, list[str]]:
    """Each node's children, in the mapping's order; unknown parents and a parented root are errors."""
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
    return children


def _reject_parent_cycles(parents: Mapping[str, str | None], root: str) -> None:
    """Follow every node's parent links up to the root; a node met twice on the way is a cycle."""
    for start in parents:
        seen = [start]
        node = parents[start]
        while node is not None and node != root:
            if node in seen:
                cycle = " -> ".join([*seen[seen.index(node) :], node])
                raise HsisegError(f"label tree: the parent links form a cycle: {cycle}")
            seen.append(node)
            node = parents[node]
