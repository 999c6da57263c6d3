"""A synthetic neurosurgical scene: layout, hyperspectral rendering and sparse scribbles.

Layout (dense truth, every pixel a leaf of the demo tree): grey matter with white-matter patches; a tumour
(core, an infiltration ring, sometimes necrosis); cortical arteries and veins as curved vessels; dura and
bone along one edge; pooled blood; and some of: metal instrument, suction tube, plastic, cotton patty.

Rendering: per-pixel tissue parameters with smooth spatial variation and a per-surgery offset (patients
differ), reflectance from :mod:`hsiseg.synthetic.tissues`, illumination fall-off towards the corners,
specular glare on wet and metal surfaces, and sensor noise.

Scribbles: a few short strokes (about ``stroke_width`` pixels wide) inside the interior of some of the
present classes only: most pixels stay unlabelled, and nothing is "background".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from hsiseg.annotations.simulate import random_walk_stroke
from hsiseg.synthetic.tissues import MATERIALS, TISSUES, material_reflectance, tissue_reflectance, wavelengths
from hsiseg.tree import LabelTree


@dataclass
class Scene:
    """One rendered scene.

    Attributes
    ----------
    cube: (H, W, 100) float32 reflectance on the Tivita grid.
    truth: (H, W) int32 leaf codes of the tree (dense).
    scribbles: (H, W) int32 target codes, -100 where unlabelled.
    """

    cube: np.ndarray
    truth: np.ndarray
    scribbles: np.ndarray


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (field.std() + 1e-12)


def _curve(rng: np.random.Generator, shape: tuple[int, int], width: float) -> np.ndarray:
    """A smooth curve (quadratic Bezier between two border points) of ``width`` pixels, as a mask."""
    height, width_px = shape
    start = np.array([rng.uniform(0, height), 0.0]) if rng.random() < 0.5 else np.array([0.0, rng.uniform(0, width_px)])
    end = (
        np.array([rng.uniform(0, height), width_px - 1.0])
        if start[1] == 0
        else np.array([height - 1.0, rng.uniform(0, width_px)])
    )
    control = np.array([rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width_px])
    t = np.linspace(0, 1, 4 * (height + width_px))[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
    centre = np.zeros(shape, dtype=bool)
    rows = np.clip(points[:, 0].round().astype(int), 0, height - 1)
    columns = np.clip(points[:, 1].round().astype(int), 0, width_px - 1)
    centre[rows, columns] = True
    return ndimage.distance_transform_edt(~centre) <= width / 2


def _ellipse(
    shape: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float], angle: float
) -> np.ndarray:
    rows, columns = np.mgrid[: shape[0], : shape[1]]
    dy, dx = rows - centre[0], columns - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = (dx * cos + dy * sin) / radii[1], (-dx * sin + dy * cos) / radii[0]
    return u**2 + v**2 <= 1


def _bar(shape: tuple[int, int], start: tuple[float, float], end: tuple[float, float], width: float) -> np.ndarray:
    """A straight instrument shaft from ``start`` to ``end`` (row, column) of ``width`` pixels."""
    rows, columns = np.mgrid[: shape[0], : shape[1]]
    p = np.stack([rows, columns], -1).astype(float)
    a, b = np.asarray(start, float), np.asarray(end, float)
    t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    distance = np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1)
    return distance <= width / 2


def layout(tree: LabelTree, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Dense truth (H, W) int32 of leaf codes for a random scene."""
    height, width = shape
    code = tree.leaf_index
    truth = np.full(shape, code("grey matter"), dtype=np.int32)
    truth[_smooth_noise(rng, shape, min(shape) / 8) > 0.8] = code("white matter")
    # tumour with an infiltration ring and sometimes a necrotic centre
    centre = (rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width)
    radii = (rng.uniform(0.12, 0.2) * height, rng.uniform(0.12, 0.2) * width)
    angle = rng.uniform(0, np.pi)
    truth[_ellipse(shape, centre, (radii[0] * 1.5, radii[1] * 1.5), angle)] = code("tumour infiltration")
    truth[_ellipse(shape, centre, radii, angle)] = code("tumour core")
    if rng.random() < 0.6:
        truth[_ellipse(shape, centre, (radii[0] * 0.4, radii[1] * 0.4), angle)] = code("necrosis")
    # dura and bone along one edge (the craniotomy border)
    rows, columns = np.mgrid[:height, :width]
    distance = [rows, height - 1 - rows, columns, width - 1 - columns][rng.integers(4)]  # to the chosen edge
    wobble = 3 * _smooth_noise(rng, shape, min(shape) / 6)
    truth[distance + wobble < 0.14 * min(shape)] = code("dura mater")
    truth[distance + wobble < 0.06 * min(shape)] = code("bone")
    # vessels
    for name in ("artery", "artery", "vein", "vein"):
        truth[_curve(rng, shape, rng.uniform(3, 6))] = code(name)
    if rng.random() < 0.7:
        blob = _ellipse(
            shape,
            (rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width),
            (0.06 * height, 0.09 * width),
            rng.uniform(0, np.pi),
        )
        truth[blob & (_smooth_noise(rng, shape, 3) > -0.5)] = code("pooled blood")
    # surgical equipment entering from the border
    for name in MATERIALS:
        if rng.random() < 0.55:
            continue
        if name in ("metal instrument", "suction tube"):
            side = rng.integers(2)
            start = (rng.uniform(0, height), 0.0) if side else (height - 1.0, rng.uniform(0, width))
            end = (rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width)
            truth[_bar(shape, start, end, rng.uniform(5, 9) if name == "suction tube" else rng.uniform(4, 7))] = code(
                name
            )
        else:
            size = (rng.uniform(0.1, 0.18) * height, rng.uniform(0.1, 0.18) * width)
            corner = (rng.uniform(0, height - size[0]), rng.uniform(0, width - size[1]))
            patch = (
                (rows >= corner[0])
                & (rows < corner[0] + size[0])
                & (columns >= corner[1])
                & (columns < corner[1] + size[1])
            )
            truth[patch] = code(name)
    return truth


def render(
    truth: np.ndarray, tree: LabelTree, rng: np.random.Generator, patient_offset: np.ndarray, noise: float = 0.006
) -> np.ndarray:
    """(H, W, 100) float32 reflectance for a truth map; ``patient_offset`` = (blood scale, saturation shift)."""
    shape = truth.shape
    cube = np.zeros((*shape, len(wavelengths())), dtype=np.float64)
    blood_field = 1 + 0.12 * _smooth_noise(rng, shape, 4)
    saturation_field = 0.03 * _smooth_noise(rng, shape, 6)
    for code in np.unique(truth):
        name = tree.leaves[int(code)]
        mask = truth == code
        if name in TISSUES:
            cube[mask] = tissue_reflectance(
                name,
                blood_scale=blood_field[mask] * patient_offset[0],
                saturation_shift=saturation_field[mask] + patient_offset[1],
            )
        else:
            texture = 1 + 0.03 * _smooth_noise(rng, shape, 2)[mask, None]
            spectrum = material_reflectance(name)
            if name == "cotton patty":  # partly soaked with blood
                soaked = np.clip(_smooth_noise(rng, shape, 3)[mask], 0, None)[:, None]
                spectrum = spectrum * (1 - 0.6 * soaked) + tissue_reflectance("pooled blood") * 0.6 * soaked
            cube[mask] = spectrum * texture
    wet = np.isin(
        truth, [tree.leaf_index(n) for n in ("pooled blood", "metal instrument", "suction tube", "artery", "vein")]
    )
    return light_and_noise(cube, wet, rng, noise)


def light_and_noise(cube: np.ndarray, wet: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Camera effects on (H, W, B) float64 reflectance: illumination fall-off towards the corners, specular
    glare (stronger on the (H, W) ``wet`` surfaces) and signal-dependent sensor noise; float32 out."""
    shape = wet.shape
    height, width = shape
    rows, columns = np.mgrid[:height, :width]
    radius2 = ((rows - height / 2) / height) ** 2 + ((columns - width / 2) / width) ** 2
    cube *= (1 - 0.6 * radius2)[..., None]  # illumination fall-off towards the corners
    glare = np.zeros(shape)
    for _ in range(rng.integers(2, 6)):
        row, column = rng.integers(height), rng.integers(width)
        glare += np.exp(-(((rows - row) ** 2 + (columns - column) ** 2) / (2 * rng.uniform(1, 3) ** 2)))
    cube += (0.35 * glare * (0.3 + 0.7 * wet))[..., None]
    cube += rng.normal(0, noise, cube.shape) * np.sqrt(np.clip(cube, 0.01, None) / 0.5)
    return cube.astype(np.float32)


def scribble(
    truth: np.ndarray,
    tree: LabelTree,
    rng: np.random.Generator,
    class_fraction: float = 0.6,
    strokes_per_class: int = 2,
    stroke_length: int = 14,
    stroke_width: int = 3,
    partial_fraction: float = 0.0,
) -> np.ndarray:
    """Sparse scribbles (H, W) int32 inside a random ``class_fraction`` of the classes present.

    A stroke is a short random walk kept inside the class region eroded by the stroke width; with
    probability ``partial_fraction`` a stroke is labelled with the leaf's parent (a partial label).
    """
    scribbles = np.full(truth.shape, -100, dtype=np.int32)
    present = [int(c) for c in np.unique(truth)]
    chosen = [c for c in present if rng.random() < class_fraction] or [int(rng.choice(present))]
    brush = ndimage.generate_binary_structure(2, 1)
    for code in chosen:
        interior = ndimage.binary_erosion(truth == code, brush, iterations=stroke_width)
        if not interior.any():
            continue
        candidates = np.argwhere(interior)
        node = tree.node(code)
        for _ in range(strokes_per_class):
            label = node.parent if node.parent is not None and rng.random() < partial_fraction else code
            start = candidates[rng.integers(len(candidates))]
            path = random_walk_stroke(interior, tuple(start), stroke_length, rng)
            stroke = np.zeros(truth.shape, dtype=bool)
            stroke[path[:, 0], path[:, 1]] = True
            stroke = ndimage.binary_dilation(stroke, brush, iterations=stroke_width // 2) & (truth == code)
            scribbles[stroke] = label
    return scribbles


def make_scene(
    tree: LabelTree,
    rng: np.random.Generator,
    shape: tuple[int, int] = (96, 128),
    patient_offset: np.ndarray | None = None,
    **scribble_options,
) -> Scene:
    """Layout, render and scribble one scene."""
    offset = np.array([1.0, 0.0]) if patient_offset is None else patient_offset
    truth = layout(tree, shape, rng)
    return Scene(render(truth, tree, rng, offset), truth, scribble(truth, tree, rng, **scribble_options))
