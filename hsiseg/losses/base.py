"""What every hsiseg loss shares: input checks, the target encoding, masking and reduction.

Conventions (the same for every loss, MONAI-style):

- ``logits``: (B, C, *spatial) raw scores, one channel per leaf of the label tree (``tree.leaves``), no
  background channel. 2D (B, C, H, W) and 3D (B, C, D, H, W) inputs are both accepted.
- ``target``: (B, *spatial) integer *target codes*. ``0..C-1`` is a leaf (the channel index);
  ``C..N-1`` is an internal node of the tree, a *partial label* (a scribble that says "vessel" without
  saying artery or vein; ``tree.index("vessel")`` gives its code); ``ignore_index`` marks unannotated
  pixels, which no loss ever sees.
- ``reduction``: ``"mean"`` (over annotated pixels; 0 when there are none), ``"sum"``, or ``"none"``
  (per-pixel values (B, *spatial), 0 at unannotated pixels). Dice-style losses score whole images:
  their ``"none"`` gives (B,) per-image values and ``"mean"`` averages over images with annotations.
- Computation happens in float32 (float64 when the logits are float64) with autocast disabled, so the
  losses are safe inside float16/bfloat16 autocast regions.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from hsiseg.errors import HsisegError
from hsiseg.losses.fused import FusedPixelLoss
from hsiseg.registry import Registry
from hsiseg.tree import LabelTree

REDUCTIONS = ("mean", "sum", "none")
DEFAULT_IGNORE_INDEX = -100


# Every loss registers here by its ``name`` (``@LOSSES.register()``); the tree and the reduction contract are
# not user options.
LOSSES: Registry[type[TreeLoss]] = Registry("loss", skip=("tree", "ignore_index", "reduction"))


class TreeLoss(nn.Module):
    """Base class: checks inputs, flattens spatial axes, masks unannotated pixels, reduces.

    Subclasses implement :meth:`pixel_loss` (per-pixel losses) or override :meth:`flat_forward`.
    """

    name: ClassVar[str] = ""
    fused: bool = True  # use the fast path where a loss has one (set False to use plain autograd)
    has_fast_path: ClassVar[bool] = False  # True: the loss implements fused.FastPath (fast_forward/backward)
    # every user option and what it must be (hsiseg.losses.option_values: NUMBER, NUMBERS or FLAG), checked
    # before any data is read
    option_kinds: ClassVar[dict[str, str]] = {}

    leaf_sets: torch.Tensor  # buffer

    def __init__(self, tree: LabelTree, ignore_index: int = DEFAULT_IGNORE_INDEX, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise HsisegError(f"loss option 'reduction': expected one of {REDUCTIONS}, got {reduction!r}")
        ignore_index = int(ignore_index)
        if 0 <= ignore_index < tree.num_nodes:
            raise HsisegError(
                f"loss option 'ignore_index': {ignore_index} is the target code of "
                f"{tree.node(ignore_index).name!r}; use a negative value or one >= {tree.num_nodes}"
            )
        self.tree = tree
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.num_classes = tree.num_leaves
        # leaf_sets[t, l] = 1 iff leaf l is under the node with code t (rows 0..C-1 are the identity).
        self.register_buffer("leaf_sets", torch.tensor(tree.ancestor_matrix(), dtype=torch.float64))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (B, C, *spatial) against integer target codes (B, *spatial)."""
        self.check_inputs(logits, target)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            flat_logits = logits.to(compute_dtype(logits)).flatten(2)  # (B, C, S)
            flat_target = target.flatten(1)  # (B, S)
            valid = flat_target != self.ignore_index
            codes = torch.where(valid, flat_target, torch.zeros_like(flat_target)).long()
            return self.flat_forward(flat_logits, codes, valid, target.shape)

    def flat_forward(
        self, logits: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor, target_shape: torch.Size
    ) -> torch.Tensor:
        """Per-pixel losses reduced as ``self.reduction`` says; logits (B, C, S), codes/valid (B, S)."""
        per_pixel = torch.where(valid, self.pixel_loss(logits, codes, valid), torch.zeros((), dtype=logits.dtype))
        return reduce_pixels(per_pixel, valid, self.reduction, target_shape)

    def pixel_loss(self, logits: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Loss per pixel (B, S); values at invalid pixels are discarded by the caller.

        Uses the fused fast path when the loss has one and ``self.fused`` is set (see
        :mod:`hsiseg.losses.fused`), else the defining autograd implementation.
        """
        if self.fused and self.has_fast_path:
            return FusedPixelLoss.apply(logits, codes, valid, self)
        return self.exact_pixel_loss(logits, codes, valid)

    def exact_pixel_loss(self, logits: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The defining autograd implementation of the per-pixel loss, logits (B, C, S) -> (B, S)."""
        raise NotImplementedError

    def check_inputs(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Raise :class:`HsisegError` for shapes, dtypes or target codes the loss cannot use."""
        if logits.dim() < 3:
            raise HsisegError(f"{self.name}: logits must be (B, C, *spatial), got shape {tuple(logits.shape)}")
        if logits.shape[1] != self.num_classes:
            raise HsisegError(
                f"{self.name}: logits have {logits.shape[1]} channels but the label tree has {self.num_classes} leaves"
            )
        if not logits.is_floating_point():
            raise HsisegError(f"{self.name}: logits must be floating point, got {logits.dtype}")
        if target.is_floating_point() or target.dtype == torch.bool:
            raise HsisegError(f"{self.name}: target must hold integer codes, got {target.dtype}")
        if target.shape != logits.shape[:1] + logits.shape[2:]:
            raise HsisegError(
                f"{self.name}: target shape {tuple(target.shape)} does not match logits "
                f"{tuple(logits.shape)}; expected {tuple(logits.shape[:1] + logits.shape[2:])}"
            )
        bad = (target != self.ignore_index) & ((target < 0) | (target >= self.tree.num_nodes))
        if bool(bad.any()):
            value = int(target[bad].flatten()[0])
            raise HsisegError(
                f"{self.name}: target code {value} is neither a tree node (0..{self.tree.num_nodes - 1}) "
                f"nor ignore_index ({self.ignore_index})"
            )


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float64 stays float64; everything else (float16, bfloat16, float32) is computed in float32."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def reduce_pixels(
    per_pixel: torch.Tensor, valid: torch.Tensor, reduction: str, target_shape: torch.Size
) -> torch.Tensor:
    """Reduce per-pixel losses (B, S) that are 0 at unannotated pixels.

    ``mean`` divides by the number of annotated pixels (a batch without any gives 0, with zero gradients).
    """
    if reduction == "none":
        return per_pixel.reshape(target_shape)
    total = per_pixel.sum()
    if reduction == "sum":
        return total
    return total / valid.sum().clamp(min=1)


def reduce_images(per_image: torch.Tensor, has_pixels: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce per-image losses (B,); ``mean`` averages over images with at least one annotated pixel."""
    if reduction == "none":
        return per_image
    per_image = torch.where(has_pixels, per_image, torch.zeros((), dtype=per_image.dtype))
    if reduction == "sum":
        return per_image.sum()
    return per_image.sum() / has_pixels.sum().clamp(min=1)


def node_log_likelihood(
    log_probs: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor, leaf_sets: torch.Tensor
) -> torch.Tensor:
    """log P_t per pixel, the log marginal probability of each pixel's target node.

    Parameters
    ----------
    log_probs: (B, C, S) log-softmax over leaves.
    codes: (B, S) target codes (leaves ``< C``, internal nodes ``>= C``).
    valid: (B, S) bool, annotated pixels.
    leaf_sets: (N, C) 0/1 membership of leaves in nodes.

    Returns
    -------
    (B, S) tensor; for a leaf code it is ``log_probs[code]``, for an internal node ``t`` it is
    ``logsumexp`` of ``log_probs`` over the leaves under ``t`` (computed only at those pixels).
    """
    num_classes = log_probs.shape[1]
    leaf_codes = codes.clamp(max=num_classes - 1)
    likelihood = log_probs.gather(1, leaf_codes.unsqueeze(1)).squeeze(1)
    partial = valid & (codes >= num_classes)
    if bool(partial.any()):
        batch_index, pixel_index = partial.nonzero(as_tuple=True)
        pixels = log_probs[batch_index, :, pixel_index]  # (K, C)
        members = leaf_sets[codes[batch_index, pixel_index]] > 0
        marginal = torch.logsumexp(pixels.masked_fill(~members, float("-inf")), dim=1)
        likelihood = likelihood.index_put((batch_index, pixel_index), marginal)
    return likelihood
