"""``hsiseg demo-data``: a folder of synthetic recorded surgeries in real file formats, with a data spec.

Layout of the output folder::

    demo.yaml                      data spec (hsiseg.spec) of everything below
    label_tree.yaml                the neurosurgery label tree
    cubes/surgery01/frame00_SpecCube.dat   Tivita layout (even surgeries) ...
    cubes/surgery02/frame00.hdr + .img     ... or ENVI (odd surgeries)
    scribbles/surgery01_frame00.png        sparse annotation: 0 = unlabelled, code + 1 otherwise
    truth/surgery01_frame00.png            dense ground truth, same encoding (for evaluation only)

Surgeries are subjects: the last one is the test split, the others are dealt into folds by surgery.
Each surgery has its own tissue offsets (blood volume, oxygenation), as patients differ.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.annotations.writers import code_annotation_spec, write_label_image
from hsiseg.errors import HsisegError
from hsiseg.io import Cube, atomic_path, write_cube
from hsiseg.io.atomic import check_output_folder
from hsiseg.spec import dump_spec
from hsiseg.synthetic.scene import make_scene
from hsiseg.synthetic.tissues import wavelengths
from hsiseg.tree import LabelTree

SPEC_NAME = "demo.yaml"
TREE_RESOURCE = "neurosurgery_tree.yaml"


def demo_tree() -> LabelTree:
    """The packaged neurosurgery label tree of the demo scene."""
    with resources.as_file(resources.files("hsiseg.resources") / TREE_RESOURCE) as path:
        return LabelTree.from_file(path)


def sample_ids(surgeries: int, frames: int) -> list[tuple[str, str, int]]:
    """(sample id, subject, frame) for every scene."""
    return [
        (f"surgery{s + 1:02d}_frame{f:02d}", f"surgery{s + 1:02d}", f) for s in range(surgeries) for f in range(frames)
    ]


def cube_path(subject: str, frame: int, surgery_index: int) -> str:
    if surgery_index % 2 == 0:
        return f"cubes/{subject}/frame{frame:02d}_SpecCube.dat"
    return f"cubes/{subject}/frame{frame:02d}.hdr"


def spec_dict(tree: LabelTree, surgeries: int, frames: int, folds: int, label_tree: str, root: str | None) -> dict:
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
    spec: dict[str, Any] = {"name": "demo", "description": "synthetic neurosurgical scenes (hsiseg demo-data)"}
    if root is not None:
        spec["root"] = root
    spec.update(
        {
            "label_tree": label_tree,
            "preprocessing": {"normalization": "l1"},
            "annotations": code_annotation_spec(tree),
            "samples": samples,
            "splits": {
                "folds": min(folds, surgeries - 1),
                "seed": 0,
                "test": [i for i, subject, _ in ids if subject == f"surgery{surgeries:02d}"],
            },
        }
    )
    return spec


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
) -> Path:
    """Write ``surgeries x frames`` scenes and their spec into ``output``; returns the spec path.

    Seeded: the same arguments give the same files, byte for byte.
    """
    output = check_output_folder(output)
    if surgeries < 2:
        raise HsisegError("demo-data: at least 2 surgeries are needed (one is held out for testing)")
    if (output / SPEC_NAME).exists() and not overwrite:
        raise HsisegError(f"{output / SPEC_NAME} exists; choose another folder or pass --overwrite")
    tree = demo_tree()
    rng = np.random.default_rng(seed)
    offsets = {
        f"surgery{s + 1:02d}": np.array([rng.uniform(0.8, 1.25), rng.uniform(-0.05, 0.05)]) for s in range(surgeries)
    }
    output.mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files("hsiseg.resources") / TREE_RESOURCE) as tree_file:
        shutil.copyfile(tree_file, output / "label_tree.yaml")
    for sample_id, subject, frame in sample_ids(surgeries, frames):
        scene_rng = np.random.default_rng([seed, int(subject[-2:]), frame])
        scene = make_scene(tree, scene_rng, shape, offsets[subject], partial_fraction=partial_fraction)
        cube = Cube(scene.cube, wavelengths(), {"source": sample_id, "synthetic": True})
        write_cube(output / cube_path(subject, frame, int(subject[-2:]) - 1), cube)
        for folder, label_map in (("scribbles", scene.scribbles), ("truth", scene.truth)):
            write_label_image(output / folder / f"{sample_id}.png", label_map)
        if on_scene is not None:
            on_scene(sample_id)
    spec_path = output / SPEC_NAME
    with atomic_path(spec_path) as temporary:
        temporary.write_text(spec_text(spec_dict(tree, surgeries, frames, folds, "label_tree.yaml", None)))
    return spec_path
