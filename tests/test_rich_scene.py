"""The rich 100-leaf synthetic scene: tree shape, hierarchical spectra, the sibling knob, the long tail, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hsiseg.dataset.spec import DataSpec
from hsiseg.synthetic.rich import (
    LEAF_SPREAD,
    TAIL,
    TAIL_OFFSET,
    TISSUE_SCALES,
    leaf_model,
    rich_layout,
    rich_scenes,
    rich_tree,
)
from hsiseg.synthetic.tissues import wavelengths
from hsiseg_cli.main import app


def test_tree_has_about_100_leaves_under_the_four_families() -> None:
    tree = rich_tree()
    assert tree.num_leaves == 100 and tree.depth == 3
    assert tree.top_level == ("surgical equipment", "abnormal tissue", "normal tissue", "vascular structures")
    assert all(tree.depth_of(leaf) == 3 for leaf in tree.leaves)


def _mean_spectral_distance(spectra: np.ndarray, pairs: list[tuple[int, int]]) -> float:
    return float(np.mean([np.abs(spectra[a] - spectra[b]).mean() for a, b in pairs]))


def _pairs(tree, relation: str) -> list[tuple[int, int]]:
    """Leaf pairs that are siblings, cousins (same family, other group) or in different families."""
    pairs = []
    for a, first in enumerate(tree.leaves):
        for b in range(a + 1, tree.num_leaves):
            second = tree.leaves[b]
            same_group = tree.ancestor(first, 2) == tree.ancestor(second, 2)
            same_family = tree.ancestor(first, 1) == tree.ancestor(second, 1)
            kind = "siblings" if same_group else "cousins" if same_family else "strangers"
            if kind == relation:
                pairs.append((a, b))
    return pairs


def _spectra(model) -> np.ndarray:
    ones, zeros = np.ones(1), np.zeros(1)
    return np.stack([model.reflectance(code, ones, zeros)[0] for code in range(model.tree.num_leaves)])


def test_siblings_are_closer_than_cousins_and_cousins_closer_than_other_families() -> None:
    tree = rich_tree()
    spectra = _spectra(leaf_model(tree))
    assert spectra.shape == (100, len(wavelengths())) and np.isfinite(spectra).all()
    siblings, cousins, strangers = (_mean_spectral_distance(spectra, _pairs(tree, r)) for r in
                                    ("siblings", "cousins", "strangers"))  # fmt: skip
    assert siblings < cousins < strangers


def test_sibling_scale_moves_leaves_along_their_own_offset_only() -> None:
    """Parameters are linear in the knob: leaf = group centre + sibling_scale * LEAF_SPREAD * z * scales."""
    tree = rich_tree()
    half, one, two = (leaf_model(tree, s).parameters for s in (0.5, 1.0, 2.0))
    np.testing.assert_allclose(two - one, 2 * (one - half), atol=1e-12)
    tissue = leaf_model(tree).family.index("abnormal tissue")
    z = (one[tissue] - half[tissue]) / (0.5 * LEAF_SPREAD * TISSUE_SCALES)  # the leaf's own standard normal draw
    assert np.all(np.abs(z) < 6)
    # at 0 siblings coincide with their group centre, while groups of one family stay apart
    zero = leaf_model(tree, 0.0).parameters
    for group in ("cortex", "metal instruments"):
        codes = [tree.leaf_index(leaf) for leaf in tree.leaves_of(group)]
        np.testing.assert_array_equal(zero[codes], np.repeat(zero[codes[:1]], len(codes), axis=0))
    cortex, white_matter = tree.leaf_index("frontal cortex"), tree.leaf_index("corpus callosum")
    assert np.abs(zero[cortex] - zero[white_matter]).max() > 0.01
    spectra = [_spectra(leaf_model(tree, s)) for s in (0.5, 1.0, 2.0)]
    distances = [_mean_spectral_distance(s, _pairs(tree, "siblings")) for s in spectra]
    assert distances[0] < distances[1] < distances[2]


def test_spectra_seed_draws_other_spectra_with_the_same_prior() -> None:
    tree = rich_tree()
    first, other = leaf_model(tree), leaf_model(tree, spectra_seed=7)
    assert not np.allclose(first.parameters, other.parameters)
    np.testing.assert_array_equal(first.prior, other.prior)


def test_prior_is_the_documented_long_tail() -> None:
    prior = leaf_model(rich_tree()).prior
    assert prior.sum() == pytest.approx(1.0)
    expected = np.sort((np.arange(100) + TAIL_OFFSET) ** -TAIL)[::-1]
    np.testing.assert_allclose(np.sort(prior)[::-1], expected / expected.sum())


def test_layout_areas_follow_the_prior() -> None:
    model = leaf_model(rich_tree())
    rng = np.random.default_rng(0)
    counts = sum(np.bincount(rich_layout(model, (48, 64), rng).ravel(), minlength=100) for _ in range(40))
    order = np.argsort(-model.prior)
    assert counts[order[:10]].sum() > 5 * counts[order[-10:]].sum()  # prior ratio of these sets: 27.7x


def test_scenes_are_seeded_and_the_knob_changes_spectra_only() -> None:
    first = rich_scenes(2, 1, (24, 32), seed=3)
    again = rich_scenes(2, 1, (24, 32), seed=3)
    closer = rich_scenes(2, 1, (24, 32), seed=3, sibling_scale=0.5)
    for a, b, c in zip(first, again, closer, strict=True):
        assert a.cube.dtype == np.float32 and a.cube.shape == (24, 32, 100)
        np.testing.assert_array_equal(a.cube, b.cube)
        np.testing.assert_array_equal(a.truth, c.truth)
        assert not np.array_equal(a.cube, c.cube)
    assert [s.subject for s in first] == ["surgery01", "surgery02"]


def test_demo_data_writes_the_rich_scene(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "rich"
    arguments = ["demo-data", str(out), "--scene", "rich", "--surgeries", "2", "--frames", "1"]
    result = runner.invoke(app, [*arguments, "--height", "32", "--width", "40", "--partial-fraction", "0.5"])
    assert result.exit_code == 0, result.output
    spec = DataSpec.from_file(out / "demo.yaml")
    assert spec.tree.num_leaves == 100 and "100 leaves" in spec.document.description
    assert "Generative choices" in (out / "label_tree.yaml").read_text()
    # two surgeries leave one to train on: an explicit train split (folds need two subjects)
    assert spec.split("train") == ["surgery01_frame00"] and spec.split("test") == ["surgery02_frame00"]
    sample = next(iter(spec.samples))
    truth, scribbles = spec.read_truth(sample), spec.read_annotation(sample)
    assert truth.shape == (32, 40) and truth.min() >= 0 and truth.max() < 100
    annotated = scribbles >= 0
    assert 0 < annotated.mean() < 0.5
    leaves = scribbles[annotated] < 100
    # every stroke names the truth's leaf or its group (partial labels)
    groups = np.array([spec.tree.node(int(c)).parent for c in truth[annotated]])
    assert np.all(np.where(leaves, scribbles[annotated] == truth[annotated], scribbles[annotated] == groups))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--scene", "forest"], "scene 'forest' is unknown"),
        (["--scene", "rich", "--sibling-scale", "0"], "sibling_scale must be > 0"),
        (["--scene", "rich", "--recording", "3"], "--recording writes the neurosurgery scene"),
        (["--sibling-scale", "2"], "sibling_scale applies to the rich scene only"),
    ],
)
def test_demo_data_refuses_bad_scene_options(tmp_path: Path, arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["demo-data", str(tmp_path / "x"), *arguments])
    assert result.exit_code == 2
    assert message in result.output
