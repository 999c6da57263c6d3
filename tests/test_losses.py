"""hsiseg.losses: every property of METHOD.md section 6, brute-force references, and MONAI equality."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from hsiseg import HsisegError, LabelTree, build_loss
from hsiseg.losses import LOSSES, tree_wasserstein_distance
from tests.strategies import random_trees

ALL_LOSSES = sorted(LOSSES)
PIXEL_LOSSES = ["ce", "tree-wasserstein", "tree-ce"]
IGNORE = -100


def random_batch(tree: LabelTree, shape=(2, 5, 4), seed: int = 0, partial: bool = True):
    """Logits (B, C, *shape[1:]) and codes with some ignored pixels and (optionally) partial labels."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape[0], tree.num_leaves, *shape[1:], generator=generator, dtype=torch.float64) * 2
    high = tree.num_nodes if partial else tree.num_leaves
    target = torch.randint(0, high, shape, generator=generator)
    target[torch.rand(shape, generator=generator) < 0.3] = IGNORE
    return logits, target


def softmax_np(logits: torch.Tensor) -> np.ndarray:
    """(B, C, *S) -> (P, C) probabilities per pixel, pixels in target.flatten() order."""
    z = logits.detach().movedim(1, -1).reshape(-1, logits.shape[1]).numpy()
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


# --- brute-force references (numpy, pixel by pixel, straight from METHOD.md) ------------------------------


def reference_ce(tree: LabelTree, logits, target) -> np.ndarray:
    probs, codes = softmax_np(logits), target.flatten().numpy()
    out = np.zeros(len(codes))
    for i, code in enumerate(codes):
        if code != IGNORE:
            out[i] = -math.log(
                sum(probs[i, tree.leaf_index(leaf)] for leaf in tree.leaves_of(tree.node(int(code)).name))
            )
    return out


def reference_tree_ce(tree: LabelTree, logits, target, weights) -> np.ndarray:
    probs, codes = softmax_np(logits), target.flatten().numpy()
    out = np.zeros(len(codes))
    for i, code in enumerate(codes):
        if code == IGNORE:
            continue
        name = tree.node(int(code)).name
        for depth, weight in enumerate(weights, start=1):
            node = tree.ancestor(name, depth) if depth <= tree.depth_of(name) else name
            marginal = sum(probs[i, tree.leaf_index(leaf)] for leaf in tree.leaves_of(node))
            out[i] += weight * -math.log(marginal)
    return out


def reference_wasserstein(tree: LabelTree, logits, target, normalize: bool) -> np.ndarray:
    """W by the collapsed-subtree path distance, summed leaf by leaf."""
    probs, codes = softmax_np(logits), target.flatten().numpy()
    scale = tree.distance_matrix().max() if normalize else 1.0
    out = np.zeros(len(codes))
    for i, code in enumerate(codes):
        if code != IGNORE:
            out[i] = sum(tree.node_distance_matrix()[code, c] * probs[i, c] for c in range(tree.num_leaves)) / scale
    return out


def ot_lp(cost: np.ndarray, p: np.ndarray, q: np.ndarray) -> float:
    """Optimal transport cost between p and q by linear programming (the definition, no tree)."""
    n = len(p)
    rows = np.kron(np.eye(n), np.ones(n))  # sum_j T[i, j] = p_i
    cols = np.kron(np.ones(n), np.eye(n))  # sum_i T[i, j] = q_j
    result = linprog(cost.flatten(), A_eq=np.vstack([rows, cols]), b_eq=np.concatenate([p, q]), bounds=(0, None))
    assert result.status == 0
    return float(result.fun)


# --- property 1: flat tree ---------------------------------------------------------------------------------


def test_flat_tree_wasserstein_is_two_times_one_minus_p_true() -> None:
    tree = LabelTree.from_dict({"children": ["a", "b", "c", "d", "e"]})
    logits, target = random_batch(tree, partial=False)
    loss = build_loss("tree-wasserstein", tree, alpha=0.0, beta=1.0, normalize_distances=False, reduction="none")
    probs = torch.softmax(logits, 1)
    true_prob = probs.gather(1, target.clamp(min=0).unsqueeze(1)).squeeze(1)
    expected = torch.where(target != IGNORE, 2 * (1 - true_prob), 0.0)
    torch.testing.assert_close(loss(logits, target), expected)


def test_flat_tree_ce_equals_torch_cross_entropy() -> None:
    tree = LabelTree.from_dict({"children": ["a", "b", "c", "d", "e"]})
    logits, target = random_batch(tree, partial=False)
    expected = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")
    for name in ("ce", "tree-ce"):
        torch.testing.assert_close(build_loss(name, tree, reduction="none")(logits, target), expected)
        torch.testing.assert_close(
            build_loss(name, tree)(logits, target), F.cross_entropy(logits, target, ignore_index=IGNORE)
        )


# --- brute force on unbalanced trees with partial labels -------------------------------------------------


def test_ce_matches_reference_with_partial_labels(unbalanced_tree: LabelTree) -> None:
    logits, target = random_batch(unbalanced_tree)
    assert (target >= unbalanced_tree.num_leaves).any()
    got = build_loss("ce", unbalanced_tree, reduction="none")(logits, target).flatten().numpy()
    np.testing.assert_allclose(got, reference_ce(unbalanced_tree, logits, target), rtol=1e-10)


@pytest.mark.parametrize("weights", [[1, 1, 1], [4, 1, 1], [0.5, 0, 2]])
def test_tree_ce_matches_reference(unbalanced_tree: LabelTree, weights) -> None:
    logits, target = random_batch(unbalanced_tree)
    loss = build_loss("tree-ce", unbalanced_tree, reduction="none", level_weights=weights)
    got = loss(logits, target).flatten().numpy()
    np.testing.assert_allclose(got, reference_tree_ce(unbalanced_tree, logits, target, weights), rtol=1e-10)


@settings(max_examples=30, deadline=None)
@given(random_trees(max_depth=4, weighted=False), st.integers(0, 10_000))
def test_tree_ce_matches_reference_on_random_trees(tree: LabelTree, seed: int) -> None:
    logits, target = random_batch(tree, shape=(1, 3, 3), seed=seed)
    weights = [1.0 + d for d in range(tree.depth)]
    got = build_loss("tree-ce", tree, reduction="none", level_weights=weights)(logits, target).flatten().numpy()
    np.testing.assert_allclose(got, reference_tree_ce(tree, logits, target, weights), rtol=1e-9)


def test_top_level_weight_sets_v1(demo_tree: LabelTree) -> None:
    logits, target = random_batch(demo_tree)
    a = build_loss("tree-ce", demo_tree, top_level_weight=4.0)(logits, target)
    b = build_loss("tree-ce", demo_tree, level_weights=[4.0, 1.0, 1.0])(logits, target)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("normalize", [True, False])
def test_tree_wasserstein_matches_reference(unbalanced_tree: LabelTree, normalize: bool) -> None:
    logits, target = random_batch(unbalanced_tree)
    alpha, beta = 0.7, 1.3
    loss = build_loss(
        "tree-wasserstein",
        unbalanced_tree,
        reduction="none",
        alpha=alpha,
        beta=beta,
        normalize_distances=normalize,
    )
    expected = alpha * reference_ce(unbalanced_tree, logits, target) + beta * reference_wasserstein(
        unbalanced_tree, logits, target, normalize
    )
    np.testing.assert_allclose(loss(logits, target).flatten().numpy(), expected, rtol=1e-10)


# --- property 2: the closed form is the optimal-transport optimum ------------------------------------------


@settings(max_examples=40, deadline=None)
@given(random_trees(max_leaves=7, max_depth=3), st.integers(0, 10_000))
def test_closed_form_equals_linear_program(tree: LabelTree, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(tree.num_leaves) * 0.5)
    q = rng.dirichlet(np.ones(tree.num_leaves) * 0.5)
    closed = tree_wasserstein_distance(
        torch.tensor(p)[None, :, None],
        torch.tensor(q)[None, :, None],
        torch.tensor(tree.ancestor_matrix()),
        torch.tensor(tree.edge_weights()),
    ).item()
    distances = tree.distance_matrix()
    assert closed == pytest.approx(ot_lp(distances, p, q), abs=1e-7)
    assert 0 <= closed <= distances.max() + 1e-12
    same = tree_wasserstein_distance(
        torch.tensor(p)[None, :, None],
        torch.tensor(p)[None, :, None],
        torch.tensor(tree.ancestor_matrix()),
        torch.tensor(tree.edge_weights()),
    ).item()
    assert same == 0
    if not np.allclose(p, q) and (tree.edge_weights() > 0).all():
        assert closed > 0


def test_soft_targets_use_the_closed_form_and_agree_with_crisp(unbalanced_tree: LabelTree) -> None:
    tree = unbalanced_tree
    logits, target = random_batch(tree, partial=False)
    one_hot = F.one_hot(target.clamp(min=0), tree.num_leaves).movedim(-1, 1).double()
    one_hot = one_hot * (target != IGNORE).unsqueeze(1)  # all-zero rows = unannotated
    for normalize in (True, False):
        loss = build_loss("tree-wasserstein", tree, reduction="none", normalize_distances=normalize)
        torch.testing.assert_close(loss(logits, one_hot), loss(logits, target))


def test_soft_targets_against_linear_program(unbalanced_tree: LabelTree) -> None:
    tree = unbalanced_tree
    logits = torch.randn(1, tree.num_leaves, 3, dtype=torch.float64)
    soft = torch.softmax(torch.randn(1, tree.num_leaves, 3, dtype=torch.float64), 1)
    loss = build_loss("tree-wasserstein", tree, alpha=0.0, normalize_distances=False, reduction="none")
    got = loss(logits, soft)[0]
    probs = torch.softmax(logits, 1)[0]
    for pixel in range(3):
        expected = ot_lp(tree.distance_matrix(), probs[:, pixel].numpy(), soft[0, :, pixel].numpy())
        assert got[pixel].item() == pytest.approx(expected, abs=1e-7)


# --- property 3: better mistakes cost less ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["tree-wasserstein", "tree-ce", "tree-gwdl"])
def test_moving_mass_to_a_sibling_lowers_the_loss(demo_tree: LabelTree, name: str) -> None:
    tree = demo_tree
    true, sibling, far = (
        tree.leaf_index("artery"),
        tree.leaf_index("vein"),
        tree.leaf_index("metal instrument"),
    )
    probs = torch.full((tree.num_leaves,), 0.5 / (tree.num_leaves - 1), dtype=torch.float64)
    probs[true] = 0.3
    probs[far] += 0.2
    moved = probs.clone()
    moved[far] -= 0.15
    moved[sibling] += 0.15
    target = torch.tensor([[true]])
    loss = build_loss(name, tree)
    before = loss(probs.log()[None, :, None], target)
    after = loss(moved.log()[None, :, None], target)
    assert after < before


# --- property 4: finite gradients ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_extreme_logits_give_finite_loss_and_gradients(demo_tree: LabelTree, name: str) -> None:
    generator = torch.Generator().manual_seed(1)
    signs = torch.randint(0, 2, (2, demo_tree.num_leaves, 4, 4), generator=generator) * 2 - 1
    logits = (signs * 1e4).float().requires_grad_()
    target = torch.randint(0, demo_tree.num_nodes, (2, 4, 4), generator=generator)
    value = build_loss(name, demo_tree)(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


def test_extreme_logits_loss_value_is_exact(demo_tree: LabelTree) -> None:
    """-log P of a node whose leaves all sit 2e4 below another leaf is 2e4, not inf or a clamp."""
    logits = torch.full((1, demo_tree.num_leaves, 1), -1e4)
    logits[0, demo_tree.leaf_index("metal instrument")] = 1e4
    target = torch.tensor([[demo_tree.index("vessel")]])
    assert build_loss("ce", demo_tree)(logits, target).item() == pytest.approx(2e4 - math.log(2), rel=1e-6)
    tree_ce = build_loss("tree-ce", demo_tree, level_weights=[1, 0, 0])(logits, target)
    assert tree_ce.item() == pytest.approx(2e4 - math.log(3), rel=1e-6)  # 3 leaves under vascular structures


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_no_annotated_pixel_gives_zero_loss_and_zero_gradients(demo_tree: LabelTree, name, reduction) -> None:
    logits = torch.randn(2, demo_tree.num_leaves, 3, 3, requires_grad=True)
    target = torch.full((2, 3, 3), IGNORE)
    value = build_loss(name, demo_tree, reduction=reduction)(logits, target)
    value.sum().backward()
    assert (value == 0).all()
    assert logits.grad is not None and (logits.grad == 0).all()


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_half_precision_matches_float32(demo_tree: LabelTree, name: str, dtype) -> None:
    logits, target = random_batch(demo_tree, shape=(2, 6, 6))
    half = logits.to(dtype).requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        value = build_loss(name, demo_tree)(half, target)
    value.backward()
    assert value.dtype == torch.float32
    assert torch.isfinite(half.grad.float()).all()
    reference = build_loss(name, demo_tree)(half.detach().float(), target)
    torch.testing.assert_close(value, reference)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_gradients_match_finite_differences(unbalanced_tree: LabelTree, name: str) -> None:
    """The defining autograd implementation against finite differences (fast paths: next test)."""
    logits, target = random_batch(unbalanced_tree, shape=(2, 3, 2), seed=3)
    loss = build_loss(name, unbalanced_tree)
    loss.fused = False
    assert torch.autograd.gradcheck(lambda z: loss(z, target), (logits.requires_grad_(),))


def fused_and_exact(loss, logits: torch.Tensor, target: torch.Tensor, grad_out: torch.Tensor):
    results = []
    for fused in (True, False):
        loss.fused = fused
        z = logits.clone().requires_grad_()
        value = loss(z, target)
        value.backward(grad_out)
        results.append((value.detach(), z.grad))
    return results


@pytest.mark.parametrize("name", ["tree-wasserstein", "tree-ce"])
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_fast_path_equals_exact_autograd(demo_tree: LabelTree, name: str, scale: float, reduction: str) -> None:
    """Fast forward/backward = defining implementation, with partial labels and underflowing marginals."""
    logits, target = random_batch(demo_tree, shape=(2, 7, 6), seed=5)
    logits = (logits * scale).float()
    loss = (
        build_loss(name, demo_tree, reduction=reduction, top_level_weight=3.0)
        if name == "tree-ce"
        else (build_loss(name, demo_tree, reduction=reduction, alpha=0.5, beta=2.0))
    )
    grad_out = torch.rand(target.shape) if reduction == "none" else torch.tensor(1.0)
    (fast_value, fast_grad), (exact_value, exact_grad) = fused_and_exact(loss, logits, target, grad_out)
    torch.testing.assert_close(fast_value, exact_value, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(fast_grad, exact_grad, rtol=1e-4, atol=1e-6)


def test_fast_path_refuses_a_second_backward(demo_tree: LabelTree) -> None:
    logits, target = random_batch(demo_tree)
    z = logits.float().requires_grad_()
    value = build_loss("tree-ce", demo_tree)(z, target)
    value.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="do not retain_graph"):
        value.backward()


# --- property 5: 2D and 3D -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_same_code_for_2d_and_3d(demo_tree: LabelTree, name: str) -> None:
    logits, target = random_batch(demo_tree, shape=(2, 3, 4, 5))
    assert logits.dim() == 5
    loss = build_loss(name, demo_tree, reduction="none")
    volume = loss(logits, target)
    flat = loss(logits.reshape(2, demo_tree.num_leaves, 12, 5), target.reshape(2, 12, 5))
    torch.testing.assert_close(volume.reshape(flat.shape), flat)
    if name in PIXEL_LOSSES:
        assert volume.shape == target.shape


# --- reductions, gwdl, dice-ce ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", PIXEL_LOSSES)
def test_pixel_reductions(demo_tree: LabelTree, name: str) -> None:
    logits, target = random_batch(demo_tree)
    per_pixel = build_loss(name, demo_tree, reduction="none")(logits, target)
    assert (per_pixel[target == IGNORE] == 0).all()
    valid = (target != IGNORE).sum()
    torch.testing.assert_close(build_loss(name, demo_tree, reduction="sum")(logits, target), per_pixel.sum())
    torch.testing.assert_close(build_loss(name, demo_tree)(logits, target), per_pixel.sum() / valid)


def test_gwdl_equals_monai_when_conventions_coincide(demo_tree: LabelTree) -> None:
    monai_losses = pytest.importorskip("monai.losses")
    logits, target = random_batch(demo_tree, shape=(3, 6, 5), partial=False)
    target = target.clamp(min=0)  # MONAI has no ignore index
    weights = [0.0] + [1.0] * (demo_tree.num_leaves - 1)  # MONAI: class 0 is background
    reference = monai_losses.GeneralizedWassersteinDiceLoss(
        dist_matrix=demo_tree.distance_matrix().copy(), reduction="none"
    )
    ours = build_loss("tree-gwdl", demo_tree, class_weights=weights, reduction="none")
    torch.testing.assert_close(ours(logits, target), reference(logits, target))
    mean_reference = monai_losses.GeneralizedWassersteinDiceLoss(dist_matrix=demo_tree.distance_matrix().copy())
    torch.testing.assert_close(
        build_loss("tree-gwdl", demo_tree, class_weights=weights)(logits, target),
        mean_reference(logits, target),
    )


def test_gwdl_default_treats_every_class_alike(demo_tree: LabelTree) -> None:
    """No class is silently background: a perfect class-0 prediction scores a perfect Dice."""
    logits = torch.full((1, demo_tree.num_leaves, 4), -30.0)
    logits[0, 0] = 30.0
    target = torch.zeros((1, 4), dtype=torch.long)
    assert build_loss("tree-gwdl", demo_tree)(logits, target).item() == pytest.approx(0, abs=1e-6)


def test_gwdl_ignores_unannotated_pixels(demo_tree: LabelTree) -> None:
    logits, target = random_batch(demo_tree, partial=False)
    loss = build_loss("tree-gwdl", demo_tree, reduction="none")
    changed = torch.where((target == IGNORE).unsqueeze(1), 50.0, logits)  # anything at unannotated pixels
    torch.testing.assert_close(loss(changed, target), loss(logits, target))


def test_gwdl_ce_term_is_the_per_image_cross_entropy(demo_tree: LabelTree) -> None:
    """ce_weight adds w * (per-image mean of -log P_t): plain CE for leaves, the node marginal for a parent."""
    logits, target = random_batch(demo_tree, shape=(3, 6, 5), partial=True)
    plain = build_loss("tree-gwdl", demo_tree, reduction="none")(logits, target)
    mixed = build_loss("tree-gwdl", demo_tree, reduction="none", ce_weight=0.5)(logits, target)
    probs = torch.softmax(logits.double(), 1).flatten(2)  # (B, C, S)
    codes = target.flatten(1)
    for image in range(logits.shape[0]):
        terms = []
        for pixel, code in enumerate(codes[image].tolist()):
            if code == IGNORE:
                continue
            leaves = [demo_tree.leaf_index(n) for n in demo_tree.leaves_of(demo_tree.node(code).name)]
            terms.append(-math.log(float(probs[image, leaves, pixel].sum())))
        expected = float(plain[image]) + 0.5 * (sum(terms) / len(terms) if terms else 0.0)
        assert float(mixed[image]) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(HsisegError, match="'ce_weight' must be >= 0"):
        build_loss("tree-gwdl", demo_tree, ce_weight=-1)


def test_dice_ce_matches_reference(demo_tree: LabelTree) -> None:
    logits, target = random_batch(demo_tree, shape=(2, 8, 8), partial=False)
    loss = build_loss("dice-ce", demo_tree, reduction="none", smooth=0.0)
    got = loss(logits, target)
    probs = torch.softmax(logits, 1)
    for image in range(2):
        mask = target[image] != IGNORE
        codes = target[image][mask]
        p = probs[image][:, mask]  # (C, K)
        ce = -torch.log(p[codes, torch.arange(len(codes))]).mean()
        dices = []
        for c in codes.unique():
            truth = (codes == c).double()
            dices.append(2 * (p[c] * truth).sum() / (p[c].sum() + truth.sum()))
        expected = ce + 1 - torch.stack(dices).mean()
        torch.testing.assert_close(got[image], expected)


# --- options and input errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("focal", {}, "unknown loss 'focal'; choose one of"),
        ("tree-ce", {"gamma": 2}, r"loss 'tree-ce' has no option\(s\) \['gamma'\]"),
        ("tree-ce", {"level_weights": [1, 1]}, "the tree has 3 levels, got 2 weights"),
        ("tree-ce", {"level_weights": [1, 1, 1], "top_level_weight": 2}, "exclude each other"),
        ("tree-ce", {"level_weights": [1, -1, 1]}, "non-negative"),
        ("tree-gwdl", {"class_weights": [1, 2]}, "expected 14 non-negative numbers"),
        ("tree-wasserstein", {"beta": -1}, "'beta' must be >= 0"),
        ("ce", {"reduction": "avg"}, "'reduction': expected one of"),
        ("ce", {"ignore_index": 3}, "target code of 'cotton patty'"),
    ],
)
def test_bad_options(demo_tree: LabelTree, name, options, message) -> None:
    with pytest.raises(HsisegError, match=message):
        build_loss(name, demo_tree, **options)


def test_dashed_option_names_are_accepted(demo_tree: LabelTree) -> None:
    assert build_loss("tree-ce", demo_tree, **{"top-level-weight": 4}).level_weights == [4.0, 1.0, 1.0]


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_bad_inputs(demo_tree: LabelTree, name: str) -> None:
    loss = build_loss(name, demo_tree)
    logits = torch.randn(2, demo_tree.num_leaves, 4, 4)
    with pytest.raises(HsisegError, match="logits have 13 channels but the label tree has 14 leaves"):
        loss(logits[:, :13], torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(HsisegError, match="does not match logits"):
        loss(logits, torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(HsisegError, match=f"target code {demo_tree.num_nodes} is neither"):
        loss(logits, torch.full((2, 4, 4), demo_tree.num_nodes))
    if name != "tree-wasserstein":  # which accepts soft targets of the logits' shape
        with pytest.raises(HsisegError, match="must hold integer codes"):
            loss(logits, torch.zeros(2, 4, 4))


def test_loss_modules_move_with_their_buffers(demo_tree: LabelTree) -> None:
    loss = build_loss("tree-ce", demo_tree).to(torch.float64)
    assert {buffer.device.type for buffer in loss.buffers()} == {"cpu"}
    logits, target = random_batch(demo_tree)
    assert torch.isfinite(loss(logits, target))
