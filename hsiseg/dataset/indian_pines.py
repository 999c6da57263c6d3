"""Indian Pines (AVIRIS, 145 x 145 pixels, 200 bands) as a scribble-annotated hsiseg data set.

Source: the arrays shipped in the PyPI package ``tensorly`` 0.10.0 (``tensorly/datasets/data/
Indian_pines_corrected.npy``, ``Indian_pines_gt.npy``); the band centres are read from
``tensorly/datasets/data_imports.py`` as text, without importing tensorly. Licence CC BY 3.0; cite
Baumgardner, Biehl & Landgrebe (2015), doi:10.4231/R7RX991C.

``hsiseg indian-pines OUT`` writes:

- ``indian_pines.h5``: the cube (float32 reflectance counts as stored, (145, 145, 200)) with the band centres
  in nm. AVIRIS has overlapping spectrometers, so the listed centres are not increasing (three overlaps);
  the bands are sorted by wavelength (a documented repair; the order is recorded in ``meta``);
- ``scribbles.png``: simulated scribbles covering ``fraction`` of the labelled pixels (short strokes inside
  class regions, seeded), ``truth.png``: every other labelled pixel (evaluation truth, disjoint from the
  scribbles). Both store tree code + 1 (0 = unlabelled);
- ``label_tree.yaml`` and the data spec ``indian_pines.yaml`` (train on the scribbles, evaluate on the truth
  of the same scene: ``same_scene_evaluation``).
"""

from __future__ import annotations

import ast
import importlib.util
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.annotations import UNLABELLED
from hsiseg.annotations.simulate import simulate_scribbles
from hsiseg.annotations.writers import code_annotation_spec, write_label_image
from hsiseg.dataset.spec import dump_spec
from hsiseg.errors import HsisegError
from hsiseg.io import Cube, atomic_path, write_cube
from hsiseg.tree import LabelTree

# Ground-truth values 1..16 of Indian_pines_gt.npy (DATA.md).
CLASS_NAMES = (
    "Alfalfa",
    "Corn-notill",
    "Corn-mintill",
    "Corn",
    "Grass-pasture",
    "Grass-trees",
    "Grass-pasture-mowed",
    "Hay-windrowed",
    "Oats",
    "Soybean-notill",
    "Soybean-mintill",
    "Soybean-clean",
    "Wheat",
    "Woods",
    "Buildings-Grass-Trees-Drives",
    "Stone-Steel-Towers",
)
CITATION = (
    "Baumgardner, M. F., Biehl, L. L., Landgrebe, D. A. (2015). 220 Band AVIRIS Hyperspectral Image Data Set: "
    "June 12, 1992 Indian Pine Test Site 3. Purdue University Research Repository. doi:10.4231/R7RX991C (CC BY 3.0)"
)
TREE_RESOURCE = "indian_pines_tree.yaml"


def tensorly_folder() -> Path:
    """``tensorly/datasets`` of the installed package, located without importing it."""
    spec = importlib.util.find_spec("tensorly")
    if spec is None or spec.origin is None:
        raise HsisegError("Indian Pines ships inside the 'tensorly' package: pip install 'tensorly==0.10.0'")
    folder = Path(spec.origin).parent / "datasets"
    if not (folder / "data" / "Indian_pines_corrected.npy").is_file():
        raise HsisegError(f"{folder}: this tensorly has no Indian Pines arrays; install tensorly==0.10.0")
    return folder


def band_centres(folder: Path) -> np.ndarray:
    """The 200 band centres (nm) listed in tensorly's data_imports.py, in file order."""
    source = (folder / "data_imports.py").read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "wavelengths":
            return np.array(ast.literal_eval(node.value), dtype=np.float64)
    raise HsisegError(f"{folder / 'data_imports.py'}: no 'wavelengths' list found")


def pines_tree() -> LabelTree:
    with resources.as_file(resources.files("hsiseg.resources") / TREE_RESOURCE) as path:
        return LabelTree.from_file(path)


def load_indian_pines() -> tuple[Cube, np.ndarray]:
    """The cube with bands sorted by wavelength, and the truth as tree codes (H, W) int32 (-100 = unlabelled)."""
    folder = tensorly_folder()
    data = np.load(folder / "data" / "Indian_pines_corrected.npy").astype(np.float32)
    gt = np.load(folder / "data" / "Indian_pines_gt.npy")
    centres = band_centres(folder)
    if len(centres) != data.shape[-1]:
        raise HsisegError(f"{folder}: {len(centres)} band centres for {data.shape[-1]} bands")
    order = np.argsort(centres, kind="stable")
    meta = {"source": "tensorly Indian Pines", "citation": CITATION, "band_order": order.tolist()}
    cube = Cube(np.ascontiguousarray(data[..., order]), centres[order], meta)
    tree = pines_tree()
    lookup = np.array([UNLABELLED] + [tree.index(name) for name in CLASS_NAMES], dtype=np.int32)
    return cube, lookup[gt]


def spec_dict(tree: LabelTree, label_tree: str, root: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "indian-pines", "description": f"Indian Pines with simulated scribbles. {CITATION}"}
    if root is not None:
        spec["root"] = root
    spec.update(
        {
            "label_tree": label_tree,
            "preprocessing": {"normalization": "zscore"},
            "annotations": code_annotation_spec(tree),
            "samples": [
                {
                    "id": "indian_pines",
                    "subject": "indian_pines",
                    "cube": "indian_pines.h5",
                    "annotations": ["scribbles.png"],
                    "truth": "truth.png",
                }
            ],
            "splits": {"train": ["indian_pines"], "val": ["indian_pines"], "same_scene_evaluation": True},
        }
    )
    return spec


def spec_text(spec: dict[str, Any]) -> str:
    return dump_spec(
        spec,
        """Indian Pines as a scribble-annotated data set (written by `hsiseg indian-pines`).
Train on scribbles.png, evaluate on truth.png: disjoint pixels of the same scene (same_scene_evaluation).
Label files: 0 = unlabelled, value = tree code + 1. zscore statistics come from the training split.""",
    )


def write_indian_pines(
    output: str | Path, fraction: float = 0.03, stroke_length: int = 8, seed: int = 0, overwrite: bool = False
) -> Path:
    """Write the Indian Pines data set with simulated scribbles into ``output``; returns the spec path."""
    output = Path(output)
    spec_path = output / "indian_pines.yaml"
    if spec_path.exists() and not overwrite:
        raise HsisegError(f"{spec_path} exists; choose another folder or pass --overwrite")
    if not 0 < fraction < 1:
        raise HsisegError(f"indian-pines: fraction must be between 0 and 1, got {fraction}")
    cube, truth = load_indian_pines()
    scribbles = simulate_scribbles(truth, fraction, stroke_length, seed)
    evaluation = np.where(scribbles == UNLABELLED, truth, UNLABELLED)
    output.mkdir(parents=True, exist_ok=True)
    write_cube(output / "indian_pines.h5", cube)
    for name, label_map in (("scribbles.png", scribbles), ("truth.png", evaluation)):
        write_label_image(output / name, label_map)
    with resources.as_file(resources.files("hsiseg.resources") / TREE_RESOURCE) as tree_file:
        (output / "label_tree.yaml").write_bytes(tree_file.read_bytes())
    with atomic_path(spec_path) as temporary:
        temporary.write_text(spec_text(spec_dict(pines_tree(), "label_tree.yaml", None)))
    return spec_path
