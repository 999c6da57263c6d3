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

from hsiseg.losses import cross_entropy, gwdl, tree_ce, wasserstein  # noqa: F401 - registering is importing
from hsiseg.losses.base import DEFAULT_IGNORE_INDEX, LOSSES, TreeLoss, node_log_likelihood
from hsiseg.losses.cross_entropy import CrossEntropyLoss, DiceCELoss
from hsiseg.losses.factory import build_loss, check_loss, loss_options
from hsiseg.losses.gwdl import TreeGeneralizedWassersteinDiceLoss
from hsiseg.losses.tree_ce import TreeSemanticCELoss
from hsiseg.losses.wasserstein import TreeWassersteinLoss, tree_wasserstein_distance

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
    "check_loss",
    "loss_options",
    "node_log_likelihood",
    "tree_wasserstein_distance",
]
