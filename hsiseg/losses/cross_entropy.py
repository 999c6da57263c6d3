"""The background-free baselines: cross-entropy and soft Dice + cross-entropy over annotated pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hsiseg.losses.base import DEFAULT_IGNORE_INDEX, LOSSES, TreeLoss, node_log_likelihood, reduce_images
from hsiseg.losses.option_values import FLAG, NUMBER, check_value
from hsiseg.tree import LabelTree


@LOSSES.register()
class CrossEntropyLoss(TreeLoss):
    """``ce``: cross-entropy over annotated pixels, the baseline of every experiment.

    ``L = -log p_g`` for a leaf label ``g``; a partial label ``t`` (an internal node) uses its marginal,
    ``L = -log P_t = -log sum_{l in L(t)} p_l`` (Fidon et al. 2021, label-set loss). The tree is only
    used to decode partial labels.
    """

    name = "ce"

    def exact_pixel_loss(self, logits: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits, dim=1)
        return -node_log_likelihood(log_probs, codes, valid, self.leaf_sets.to(logits.dtype))


@LOSSES.register()
class DiceCELoss(TreeLoss):
    """``dice-ce``: soft Dice + cross-entropy, the usual nnU-Net-style baseline, background-free.

    Per image (or over the batch with ``batch_dice=True``) and per leaf class ``c``, over annotated pixels
    ``i`` with leaf labels only::

        Dice_c = (2 sum_i p_ic [g_i = c] + smooth) / (sum_i p_ic + sum_i [g_i = c] + smooth)

    The Dice term is ``1 - mean_c Dice_c`` over the classes present in the image's annotation (with
    sparse scribbles most classes are absent from any one image, and their Dice would only say "predict
    nothing", which cross-entropy already covers). Partial labels enter the CE term as marginals and are
    left out of the Dice term. ``L = ce_weight * CE + dice_weight * Dice``, both per image; ``reduction``
    works on images (see :mod:`hsiseg.losses.base`).
    """

    name = "dice-ce"
    option_kinds = {"ce_weight": NUMBER, "dice_weight": NUMBER, "smooth": NUMBER, "batch_dice": FLAG}

    def __init__(
        self,
        tree: LabelTree,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        reduction: str = "mean",
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1e-5,
        batch_dice: bool = False,
    ) -> None:
        super().__init__(tree, ignore_index, reduction)
        options = {"ce_weight": ce_weight, "dice_weight": dice_weight, "smooth": smooth, "batch_dice": batch_dice}
        for option, value in options.items():
            check_value(option, value, self.option_kinds[option])
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)
        self.batch_dice = bool(batch_dice)

    def flat_forward(
        self, logits: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor, target_shape: torch.Size
    ) -> torch.Tensor:
        log_probs = F.log_softmax(logits, dim=1)
        likelihood = node_log_likelihood(log_probs, codes, valid, self.leaf_sets.to(logits.dtype))
        counts = valid.sum(1)
        ce = torch.where(valid, -likelihood, torch.zeros((), dtype=logits.dtype)).sum(1) / counts.clamp(min=1)
        dice = self._dice_loss(log_probs.exp(), codes, valid & (codes < self.num_classes))
        per_image = self.ce_weight * ce + self.dice_weight * dice
        return reduce_images(per_image, counts > 0, self.reduction)

    def _dice_loss(self, probs: torch.Tensor, codes: torch.Tensor, leaf_valid: torch.Tensor) -> torch.Tensor:
        """1 - mean Dice over present classes, per image (B,); probs (B, C, S), codes/leaf_valid (B, S)."""
        weight = leaf_valid.to(probs.dtype)
        leaf_codes = codes.clamp(max=self.num_classes - 1)
        true_prob = probs.gather(1, leaf_codes.unsqueeze(1)).squeeze(1) * weight  # p_{i, g_i}
        shape = (probs.shape[0], self.num_classes)
        intersection = torch.zeros(shape, dtype=probs.dtype, device=probs.device).scatter_add(1, leaf_codes, true_prob)
        truth = torch.zeros(shape, dtype=probs.dtype, device=probs.device).scatter_add(1, leaf_codes, weight)
        predicted = (probs * weight.unsqueeze(1)).sum(2)
        if self.batch_dice:
            intersection, truth, predicted = (x.sum(0, keepdim=True) for x in (intersection, truth, predicted))
        dice = (2 * intersection + self.smooth) / (predicted + truth + self.smooth)
        present = (truth > 0).to(probs.dtype)
        mean_dice = (dice * present).sum(1) / present.sum(1).clamp(min=1)
        loss = (1 - mean_dice) * (present.sum(1) > 0).to(probs.dtype)
        return loss.expand(probs.shape[0])
