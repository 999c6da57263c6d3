"""Reading the YAML and JSON files users write (data specs, label trees, camera files): one loader, errors with
the file, line and column, and ``locate(loc)`` to name the line of a field a validator rejected."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from hsiseg.errors import HsisegError
from hsiseg.textfiles import read_utf8

Locate = Callable[[tuple], str]  # a validator's error location (a.b.0) -> "line N (a.b.0)"


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
        return data, lambda loc: ".".join(map(str, loc)) or what
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        raise HsisegError(f"{path}:{where} invalid YAML: {getattr(error, 'problem', None) or error}") from None
    return data, lambda loc: _locate(node, loc, what)


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
