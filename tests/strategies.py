"""Hypothesis strategies for random label trees."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from hsiseg.tree import LabelTree


@st.composite
def random_trees(draw: st.DrawFn, max_leaves: int = 8, max_depth: int = 4, weighted: bool = True) -> LabelTree:
    """A random tree with 2..max_leaves leaves, unbalanced depths and optional random edge weights."""
    counter = iter(range(10_000))

    def node(depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {"name": f"n{next(counter)}"}
        if weighted:
            out["weight"] = draw(st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0]))
        if depth < max_depth and draw(st.booleans()):
            out["children"] = [node(depth + 1) for _ in range(draw(st.integers(1, 3)))]
        return out

    children = [node(1) for _ in range(draw(st.integers(2, 4)))]
    tree = LabelTree.from_dict({"name": "root", "children": children})
    if tree.num_leaves > max_leaves:
        # keep examples small: cut the extra top-level subtrees and rebuild
        return LabelTree.from_dict({"name": "root", "children": children[:2]})
    return tree
