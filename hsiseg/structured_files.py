"""Reading the YAML and JSON files users write (data specs, label trees, camera files): one loader, errors with
the file, line and column, and ``locate(loc)`` to name the line of a field a validator rejected.

Hostile files are refused before their data is built: YAML aliases that expand to more than
:data:`MAX_EXPANDED_NODES` nodes (an "alias bomb": nine aliases of nine aliases... grow 9^9 elements from a
few lines), aliases that contain themselves, and numbers that are not finite (``.nan``, ``.inf``, JSON's
``NaN``) anywhere in the file, named by field and line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from hsiseg.errors import HsisegError
from hsiseg.textfiles import read_utf8

Locate = Callable[[tuple], str]  # a validator's error location (a.b.0) -> "line N (a.b.0)"
MAX_EXPANDED_NODES = 1_000_000  # far beyond any spec, tree or camera file; far below a memory bomb


def load_structured(path: Path, what: str, called: str) -> tuple[Any, Locate]:
    """Parse ``path`` (``.json`` as JSON, anything else as YAML); ``what`` names the file when it is missing
    ("data spec", "label tree file"), ``called`` in the advice on its encoding ("the spec"). Returns the data and
    its ``locate``."""
    if not path.is_file():
        raise HsisegError(f"{path}: {what} not found")
    text = read_utf8(path, called)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise HsisegError(f"{path}: line {error.lineno}, column {error.colno}: invalid JSON: {error.msg}") from None
        except RecursionError:
            raise HsisegError(f"{path}: nested too deeply to be a {what}") from None
        except ValueError as error:  # e.g. an integer of thousands of digits
            raise HsisegError(f"{path}: invalid JSON: {str(error).splitlines()[0]}") from None
        _refuse_non_finite(data, (), path, lambda loc: ".".join(map(str, loc)) or what)
        return data, lambda loc: ".".join(map(str, loc)) or what
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _refuse_alias_bombs(node, path)
        data = yaml.safe_load(text)
    except RecursionError:
        raise HsisegError(f"{path}: nested too deeply to be a {what}") from None
    except ValueError as error:  # e.g. an integer of thousands of digits (Python's int conversion limit)
        raise HsisegError(f"{path}: a value cannot be read: {str(error).splitlines()[0]}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        raise HsisegError(f"{path}:{where} invalid YAML: {getattr(error, 'problem', None) or error}") from None
    _refuse_non_finite(data, (), path, lambda loc: _locate(node, loc, what))
    return data, lambda loc: _locate(node, loc, what)


def _refuse_alias_bombs(root: yaml.Node | None, path: Path) -> None:
    """Count the nodes the document has with every alias expanded (each distinct node once, memoised)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def expanded(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            line = node.start_mark.line + 1
            raise HsisegError(f"{path}: line {line}: a YAML alias refers to a node that contains it; write it out")
        open_nodes.add(key)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        total = 1 + sum(expanded(child) for child in children)
        open_nodes.discard(key)
        if total > MAX_EXPANDED_NODES:
            line = node.start_mark.line + 1
            raise HsisegError(f"{path}: line {line}: YAML aliases here expand to over {MAX_EXPANDED_NODES:,} "
                              "values; write the values out, or use fewer aliases")  # fmt: skip
        sizes[key] = total
        return total

    if root is not None:
        expanded(root)


def _refuse_non_finite(data: Any, loc: tuple, path: Path, locate: Locate) -> None:
    """A NaN or infinite number anywhere (a threshold of NaN switches a check off without a word)."""
    if isinstance(data, float) and not math.isfinite(data):
        raise HsisegError(f"{path}: {locate(loc)}: {data} is not a finite number; give a number")
    if isinstance(data, dict):
        for key, value in data.items():
            _refuse_non_finite(value, (*loc, key), path, locate)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            _refuse_non_finite(value, (*loc, index), path, locate)


def _locate(node: yaml.Node | None, loc: tuple, what: str) -> str:
    """The line of the YAML node at ``loc`` (the deepest that exists)."""
    current, line = node, (node.start_mark.line + 1 if node is not None else 1)
    for part in loc:
        if isinstance(current, yaml.MappingNode):
            pair = next(((k, v) for k, v in current.value if k.value == str(part)), None)
            if pair is None:
                break
            line, current = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int) and part < len(current.value):
            current = current.value[part]
            line = current.start_mark.line + 1
        else:
            break
    field = ".".join(str(p) for p in loc) or what
    return f"line {line} ({field})"
