"""The rich synthetic surgical scene: 100 leaves under four clinical families, for the label-tree benchmark.

Generative choices (also in the header of ``hsiseg/resources/rich_surgical_tree.yaml``; ours, not measured):

- **Leaf spectra, drawn hierarchically.** Every leaf has a parameter vector. Tissue leaves (abnormal, normal,
  vascular) use the chromophore model of :mod:`hsiseg.synthetic.tissues`: log blood volume, oxygen
  saturation, water, fat, log scattering scale (the scattering type is the family's). Equipment leaves use a
  material curve: level, slope, a coloured edge (height and position) and water-band depth. A leaf's
  parameters are ``family base + GROUP_SPREAD z_group s + LEAF_SPREAD sibling_scale z_leaf s`` with standard
  normal ``z`` drawn once from a fixed seed and per-parameter scales ``s``. Siblings are close, cousins
  farther, families far apart; ``sibling_scale`` moves siblings closer (< 1) or farther (> 1) and nothing else.
- **Long tail.** Leaves are ranked once at random; the leaf of rank k (0: the commonest) has prior area share
  ~ (k + TAIL_OFFSET)^-TAIL: the commonest about 12%, the rarest 0.18% (70 times less).
- **Scenes.** Smooth, warped cells (each one leaf drawn from the prior), thin vessels (vascular leaves) and
  instrument shafts (equipment leaves). Per-surgery blood and oxygenation offsets, smooth per-pixel
  variation, and the demo's camera effects (:func:`hsiseg.synthetic.scene.light_and_noise`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from hsiseg.synthetic.scene import _bar, _curve, _smooth_noise, light_and_noise
from hsiseg.synthetic.tissues import absorption, chromophores, diffuse_reflectance, wavelengths
from hsiseg.tree import LabelTree

TREE_RESOURCE = "rich_surgical_tree.yaml"
SPECTRA_SEED = 2025
GROUP_SPREAD = 1.0
LEAF_SPREAD = 0.35
TAIL = 1.2
TAIL_OFFSET = 3.0
EQUIPMENT = "surgical equipment"

# Family base points. Tissue: (log blood, saturation, water, fat, log scattering scale) and scattering type.
TISSUE_BASE = {
    "abnormal tissue": (np.log(0.06), 0.62, 0.85, 0.03, np.log(1.0), "background"),
    "normal tissue": (np.log(0.035), 0.78, 0.72, 0.08, np.log(1.3), "background"),
    "vascular structures": (np.log(0.30), 0.80, 0.55, 0.01, np.log(0.2), "blood"),
}
TISSUE_SCALES = np.array([0.35, 0.08, 0.06, 0.03, 0.25])
# Equipment: (level, slope, edge height, edge position nm, water depth).
EQUIPMENT_BASE = np.array([0.45, 0.05, 0.15, 650.0, 0.05])
EQUIPMENT_SCALES = np.array([0.15, 0.06, 0.15, 60.0, 0.1])


@cache
def rich_tree() -> LabelTree:
    """The packaged 100-leaf label tree of the rich scene."""
    with resources.as_file(resources.files("hsiseg.resources") / TREE_RESOURCE) as path:
        return LabelTree.from_file(path)


@dataclass(frozen=True)
class LeafModel:
    """Spectral parameters of every leaf (rows in ``tree.leaves`` order) and the long-tail prior.

    ``parameters``: (C, 5); ``family``: (C,) top-level name per leaf; ``prior``: (C,) area shares, sum 1.
    """

    tree: LabelTree
    parameters: np.ndarray
    family: tuple[str, ...]
    prior: np.ndarray

    def reflectance(self, code: int, blood_scale: np.ndarray, saturation_shift: np.ndarray) -> np.ndarray:
        """(P, 100) reflectance of leaf ``code`` for P pixels with their blood scale and saturation shift."""
        values = self.parameters[code]
        family = self.family[code]
        if family == EQUIPMENT:
            return np.broadcast_to(material_curve(values), (len(blood_scale), len(wavelengths())))
        blood = np.clip(np.exp(values[0]) * blood_scale, 0.002, 0.95)
        saturation = np.clip(values[1] + saturation_shift, 0.02, 1.0)
        water, fat = np.clip(values[2], 0.05, 0.95), np.clip(values[3], 0.0, 0.5)
        mu_a = absorption(blood, saturation, water, fat)
        scattering = chromophores()[f"musp_jacques2013_{TISSUE_BASE[family][5]}_cm-1"] * np.exp(values[4])
        return diffuse_reflectance(mu_a, scattering)


def material_curve(values: np.ndarray) -> np.ndarray:
    """(100,) reflectance of a material: level + slope x + edge height sigmoid((nm - edge) / 20), water bands."""
    level, slope, edge, position, water = values
    nm = wavelengths()
    curve = level + slope * (nm - 500) / 500 + edge / (1 + np.exp(-(nm - position) / 20))
    return np.clip(curve, 0.03, 0.97) * np.exp(-max(water, 0.0) * chromophores()["mua_water_simpa_cm-1"])


def leaf_model(tree: LabelTree, sibling_scale: float = 1.0, spectra_seed: int = SPECTRA_SEED) -> LeafModel:
    """Leaf parameters drawn hierarchically from ``spectra_seed`` (the same draws for every ``sibling_scale``:
    the knob moves leaves towards or away from their group centre, nothing else). The long-tail ranking is
    fixed (drawn from :data:`SPECTRA_SEED` + 1) whatever the spectra."""
    rng = np.random.default_rng(spectra_seed)
    parameters = np.zeros((tree.num_leaves, 5))
    family_of = [""] * tree.num_leaves
    for family in tree.top_level:
        base, scales = _family_point(family)
        for group in tree.node(family).children:
            group_z = rng.standard_normal(5)
            for leaf in tree.leaves_of(tree.node(group).name):
                leaf_z = rng.standard_normal(5)
                code = tree.leaf_index(leaf)
                parameters[code] = base + (GROUP_SPREAD * group_z + LEAF_SPREAD * sibling_scale * leaf_z) * scales
                family_of[code] = family
    ranks = np.random.default_rng(SPECTRA_SEED + 1).permutation(tree.num_leaves)
    prior = (ranks + TAIL_OFFSET) ** -TAIL
    return LeafModel(tree, parameters, tuple(family_of), prior / prior.sum())


def _family_point(family: str) -> tuple[np.ndarray, np.ndarray]:
    if family == EQUIPMENT:
        return EQUIPMENT_BASE, EQUIPMENT_SCALES
    return np.array(TISSUE_BASE[family][:5], dtype=np.float64), TISSUE_SCALES


def rich_layout(model: LeafModel, shape: tuple[int, int], rng: np.random.Generator, cells: int = 60) -> np.ndarray:
    """Dense truth (H, W) int32: warped cells with leaves from the prior, then vessels and instrument shafts."""
    height, width = shape
    rows, columns = np.mgrid[:height, :width].astype(np.float64)
    warp = min(shape) / 12
    rows += warp * _smooth_noise(rng, shape, min(shape) / 8)
    columns += warp * _smooth_noise(rng, shape, min(shape) / 8)
    centres = rng.uniform([0, 0], [height, width], (cells, 2))
    nearest = np.argmin((rows[..., None] - centres[:, 0]) ** 2 + (columns[..., None] - centres[:, 1]) ** 2, axis=-1)
    leaves = rng.choice(model.tree.num_leaves, size=cells, p=model.prior)
    truth = leaves[nearest].astype(np.int32)
    for family, count, draw in (
        ("vascular structures", rng.integers(1, 4), _vessel),
        (EQUIPMENT, rng.integers(0, 3), _shaft),
    ):
        members = np.flatnonzero(np.asarray(model.family) == family)
        weights = model.prior[members] / model.prior[members].sum()
        for _ in range(count):
            truth[draw(rng, shape)] = rng.choice(members, p=weights)
    return truth


def _vessel(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return _curve(rng, shape, rng.uniform(3, 6))


def _shaft(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    height, width = shape
    start = (rng.uniform(0, height), 0.0) if rng.random() < 0.5 else (height - 1.0, rng.uniform(0, width))
    end = (rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width)
    return _bar(shape, start, end, rng.uniform(4, 8))


def render_rich(
    truth: np.ndarray, model: LeafModel, rng: np.random.Generator, patient_offset: np.ndarray, noise: float = 0.006
) -> np.ndarray:
    """(H, W, 100) float32 reflectance of a truth map; ``patient_offset`` = (blood scale, saturation shift)."""
    shape = truth.shape
    cube = np.zeros((*shape, len(wavelengths())), dtype=np.float64)
    blood_field = (1 + 0.10 * _smooth_noise(rng, shape, 4)) * patient_offset[0]
    saturation_field = 0.02 * _smooth_noise(rng, shape, 6) + patient_offset[1]
    texture = 1 + 0.03 * _smooth_noise(rng, shape, 2)
    for code in np.unique(truth):
        mask = truth == code
        spectra = model.reflectance(int(code), blood_field[mask], saturation_field[mask])
        cube[mask] = spectra * (texture[mask, None] if model.family[code] == EQUIPMENT else 1.0)
    wet = np.isin(np.asarray(model.family)[truth], [EQUIPMENT, "vascular structures"])
    return light_and_noise(cube, wet, rng, noise)


@dataclass(frozen=True)
class RichScene:
    """One rendered scene: (H, W, 100) float32 ``cube``, (H, W) int32 dense ``truth``, its ``subject``."""

    cube: np.ndarray
    truth: np.ndarray
    subject: str


def rich_scenes(
    surgeries: int,
    frames: int,
    shape: tuple[int, int] = (96, 128),
    seed: int = 0,
    sibling_scale: float = 1.0,
    spectra_seed: int = SPECTRA_SEED,
) -> list[RichScene]:
    """``surgeries x frames`` scenes; each surgery has its own blood and oxygenation offset. The layouts and
    noise depend on ``seed`` only, so scenes of two ``sibling_scale`` values differ in their spectra alone;
    ``spectra_seed`` draws another set of leaf spectra (:func:`leaf_model`)."""
    model = leaf_model(rich_tree(), sibling_scale, spectra_seed)
    rng = np.random.default_rng(seed)
    offsets = [np.array([rng.uniform(0.85, 1.2), rng.uniform(-0.04, 0.04)]) for _ in range(surgeries)]
    scenes = []
    for surgery in range(surgeries):
        for frame in range(frames):
            scene_rng = np.random.default_rng([seed, surgery, frame])
            truth = rich_layout(model, shape, scene_rng)
            cube = render_rich(truth, model, scene_rng, offsets[surgery])
            scenes.append(RichScene(cube, truth, f"surgery{surgery + 1:02d}"))
    return scenes
