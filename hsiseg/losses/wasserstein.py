"""Loss 1 of Wang et al. 2025: the Wasserstein compound loss with the tree ground distance.

Per pixel, with softmax ``p`` over leaves and a crisp label ``g``, the optimal-transport cost of moving
``p`` onto the one-hot ``g`` under the tree metric ``M`` is linear in ``p``::

    W_M(p, g) = sum_c M[g, c] p_c

For a soft target ``q`` the tree-Wasserstein distance has the closed form (Evans & Matsen 2012,
Le et al. 2019) ``W_M(p, q) = sum_n w_n |P_n - Q_n|`` with node marginals ``P = A p``, ``Q = A q``;
it equals the optimal-transport LP optimum exactly. The compound loss is
``L = alpha * CE(p, g) + beta * W_M(p, g)``.

A partial label ``t`` (an internal node) is scored on the tree with ``t``'s subtree collapsed into ``t``:
the CE term is ``-log P_t`` and the W term is ``sum_c d(t, c) p_c`` with ``d`` from
:meth:`LabelTree.node_distance_matrix` (no cost for mass anywhere under ``t``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hsiseg.errors import HsisegError
from hsiseg.losses.base import (
    DEFAULT_IGNORE_INDEX,
    LOSSES,
    TreeLoss,
    compute_dtype,
    node_log_likelihood,
    reduce_pixels,
)
from hsiseg.losses.option_values import FLAG, NUMBER, check_value
from hsiseg.tree import LabelTree


def distance_scale(tree: LabelTree, normalize: bool) -> float:
    """1 / max(M) when ``normalize`` (distances rescaled to max 1), else 1."""
    return 1.0 / float(tree.distance_matrix().max()) if normalize else 1.0


def tree_wasserstein_distance(
    probs: torch.Tensor, target_probs: torch.Tensor, ancestors: torch.Tensor, edge_weights: torch.Tensor
) -> torch.Tensor:
    """Closed-form tree-Wasserstein distance between two distributions over leaves, per pixel.

    Parameters
    ----------
    probs, target_probs: (B, C, S) distributions over the C leaves.
    ancestors: (N, C) ancestor matrix ``A`` (:meth:`LabelTree.ancestor_matrix`).
    edge_weights: (N,) edge weights ``w`` (already scaled when distances are normalised).

    Returns
    -------
    (B, S) tensor ``sum_n w_n |(A p)_n - (A q)_n|``.
    """
    difference = torch.einsum("nc,bcs->bns", ancestors, probs - target_probs)
    return (edge_weights[None, :, None] * difference.abs()).sum(1)


@LOSSES.register()
class TreeWassersteinLoss(TreeLoss):
    """``tree-wasserstein``: ``alpha * CE + beta * W_M`` with the tree ground distance ``M``.

    Options: ``alpha`` and ``beta`` (>= 0), ``normalize_distances`` (divide ``M`` by its maximum so
    ``0 <= W <= 1``; default True). The target may be integer codes (B, *spatial), or soft targets: a
    float tensor shaped like the logits (B, C, *spatial) holding a distribution over leaves per pixel
    (all-zero pixels are unannotated); soft targets use ``-sum_c q_c log p_c`` and the closed form.
    """

    name = "tree-wasserstein"
    option_kinds = {"alpha": NUMBER, "beta": NUMBER, "normalize_distances": FLAG}
    has_fast_path = True

    node_distances: torch.Tensor  # buffer
    edge_weights: torch.Tensor  # buffer

    def __init__(
        self,
        tree: LabelTree,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        reduction: str = "mean",
        alpha: float = 1.0,
        beta: float = 1.0,
        normalize_distances: bool = True,
    ) -> None:
        super().__init__(tree, ignore_index, reduction)
        for option, value in (("alpha", alpha), ("beta", beta), ("normalize_distances", normalize_distances)):
            check_value(option, value, self.option_kinds[option])
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.normalize_distances = bool(normalize_distances)
        scale = distance_scale(tree, normalize_distances)
        self.register_buffer("node_distances", torch.tensor(tree.node_distance_matrix() * scale, dtype=torch.float64))
        self.register_buffer("edge_weights", torch.tensor(tree.edge_weights() * scale, dtype=torch.float64))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Integer target codes (B, *spatial) or soft targets (B, C, *spatial)."""
        if target.is_floating_point() and target.shape == logits.shape:
            return self._soft_forward(logits, target)
        return super().forward(logits, target)

    def exact_pixel_loss(self, logits: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits, dim=1)
        cross_entropy = -node_log_likelihood(log_probs, codes, valid, self.leaf_sets.to(logits.dtype))
        distances = F.embedding(codes, self.node_distances.to(logits.dtype))  # (B, S, C): row d(t_i, .)
        wasserstein = torch.einsum("bcs,bsc->bs", log_probs.exp(), distances)
        return self.alpha * cross_entropy + self.beta * wasserstein

    def fast_forward(
        self, logits: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """Leaf labels: one log-softmax, the distance rows gathered once; partial labels go the exact way."""
        batch, classes, pixels = logits.shape
        log_probs = F.log_softmax(logits, dim=1)
        leaf_codes = codes.clamp(max=classes - 1)
        cross_entropy = -log_probs.gather(1, leaf_codes.unsqueeze(1)).squeeze(1)
        probs = log_probs.exp_()
        columns = self.node_distances.to(logits.dtype).T  # (C, N): column t is d(t, .)
        rows = columns.index_select(1, codes.flatten()).view(classes, batch, pixels).transpose(0, 1)
        wasserstein = torch.linalg.vecdot(probs, rows, dim=1)
        values = self.alpha * cross_entropy + self.beta * wasserstein
        return values, codes >= classes, (probs, rows, wasserstein, leaf_codes)

    def fast_backward(self, state: tuple, grad_pixels: torch.Tensor) -> torch.Tensor:
        """d/dz = alpha (p - onehot) + beta p (d(t, .) - W), written over the saved buffers."""
        probs, rows, wasserstein, leaf_codes = state
        scale = rows.mul_((self.beta * grad_pixels).unsqueeze(1))
        scale.add_((grad_pixels * (self.alpha - self.beta * wasserstein)).unsqueeze(1))
        grad = probs.mul_(scale)
        return grad.scatter_add_(1, leaf_codes.unsqueeze(1), (-self.alpha * grad_pixels).unsqueeze(1))

    def _soft_forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() < 3 or logits.shape[1] != self.num_classes:
            raise HsisegError(
                f"{self.name}: logits must be (B, {self.num_classes}, *spatial), got {tuple(logits.shape)}"
            )
        if bool((target < 0).any()):
            raise HsisegError(f"{self.name}: soft targets must be non-negative probabilities")
        with torch.autocast(device_type=logits.device.type, enabled=False):
            dtype = compute_dtype(logits)
            flat_logits = logits.to(dtype).flatten(2)
            flat_target = target.to(dtype).flatten(2)
            valid = flat_target.sum(1) > 0
            log_probs = F.log_softmax(flat_logits, dim=1)
            cross_entropy = -(flat_target * log_probs).sum(1)
            wasserstein = tree_wasserstein_distance(
                log_probs.exp(), flat_target, self.leaf_sets.to(dtype), self.edge_weights.to(dtype)
            )
            per_pixel = torch.where(
                valid, self.alpha * cross_entropy + self.beta * wasserstein, torch.zeros((), dtype=dtype)
            )
            return reduce_pixels(per_pixel, valid, self.reduction, target.shape[:1] + target.shape[2:])
