"""``hsiseg demo-data``: a folder of synthetic recorded surgeries in real file formats, with a data spec.

Layout of the output folder::

    demo.yaml                      data spec (hsiseg.dataset.spec) of everything below
    label_tree.yaml                the neurosurgery label tree
    cubes/surgery01/frame00_SpecCube.dat   Tivita layout (even surgeries) ...
    cubes/surgery02/frame00.hdr + .img     ... or ENVI (odd surgeries)
    scribbles/surgery01_frame00.png        sparse annotation: 0 = unlabelled, code + 1 otherwise
    truth/surgery01_frame00.png            dense ground truth, same encoding (for evaluation only)

Surgeries are subjects: the last one is the test split, the others are dealt into folds by surgery.
Each surgery has its own tissue offsets (blood volume, oxygenation), as patients differ.

Two scenes (:data:`SCENES`): ``neurosurgery`` (the demo: 14 leaves, :mod:`hsiseg.synthetic.scene`) and ``rich``
(100 leaves under the same four families, long-tailed, for the label-tree benchmark: :mod:`hsiseg.synthetic.rich`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.annotations.writers import code_annotation_spec, write_label_image
from hsiseg.dataset.spec import dump_spec
from hsiseg.errors import HsisegError
from hsiseg.io import Cube, atomic_path, write_cube
from hsiseg.io.atomic import check_output_folder
from hsiseg.synthetic.rich import TREE_RESOURCE as RICH_TREE_RESOURCE
from hsiseg.synthetic.rich import leaf_model, render_rich, rich_layout
from hsiseg.synthetic.scene import Scene, make_scene, scribble
from hsiseg.synthetic.tissues import wavelengths
from hsiseg.tree import LabelTree

SPEC_NAME = "demo.yaml"
TREE_RESOURCE = "neurosurgery_tree.yaml"


def demo_tree() -> LabelTree:
    """The packaged neurosurgery label tree of the demo scene."""
    return packaged_tree(TREE_RESOURCE)


def packaged_tree(resource: str) -> LabelTree:
    with resources.as_file(resources.files("hsiseg.resources") / resource) as path:
        return LabelTree.from_file(path)


# one scene: (rng, (H, W), patient offset (blood scale, saturation shift), partial fraction) -> Scene
SceneMaker = Callable[[np.random.Generator, tuple[int, int], np.ndarray, float], Scene]


@dataclass(frozen=True)
class SceneKind:
    """A synthetic scene ``demo-data`` can write: its packaged label tree, a description, and a scene maker
    for that tree (given the ``sibling_scale``, the rich scene's one knob)."""

    tree_resource: str
    description: str
    maker: Callable[[LabelTree, float], SceneMaker]
    has_sibling_scale: bool = False


def _neurosurgery(tree: LabelTree, sibling_scale: float) -> SceneMaker:
    def make(rng, shape, offset, partial_fraction):
        return make_scene(tree, rng, shape, offset, partial_fraction=partial_fraction)

    return make


def _rich(tree: LabelTree, sibling_scale: float) -> SceneMaker:
    model = leaf_model(tree, sibling_scale)

    def make(rng, shape, offset, partial_fraction):
        truth = rich_layout(model, shape, rng)
        cube = render_rich(truth, model, rng, offset)
        return Scene(cube, truth, scribble(truth, tree, rng, partial_fraction=partial_fraction))

    return make


SCENES: dict[str, SceneKind] = {
    "neurosurgery": SceneKind(TREE_RESOURCE, "synthetic neurosurgical scenes (hsiseg demo-data)", _neurosurgery),
    "rich": SceneKind(
        RICH_TREE_RESOURCE,
        "rich synthetic surgical scenes, 100 leaves (hsiseg demo-data --scene rich)",
        _rich,
        has_sibling_scale=True,
    ),
}


def sample_ids(surgeries: int, frames: int) -> list[tuple[str, str, int]]:
    """(sample id, subject, frame) for every scene."""
    return [
        (f"surgery{s + 1:02d}_frame{f:02d}", f"surgery{s + 1:02d}", f) for s in range(surgeries) for f in range(frames)
    ]


def cube_path(subject: str, frame: int, surgery_index: int) -> str:
    if surgery_index % 2 == 0:
        return f"cubes/{subject}/frame{frame:02d}_SpecCube.dat"
    return f"cubes/{subject}/frame{frame:02d}.hdr"


def spec_dict(
    tree: LabelTree,
    surgeries: int,
    frames: int,
    folds: int,
    label_tree: str,
    root: str | None,
    description: str = SCENES["neurosurgery"].description,
) -> dict:
    """The data spec describing a generated folder."""
    samples = []
    ids = sample_ids(surgeries, frames)
    for sample_id, subject, frame in ids:
        index = int(subject[-2:]) - 1
        samples.append(
            {
                "id": sample_id,
                "subject": subject,
                "cube": cube_path(subject, frame, index),
                "annotations": [f"scribbles/{sample_id}.png"],
                "truth": f"truth/{sample_id}.png",
            }
        )
    spec: dict[str, Any] = {"name": "demo", "description": description}
    if root is not None:
        spec["root"] = root
    spec.update(
        {
            "label_tree": label_tree,
            "preprocessing": {"normalization": "l1"},
            "annotations": code_annotation_spec(tree),
            "samples": samples,
            "splits": splits(ids, surgeries, folds),
        }
    )
    return spec


def splits(ids: list[tuple[str, str, int]], surgeries: int, folds: int) -> dict[str, Any]:
    """The last surgery is the test split; the others are dealt into folds by surgery, or (one surgery left:
    folds need two) all train."""
    test = [i for i, subject, _ in ids if subject == f"surgery{surgeries:02d}"]
    if surgeries - 1 >= 2:
        return {"folds": min(folds, surgeries - 1), "seed": 0, "test": test}
    return {"train": [i for i, _, _ in ids if i not in test], "test": test}


def spec_text(spec: dict) -> str:
    return dump_spec(
        spec,
        """Data spec of the synthetic neurosurgical demo (written by `hsiseg demo-data`).
Paths are relative to `root` (or to this file). Label files: 0 = unlabelled, value = tree code + 1;
internal nodes (e.g. 'vessel') are partial labels.""",
    )


def generate_demo_data(
    output: str | Path,
    surgeries: int = 4,
    frames: int = 3,
    shape: tuple[int, int] = (96, 128),
    seed: int = 0,
    folds: int = 3,
    partial_fraction: float = 0.0,
    overwrite: bool = False,
    on_scene: Callable[[str], None] | None = None,
    scene: str = "neurosurgery",
    sibling_scale: float = 1.0,
) -> Path:
    """Write ``surgeries x frames`` scenes of the kind ``scene`` (:data:`SCENES`) and their spec into
    ``output``; returns the spec path. ``sibling_scale`` (> 0) moves the rich scene's sibling leaves closer
    (< 1) or farther apart (> 1).

    Seeded: the same arguments give the same files, byte for byte.
    """
    if scene not in SCENES:
        raise HsisegError(f"demo-data: scene {scene!r} is unknown; choose one of {list(SCENES)}")
    if not sibling_scale > 0:
        raise HsisegError(f"demo-data: sibling_scale must be > 0, got {sibling_scale}")
    if sibling_scale != 1.0 and not SCENES[scene].has_sibling_scale:
        raise HsisegError(f"demo-data: sibling_scale applies to the rich scene only, not to {scene!r}")
    output = check_output_folder(output)
    if surgeries < 2:
        raise HsisegError("demo-data: at least 2 surgeries are needed (one is held out for testing)")
    if (output / SPEC_NAME).exists() and not overwrite:
        raise HsisegError(f"{output / SPEC_NAME} exists; choose another folder or pass --overwrite")
    kind = SCENES[scene]
    tree = packaged_tree(kind.tree_resource)
    make = kind.maker(tree, sibling_scale)
    rng = np.random.default_rng(seed)
    offsets = {
        f"surgery{s + 1:02d}": np.array([rng.uniform(0.8, 1.25), rng.uniform(-0.05, 0.05)]) for s in range(surgeries)
    }
    output.mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files("hsiseg.resources") / kind.tree_resource) as tree_file:
        shutil.copyfile(tree_file, output / "label_tree.yaml")
    for sample_id, subject, frame in sample_ids(surgeries, frames):
        scene_rng = np.random.default_rng([seed, int(subject[-2:]), frame])
        drawn = make(scene_rng, shape, offsets[subject], partial_fraction)
        cube = Cube(drawn.cube, wavelengths(), {"source": sample_id, "synthetic": True})
        write_cube(output / cube_path(subject, frame, int(subject[-2:]) - 1), cube)
        for folder, label_map in (("scribbles", drawn.scribbles), ("truth", drawn.truth)):
            write_label_image(output / folder / f"{sample_id}.png", label_map)
        if on_scene is not None:
            on_scene(sample_id)
    spec_path = output / SPEC_NAME
    with atomic_path(spec_path) as temporary:
        spec = spec_dict(tree, surgeries, frames, folds, "label_tree.yaml", None, kind.description)
        temporary.write_text(spec_text(spec))
    return spec_path
