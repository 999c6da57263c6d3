"""The clinical label tree (:class:`LabelTree`): classes are its leaves, the tree says how far apart two are.

Modules: :mod:`~hsiseg.tree.label_tree` (the tree and its distances), :mod:`~hsiseg.tree.files` (reading
YAML/JSON and ``child -> parent`` files), :mod:`~hsiseg.tree.schema` (the file format as pydantic models),
:mod:`~hsiseg.tree.nodes` (nodes and their target codes).
"""

from __future__ import annotations

from hsiseg.tree.label_tree import LabelTree
from hsiseg.tree.nodes import TreeNode

__all__ = ["LabelTree", "TreeNode"]
