"""Annotation scenes written for the user: the synthetic demo without its strokes, and a folder of cubes with a
label tree."""

from __future__ import annotations

from pathlib import Path

from hsiseg.annotations.writers import code_annotation_spec
from hsiseg.dataset.spec import dump_spec, load_with_lines
from hsiseg.errors import HsisegError
from hsiseg.io.atomic import atomic_path
from hsiseg.io.formats import find_cubes
from hsiseg.synthetic.dataset import generate_demo_data
from hsiseg.tree import LabelTree

DEMO_SPEC = "annotate.yaml"


def demo_scene(folder: str | Path) -> Path:
    """``folder/annotate.yaml``: the synthetic demo (written into ``folder`` unless it is there already) with
    every sample's annotation list empty, so the session starts from a blank scene; strokes drawn earlier in
    this folder are kept."""
    folder = Path(folder)
    spec_path = folder / DEMO_SPEC
    if spec_path.is_file():
        return spec_path
    demo = folder / "demo.yaml" if (folder / "demo.yaml").is_file() else generate_demo_data(folder)
    document, _ = load_with_lines(demo)
    for sample in document["samples"]:
        sample["annotations"] = []
    comment = "The synthetic demo for hsiseg annotate: its cubes and dense truth, strokes drawn in the browser."
    with atomic_path(spec_path) as temporary:
        temporary.write_text(dump_spec(document, comment), encoding="utf-8")
    return spec_path


def folder_scene(folder: str | Path, tree_path: str | Path) -> Path:
    """``folder/annotate.yaml`` for the cubes under ``folder`` (recursive) and the label tree ``tree_path``:
    label-image annotations in the code + 1 encoding, each cube a sample (its subject: its folder's name), every
    sample in training and validation (strokes held out per image). An existing ``annotate.yaml`` is reused."""
    folder, tree_path = Path(folder), Path(tree_path)
    spec_path = folder / DEMO_SPEC
    if spec_path.is_file():
        return spec_path
    if not folder.is_dir():
        raise HsisegError(f"{folder}: not a folder; give a data spec, or a folder of cubes with --tree")
    tree = LabelTree.from_file(tree_path)
    cubes = find_cubes(folder)
    if not cubes:
        raise HsisegError(f"{folder}: no cube files found (Tivita _SpecCube.dat, ENVI .hdr, .h5, .npy, .mat)")
    samples: list[dict[str, object]] = []
    seen: set[str] = set()
    for cube in cubes:
        relative = cube.relative_to(folder)
        sample_id = _unique(relative.with_suffix("").as_posix().replace("/", "_"), seen)
        subject = relative.parent.as_posix().replace("/", "_") or sample_id
        samples.append({"id": sample_id, "subject": subject, "cube": relative.as_posix(), "annotations": []})
    ids = [s["id"] for s in samples]
    document = {"name": folder.resolve().name, "label_tree": str(tree_path.resolve()),
                "annotations": code_annotation_spec(tree), "samples": samples,
                "splits": {"train": ids, "val": ids, "test": [], "same_scene_evaluation": True}}  # fmt: skip
    with atomic_path(spec_path) as temporary:
        temporary.write_text(dump_spec(document, f"Written by hsiseg annotate for the cubes under {folder}."),
                             encoding="utf-8")  # fmt: skip
    return spec_path


def _unique(name: str, seen: set[str]) -> str:
    candidate, number = name, 2
    while candidate in seen:
        candidate, number = f"{name}_{number}", number + 1
    seen.add(candidate)
    return candidate


MAX_RECORDING_FRAMES = 500  # frames a recording scene holds (choose a larger --every beyond)


def recording_scene(recording: str | Path, camera: str | Path, tree_path: str | Path, every: int = 25,
                    folder: str | Path | None = None) -> Path:  # fmt: skip
    """An annotation scene of a snapshot-mosaic recording: every ``every``-th frame, calibrated and demosaicked
    with the camera file, written as an HDF5 cube into ``folder`` (default ``<recording>-annotate/``, reused when
    it is there), then :func:`folder_scene` with the label tree."""
    from hsiseg.io import write_cube
    from hsiseg.io.camera import CameraDescription
    from hsiseg.io.recording import MosaicVideo, open_recording

    recording = Path(recording)
    folder = Path(folder) if folder else recording.with_name(recording.name.split(".")[0] + "-annotate")
    if (folder / DEMO_SPEC).is_file():
        return folder / DEMO_SPEC
    if every < 1:
        raise HsisegError(f"every: must be >= 1, got {every}")
    video = MosaicVideo(open_recording(recording), CameraDescription.from_file(camera))
    indices = range(0, len(video), every)
    if len(indices) > MAX_RECORDING_FRAMES:
        raise HsisegError(f"{recording}: {len(indices)} frames at every {every}; choose every >= "
                          f"{-(-len(video) // MAX_RECORDING_FRAMES)}")  # fmt: skip
    for index in indices:
        write_cube(folder / f"frame{index:06d}.h5", video.cube(index))
    return folder_scene(folder, tree_path)
