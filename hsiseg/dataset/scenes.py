"""Real hyperspectral scenes with simulated scribbles: data sets that played no part in choosing the defaults.

``hsiseg real-scene NAME OUT`` writes one scene as a scribble-annotated data set, the way ``hsiseg
indian-pines`` does for Indian Pines: the cube (``<name>.h5``), ``scribbles.png`` (simulated strokes covering
``fraction`` of the labelled pixels), ``truth.png`` (every other labelled pixel: the evaluation truth, disjoint
from the scribbles), ``label_tree.yaml`` and the data spec ``<name>.yaml``. Label files store tree code + 1
(0 = unlabelled).

=======================  =======================================================================================
name                     scene
=======================  =======================================================================================
``jasper-ridge``         AVIRIS, 100 x 100 x 198 (380-2500 nm): tree, water, soil, road; shipped in the package
``samson``               SAMSON VNIR, 95 x 95 x 156 (401-889 nm, close to surgical cameras): soil, tree, water;
                         shipped in the package
``indian-pines``         AVIRIS, 145 x 145 x 200, 16 crop and land-cover classes (needs ``tensorly==0.10.0``)
``indian-pines-crops``   its 6 corn and soybean tillage variants only (spectrally close siblings); the other
                         classes' pixels are unlabelled
=======================  =======================================================================================

Sources and licences: ``hsiseg/resources/scenes/SOURCE.md``. Jasper Ridge's and Samson's labels are the argmax
of published unmixing abundances (mixed pixels at borders), their band centres nominal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hsiseg.annotations import UNLABELLED
from hsiseg.annotations.simulate import PLACEMENTS, simulate_scribbles
from hsiseg.annotations.writers import code_annotation_spec, write_label_image
from hsiseg.dataset.spec import dump_spec
from hsiseg.errors import HsisegError
from hsiseg.io import Cube, atomic_path, write_cube
from hsiseg.tree import LabelTree

ZHU = (
    "Zhu, F. (2017). Hyperspectral unmixing: ground truth labeling, datasets, benchmark performances and survey. "
    "arXiv:1708.05125"
)


@dataclass(frozen=True)
class RealScene:
    """A real labelled scene: its label tree (nested dict, :meth:`LabelTree.from_dict`), citation and loader."""

    name: str
    title: str
    citation: str
    tree: dict[str, Any]
    load: Callable[[LabelTree], tuple[Cube, np.ndarray]]  # tree -> cube, truth codes (H, W) int32, -100 unlabelled


def _shipped(resource: str, citation: str) -> Callable[[LabelTree], tuple[Cube, np.ndarray]]:
    """Loader of a scene shipped as ``hsiseg/resources/scenes/<resource>.npz`` (counts, scale, labels 1..K)."""

    def load(tree: LabelTree) -> tuple[Cube, np.ndarray]:
        file = resources.files("hsiseg.resources") / "scenes" / f"{resource}.npz"
        with resources.as_file(file) as path, np.load(path, allow_pickle=False) as arrays:
            data = arrays["cube"].astype(np.float32) * np.float32(arrays["scale"])
            wavelengths, labels = arrays["wavelengths"], arrays["labels"]
            names = [str(name) for name in arrays["class_names"]]
        lookup = np.array([UNLABELLED] + [tree.index(name) for name in names], dtype=np.int32)
        meta = {"source": f"hsiseg/resources/scenes/{resource}.npz", "citation": citation,
                "wavelengths_are_approximate": True}  # fmt: skip
        return Cube(data, wavelengths, meta), lookup[labels]

    return load


def _indian_pines(keep: tuple[str, ...] | None) -> Callable[[LabelTree], tuple[Cube, np.ndarray]]:
    """Indian Pines from tensorly, optionally with only the classes ``keep`` labelled (codes of ``tree``)."""

    def load(tree: LabelTree) -> tuple[Cube, np.ndarray]:
        from hsiseg.dataset.indian_pines import load_indian_pines, pines_tree

        cube, truth = load_indian_pines()
        leaves = pines_tree().leaves
        wanted = keep if keep is not None else leaves
        lookup = np.array([tree.index(n) if n in wanted else UNLABELLED for n in leaves], dtype=np.int32)
        return cube, np.where(truth != UNLABELLED, lookup[np.maximum(truth, 0)], UNLABELLED).astype(np.int32)

    return load


def _pines_citation() -> str:
    from hsiseg.dataset.indian_pines import CITATION

    return CITATION


CROPS = ("Corn-notill", "Corn-mintill", "Corn", "Soybean-notill", "Soybean-mintill", "Soybean-clean")

SCENES: dict[str, RealScene] = {
    "jasper-ridge": RealScene(
        "jasper-ridge", "Jasper Ridge (AVIRIS)", f"{ZHU}; AVIRIS, NASA/JPL",
        {"name": "jasper ridge", "children": [
            {"name": "tree", "color": "#1e6b3a"}, {"name": "water", "color": "#2e6fb5"},
            {"name": "bare ground", "color": "#a0785a", "children": ["soil", "road"]}]},
        _shipped("jasper_ridge", f"{ZHU}; AVIRIS, NASA/JPL"),
    ),
    "samson": RealScene(
        "samson", "Samson (SAMSON VNIR)", ZHU,
        {"name": "samson", "children": [
            {"name": "soil", "color": "#a0785a"}, {"name": "tree", "color": "#1e6b3a"},
            {"name": "water", "color": "#2e6fb5"}]},
        _shipped("samson", ZHU),
    ),
    "indian-pines": RealScene("indian-pines", "Indian Pines (AVIRIS)", "", {}, _indian_pines(None)),
    "indian-pines-crops": RealScene(
        "indian-pines-crops", "Indian Pines, corn and soybean only (AVIRIS)", "",
        {"name": "indian pines crops", "children": [
            {"name": "corn", "color": "#e6b422", "children": list(CROPS[:3])},
            {"name": "soybean", "color": "#7dbb42", "children": list(CROPS[3:])}]},
        _indian_pines(CROPS),
    ),
}  # fmt: skip


def scene(name: str) -> RealScene:
    """The scene called ``name``; an unknown name raises :class:`HsisegError` listing the known ones."""
    if name not in SCENES:
        raise HsisegError(f"unknown scene {name!r}; choose one of {sorted(SCENES)}")
    return SCENES[name]


def scene_tree(name: str) -> LabelTree:
    """The label tree of scene ``name`` (Indian Pines: the shipped tree)."""
    if name == "indian-pines":
        from hsiseg.dataset.indian_pines import pines_tree

        return pines_tree()
    return LabelTree.from_dict(scene(name).tree)


def load_scene(name: str) -> tuple[Cube, np.ndarray]:
    """Cube (H, W, B) float32 and truth codes (H, W) int32 (-100 = unlabelled) of scene ``name``."""
    return scene(name).load(scene_tree(name))


def write_real_scene(
    name: str,
    output: str | Path,
    fraction: float = 0.03,
    stroke_length: int = 8,
    seed: int = 0,
    placement: str = "area",
    overwrite: bool = False,
) -> Path:
    """Write scene ``name`` with simulated scribbles into ``output`` (module docstring); returns the spec path.

    ``fraction``, ``stroke_length``, ``seed`` and ``placement`` are :func:`simulate_scribbles`'s.
    """
    found, output = scene(name), Path(output)
    sample = name.replace("-", "_")
    spec_path = output / f"{sample}.yaml"
    if spec_path.exists() and not overwrite:
        raise HsisegError(f"{spec_path} exists; choose another folder or pass --overwrite")
    if not 0 < fraction < 1:
        raise HsisegError(f"real-scene: fraction must be between 0 and 1, got {fraction}")
    if stroke_length < 1 or placement not in PLACEMENTS:
        raise HsisegError(f"real-scene: stroke_length must be >= 1 and placement one of {PLACEMENTS}")
    tree = scene_tree(name)
    cube, truth = found.load(tree)
    scribbles = simulate_scribbles(truth, fraction, stroke_length, seed, placement=placement)
    evaluation = np.where(scribbles == UNLABELLED, truth, UNLABELLED)
    output.mkdir(parents=True, exist_ok=True)
    write_cube(output / f"{sample}.h5", cube)
    for file_name, label_map in (("scribbles.png", scribbles), ("truth.png", evaluation)):
        write_label_image(output / file_name, label_map)
    with atomic_path(output / "label_tree.yaml") as temporary:
        temporary.write_text(yaml.safe_dump(tree.to_dict(), sort_keys=False))
    with atomic_path(spec_path) as temporary:
        temporary.write_text(_spec_text(found, tree, sample, fraction, stroke_length, placement, seed))
    return spec_path


def _spec_text(found: RealScene, tree: LabelTree, sample: str, fraction: float, length: int, placement: str,
               seed: int) -> str:  # fmt: skip
    citation = found.citation or _pines_citation()
    spec = {
        "name": found.name,
        "description": f"{found.title} with simulated scribbles. {citation}",
        "label_tree": "label_tree.yaml",
        "preprocessing": {"normalization": "zscore"},
        "annotations": code_annotation_spec(tree),
        "samples": [{"id": sample, "subject": sample, "cube": f"{sample}.h5", "annotations": ["scribbles.png"],
                     "truth": "truth.png"}],  # fmt: skip
        "splits": {"train": [sample], "val": [sample], "same_scene_evaluation": True},
    }
    how = f"{fraction:.1%} of the labelled pixels in strokes of {length} pixels placed by {placement}, seed {seed}"
    return dump_spec(spec, f"{found.title} (written by `hsiseg real-scene {found.name}`): {how}.\n"
                           "Train on scribbles.png, evaluate on truth.png (disjoint pixels of the same scene).")
