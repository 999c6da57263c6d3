"""Segmentation losses over a label tree, built by name: ``build_loss(name, tree, **options)``.

========================  =====================================================================
name                      loss
========================  =====================================================================
``ce``                    cross-entropy over annotated pixels (baseline)
``dice-ce``               soft Dice + cross-entropy, background-free (nnU-Net-style baseline)
``tree-wasserstein``      ``alpha * CE + beta * W_M`` with the tree distance ``M`` (Wang et al. 2025)
``tree-gwdl``             generalised Wasserstein Dice loss with the tree ``M`` (Fidon et al. 2017)
``tree-ce``               tree-based semantic cross-entropy with per-level weights (Wang et al. 2025)
========================  =====================================================================

Input conventions (shapes, target codes, partial labels, ``ignore_index``, ``reduction``) are shared by
all of them and documented in :mod:`hsiseg.losses.base`.
"""

from __future__ import annotations

import inspect
from typing import Any

from hsiseg.errors import HsisegError
from hsiseg.losses.base import DEFAULT_IGNORE_INDEX, TreeLoss, node_log_likelihood
from hsiseg.losses.cross_entropy import CrossEntropyLoss, DiceCELoss
from hsiseg.losses.gwdl import TreeGeneralizedWassersteinDiceLoss
from hsiseg.losses.tree_ce import TreeSemanticCELoss
from hsiseg.losses.wasserstein import TreeWassersteinLoss, tree_wasserstein_distance
from hsiseg.tree import LabelTree

LOSSES: dict[str, type[TreeLoss]] = {
    cls.name: cls
    for cls in (
        CrossEntropyLoss,
        DiceCELoss,
        TreeWassersteinLoss,
        TreeGeneralizedWassersteinDiceLoss,
        TreeSemanticCELoss,
    )
}

__all__ = [
    "DEFAULT_IGNORE_INDEX",
    "LOSSES",
    "CrossEntropyLoss",
    "DiceCELoss",
    "TreeGeneralizedWassersteinDiceLoss",
    "TreeLoss",
    "TreeSemanticCELoss",
    "TreeWassersteinLoss",
    "build_loss",
    "loss_options",
    "node_log_likelihood",
    "tree_wasserstein_distance",
]


def loss_options(name: str) -> dict[str, Any]:
    """The options a loss accepts beyond the tree, with their defaults."""
    cls = _loss_class(name)
    parameters = inspect.signature(cls.__init__).parameters
    return {key: p.default for key, p in parameters.items() if key not in ("self", "tree")}


def build_loss(
    name: str,
    tree: LabelTree,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
    **options: Any,
) -> TreeLoss:
    """Build a loss from its name and options (as a data spec or the command line gives them).

    Options are keyword arguments with underscores (``top_level_weight``); dashes are accepted too
    (``top-level-weight``). Unknown names and options raise :class:`HsisegError` listing the valid ones.
    """
    cls = _loss_class(name)
    options = {key.replace("-", "_"): value for key, value in options.items()}
    known = loss_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        valid = sorted(set(known) - {"ignore_index", "reduction"})
        raise HsisegError(f"loss {name!r} has no option(s) {unknown}; its options are {valid}")
    return cls(tree, ignore_index=ignore_index, reduction=reduction, **options)


def _loss_class(name: str) -> type[TreeLoss]:
    try:
        return LOSSES[name]
    except KeyError:
        raise HsisegError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
