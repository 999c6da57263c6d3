"""Truth at one tree level: partial labels (internal nodes) count only where they are coarse enough."""

from __future__ import annotations

import numpy as np

from hsiseg.tree import LabelTree


def truth_at(truth: np.ndarray, tree: LabelTree, depth: int) -> np.ndarray:
    """Truth codes (any shape, e.g. (P,) or (H, W)) usable at ``depth``, same shape: leaves as they are; partial
    labels only where they are at least that coarse (their depth >= ``depth`` means they name the
    depth-``depth`` ancestor, so they become one leaf under it), else dropped (-100)."""
    out = truth.copy()
    partial = truth >= tree.num_leaves
    for code in np.unique(truth[partial]):
        node = tree.node(int(code))
        if node.depth >= depth:
            leaf = tree.leaf_index(tree.leaves_of(node.name)[0])  # any leaf under it has the same ancestor
            out[truth == code] = leaf
        else:
            out[truth == code] = -100
    return out
