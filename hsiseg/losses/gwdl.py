"""``tree-gwdl``: the generalised Wasserstein Dice loss (Fidon et al. 2017) with the tree distance.

Per image, over annotated pixels ``i`` with label ``g_i`` and Wasserstein cost
``W_i = sum_c M[g_i, c] p_ic`` (``M`` rescaled to max 1 by default, as MONAI does)::

    TP   = sum_i a_{g_i} (1 - W_i)
    GWDS = (2 TP + smooth_nr) / (2 TP + sum_i W_i + smooth_dr)
    L    = 1 - GWDS

MONAI's ``GeneralizedWassersteinDiceLoss`` gives class 0 the weight ``a_0 = 0`` because it assumes class 0
is background. hsiseg is background-free: the class weights ``a`` are explicit and uniform by default.
A partial label ``t`` uses the collapsed-subtree distance row ``d(t, .)`` and the mean weight of its leaves.

``ce_weight > 0`` adds a cross-entropy term per image, ``L = 1 - GWDS + ce_weight * mean_i(-log P_{t_i})``
(the Dice + CE compound that Dice losses are usually trained with; a partial label uses its node's marginal).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from hsiseg.errors import HsisegError
from hsiseg.losses.base import DEFAULT_IGNORE_INDEX, LOSSES, TreeLoss, node_log_likelihood, reduce_images
from hsiseg.losses.option_values import FLAG, NUMBER, NUMBERS, check_value
from hsiseg.losses.wasserstein import distance_scale
from hsiseg.tree import LabelTree


@LOSSES.register()
class TreeGeneralizedWassersteinDiceLoss(TreeLoss):
    """``tree-gwdl``: generalised Wasserstein Dice loss with the tree metric and explicit class weights.

    Options: ``class_weights`` (C non-negative values in ``tree.leaves`` order, default all 1),
    ``normalize_distances`` (default True; TP is only meaningful when ``W <= 1``), ``smooth_nr``,
    ``smooth_dr`` (1e-5 as in MONAI), ``batch_dice`` (pool all images of the batch into one score),
    ``ce_weight`` (>= 0, default 0: a cross-entropy term added per image).
    ``reduction`` works on images (see :mod:`hsiseg.losses.base`).
    """

    name = "tree-gwdl"
    option_kinds = {
        "class_weights": NUMBERS, "normalize_distances": FLAG, "smooth_nr": NUMBER, "smooth_dr": NUMBER,
        "batch_dice": FLAG, "ce_weight": NUMBER,
    }  # fmt: skip

    node_weights: torch.Tensor  # buffer
    node_distances: torch.Tensor  # buffer

    def __init__(
        self,
        tree: LabelTree,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        reduction: str = "mean",
        class_weights: Sequence[float] | None = None,
        normalize_distances: bool = True,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch_dice: bool = False,
        ce_weight: float = 0.0,
    ) -> None:
        super().__init__(tree, ignore_index, reduction)
        for option, value in (("smooth_nr", smooth_nr), ("smooth_dr", smooth_dr), ("ce_weight", ce_weight)):
            check_value(option, value, self.option_kinds[option])
        weights = (
            torch.ones(tree.num_leaves, dtype=torch.float64)
            if class_weights is None
            else torch.tensor(class_weights, dtype=torch.float64)
        )
        if weights.shape != (tree.num_leaves,) or bool((weights < 0).any()) or not bool(weights.isfinite().all()):
            raise HsisegError(
                f"loss option 'class_weights': expected {tree.num_leaves} non-negative numbers "
                f"(one per leaf, in tree.leaves order), got {list(weights.flatten().tolist())}"
            )
        node_weights = (self.leaf_sets @ weights) / self.leaf_sets.sum(1)  # mean leaf weight per node
        self.register_buffer("node_weights", node_weights)
        scale = distance_scale(tree, normalize_distances)
        self.register_buffer("node_distances", torch.tensor(tree.node_distance_matrix() * scale, dtype=torch.float64))
        self.normalize_distances = bool(normalize_distances)
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)
        self.batch_dice = bool(batch_dice)
        self.ce_weight = float(ce_weight)

    def flat_forward(
        self, logits: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor, target_shape: torch.Size
    ) -> torch.Tensor:
        dtype = logits.dtype
        mask = valid.to(dtype)
        log_probs = F.log_softmax(logits, dim=1)
        probs = log_probs.exp()
        distances = F.embedding(codes, self.node_distances.to(dtype))  # (B, S, C)
        wasserstein = torch.einsum("bcs,bsc->bs", probs, distances) * mask  # W_i, 0 where unannotated
        weights = self.node_weights.to(dtype)[codes] * mask
        true_positives = (weights * (1 - wasserstein)).sum(1)
        errors = wasserstein.sum(1)
        if self.batch_dice:
            true_positives, errors = true_positives.sum(0, keepdim=True), errors.sum(0, keepdim=True)
        score = (2 * true_positives + self.smooth_nr) / (2 * true_positives + errors + self.smooth_dr)
        per_image = (1 - score).expand(logits.shape[0])
        if self.ce_weight:
            cross_entropy = -node_log_likelihood(log_probs, codes, valid, self.leaf_sets.to(dtype)) * mask
            per_image = per_image + self.ce_weight * cross_entropy.sum(1) / mask.sum(1).clamp(min=1)
        return reduce_images(per_image, valid.any(1), self.reduction)
