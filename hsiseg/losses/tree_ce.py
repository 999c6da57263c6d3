"""Loss 2 of Wang et al. 2025: tree-based semantic cross-entropy with per-level weights.

With leaf logits ``z``, the marginal probability of node ``n`` is ``P_n = sum_{l in L(n)} p_l`` and::

    L = sum_{d=1..D} v_d * ( -log P_{anc_d(g)} )

the cross-entropy at every level of the tree (METHOD.md section 3, a reconstruction), where a leaf
shallower than ``d`` is its own ancestor at depth ``d``. ``v_1`` (the top level) is the
"hierarchy-weighted top-level supervision" weight. With a single level this is plain cross-entropy.

A partial label ``t`` (an internal node at depth ``k``) contributes ``-log P_{anc_d(t)}`` for
``d <= k`` and ``-log P_t`` (its marginal) at the deeper levels, where it says nothing finer.

Numerics: ``log P_n = logsumexp_{l in L(n)} z_l - logsumexp_l z_l``, computed bottom-up level by level
(each node's log-sum-exp from its children's), exact for logits of any magnitude.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hsiseg.errors import HsisegError
from hsiseg.losses.base import DEFAULT_IGNORE_INDEX, LOSSES, TreeLoss
from hsiseg.losses.option_values import NUMBER, NUMBERS
from hsiseg.tree import LabelTree

TINY = 1e-30  # marginals below this go to the exact log-space path


def level_structure(tree: LabelTree) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Index tables for the bottom-up computation of node log-marginals.

    Returns
    -------
    children: for each level ``k = 1..D-1``, a (K_k, max_children) int64 table of positions in level
        ``k+1`` whose log-sum-exp gives each level-``k`` node (padded with the first child).
    masks: matching (K_k, max_children) 0/1 float tables (0 marks padding).
    positions: (D, N) int64; ``positions[d-1, t]`` is the position of ``anc_d(t)`` in level ``d``, or -1
        when ``t`` is an internal node shallower than ``d`` (its term repeats the level above).
    """
    levels = [tree.level_codes(d) for d in range(1, tree.depth + 1)]
    where = [{int(code): position for position, code in enumerate(level)} for level in levels]
    children, masks = [], []
    for k in range(tree.depth - 1):
        groups = []
        for code in levels[k]:
            node = tree.node(int(code))
            members = node.children if node.children else (node.code,)
            groups.append([where[k + 1][member] for member in members])
        width = max(len(group) for group in groups)
        children.append(np.array([group + [group[0]] * (width - len(group)) for group in groups], dtype=np.int64))
        masks.append(np.array([[1.0] * len(group) + [0.0] * (width - len(group)) for group in groups]))
    positions = np.full((tree.depth, tree.num_nodes), -1, dtype=np.int64)
    for node in tree.nodes:
        for depth in range(1, tree.depth + 1):
            if node.depth >= depth or node.is_leaf:
                positions[depth - 1, node.code] = where[depth - 1][tree.index(tree.ancestor(node.name, depth))]
    return children, masks, positions


def resolve_level_weights(
    tree: LabelTree, level_weights: Sequence[float] | None, top_level_weight: float | None
) -> list[float]:
    """The per-level weights ``v_1..v_D`` (top level first) from the two ways of giving them."""
    if level_weights is not None and top_level_weight is not None:
        raise HsisegError("loss options 'level_weights' and 'top_level_weight' exclude each other; give one")
    weights = [1.0] * tree.depth if level_weights is None else [float(v) for v in level_weights]
    if len(weights) != tree.depth:
        raise HsisegError(f"loss option 'level_weights': the tree has {tree.depth} levels, got {len(weights)} weights")
    if top_level_weight is not None:
        weights[0] = float(top_level_weight)
    if any(not np.isfinite(v) or v < 0 for v in weights) or sum(weights) == 0:
        raise HsisegError(f"loss option 'level_weights': expected non-negative numbers, not all 0, got {weights}")
    return weights


@LOSSES.register()
class TreeSemanticCELoss(TreeLoss):
    """``tree-ce``: cross-entropy at every tree level, weighted per level.

    Options: ``level_weights`` (D non-negative numbers, top level first; default all 1, as in Muller &
    Smith 2020) or ``top_level_weight`` (sets ``v_1`` and keeps the others at 1).
    """

    name = "tree-ce"
    option_kinds = {"level_weights": NUMBERS, "top_level_weight": NUMBER}
    has_fast_path = True

    positions: torch.Tensor  # buffer
    safe_positions: torch.Tensor  # buffer
    effective_weights: torch.Tensor  # buffer

    def __init__(
        self,
        tree: LabelTree,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        reduction: str = "mean",
        level_weights: Sequence[float] | None = None,
        top_level_weight: float | None = None,
    ) -> None:
        super().__init__(tree, ignore_index, reduction)
        self.level_weights = resolve_level_weights(tree, level_weights, top_level_weight)
        children, masks, positions = level_structure(tree)
        self.num_levels = tree.depth
        for k, (child_table, mask) in enumerate(zip(children, masks, strict=True)):
            self.register_buffer(f"children_{k}", torch.from_numpy(child_table))
            self.register_buffer(f"child_mask_{k}", torch.tensor(mask, dtype=torch.float64))
        self.register_buffer("positions", torch.from_numpy(positions))
        # fast path: -1 ("repeat the level above") carries weight 0 there, so any valid index will do
        self.register_buffer("safe_positions", torch.from_numpy(np.maximum(positions, 0)))
        # Fast path tables: parent position of every level item, and per-code effective level weights
        # (an internal node's own level also carries the weights of the deeper levels it repeats).
        for k, (child_table, mask) in enumerate(zip(children, masks, strict=True)):
            parents = np.zeros(len(tree.level_codes(k + 2)), dtype=np.int64)
            for parent, (row, row_mask) in enumerate(zip(child_table, mask, strict=True)):
                parents[row[row_mask > 0]] = parent
            self.register_buffer(f"parents_{k + 1}", torch.from_numpy(parents))
        self.level_sizes = [len(tree.level_codes(d)) for d in range(1, tree.depth + 1)]  # K_d, no device sync
        effective = np.zeros((tree.depth, tree.num_nodes))
        for code in range(tree.num_nodes):
            for k, weight in enumerate(self.level_weights):
                own = k if positions[k, code] >= 0 else max(j for j in range(k) if positions[j, code] >= 0)
                effective[own, code] += weight
        self.register_buffer("effective_weights", torch.tensor(effective, dtype=torch.float64))

    def level_log_sums(self, logits: torch.Tensor) -> list[torch.Tensor]:
        """Unnormalised node log-marginals ``logsumexp_{l in L(n)} z_l`` per level: list of (B, K_d, S)."""
        sums = [logits]
        for k in reversed(range(self.num_levels - 1)):
            children = getattr(self, f"children_{k}")
            mask = getattr(self, f"child_mask_{k}").to(logits.dtype)
            finer = sums[0]
            grouped = finer.index_select(1, children.flatten())
            grouped = grouped.view(finer.shape[0], *children.shape, finer.shape[2])  # (B, K, width, S)
            peak = grouped.amax(2, keepdim=True).detach()  # any shift is exact; the max avoids overflow
            total = ((grouped - peak).exp() * mask[None, :, :, None]).sum(2)
            sums.insert(0, peak.squeeze(2) + total.log())
        return sums

    def exact_pixel_loss(self, logits: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        sums = self.level_log_sums(logits)
        log_partition = torch.logsumexp(sums[0], dim=1)  # (B, S): logsumexp over all leaves
        loss = torch.zeros_like(log_partition)
        previous = log_partition
        for k, weight in enumerate(self.level_weights):
            position = self.positions[k][codes]  # (B, S)
            value = sums[k].gather(1, position.clamp(min=0).unsqueeze(1)).squeeze(1)
            value = torch.where(position >= 0, value, previous)
            if weight:
                loss = loss + weight * (log_partition - value)
            previous = value
        return loss

    def fast_forward(
        self, logits: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """Marginals in probability space, summed bottom-up with index_add; tiny marginals go exact."""
        leaf_level = self.num_levels - 1
        log_probs = F.log_softmax(logits, dim=1)
        weights = self.effective_weights.to(logits.dtype)[:, codes]  # (D, B, S)
        positions = self.safe_positions[:, codes]  # (D, B, S): one gather for every level
        values = weights[leaf_level] * -log_probs.gather(1, positions[leaf_level].unsqueeze(1)).squeeze(1)
        probs = log_probs.exp_()
        marginals: list[torch.Tensor] = []
        finer = probs
        for k in reversed(range(1, self.num_levels)):  # level k-1 sums its children at level k
            shape = (finer.shape[0], self.level_sizes[k - 1], finer.shape[2])
            parents = getattr(self, f"parents_{k}")
            finer = finer.new_zeros(shape).index_add_(1, parents, finer)
            marginals.insert(0, finer)
        hard = torch.zeros_like(valid)
        picked = []  # P of each pixel's ancestor at levels 0..D-2, (B, S) each
        for k, level_marginals in enumerate(marginals):
            marginal = level_marginals.gather(1, positions[k].unsqueeze(1)).squeeze(1)
            hard |= (weights[k] > 0) & (marginal < TINY)
            values = values + weights[k] * -marginal.clamp(min=TINY).log()
            picked.append(marginal)
        return values, hard, (probs, picked, weights, positions)

    def fast_backward(self, state: tuple, grad_pixels: torch.Tensor) -> torch.Tensor:
        """d/dz_l = sum_d v_d (p_l - [l under anc_d] p_l / P_anc_d), pushed down the tree level by level."""
        probs, picked, weights, positions = state
        leaf_level = self.num_levels - 1
        scale = (grad_pixels * weights.sum(0)).unsqueeze(1)  # (B, 1, S): g * sum of level weights
        coefficient = None  # (B, K_k, S): g v_d / P_anc_d summed over levels <= k, on t's ancestors
        for k in range(leaf_level):
            if coefficient is None:
                coefficient = probs.new_zeros((probs.shape[0], self.level_sizes[0], probs.shape[2]))
            else:
                coefficient = coefficient[:, getattr(self, f"parents_{k}")]
            term = grad_pixels * weights[k] / picked[k].clamp(min=TINY)
            coefficient.scatter_add_(1, positions[k].unsqueeze(1), term.unsqueeze(1))
        if coefficient is not None:
            scale = coefficient[:, getattr(self, f"parents_{leaf_level}")].neg_().add_(scale)
        grad = probs.mul_(scale)
        leaf_term = -(grad_pixels * weights[leaf_level]).unsqueeze(1)
        return grad.scatter_add_(1, positions[leaf_level].unsqueeze(1), leaf_term)
