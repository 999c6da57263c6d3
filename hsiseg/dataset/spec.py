"""Data specs: one readable YAML (or JSON) file that describes a data set.

::

    name: demo
    root: ../demo-data                        # optional: the folder sample paths are relative to
    label_tree: trees/neurosurgery.yaml      # a path (relative to this file) or the tree inline
    reader: {wavelength_preset: tivita}       # read_cube options for every cube
    preprocessing: {normalization: l1}        # hsiseg.spectral.Preprocessing
    annotations:
      format: label-image                     # label-image | colour-image | strokes | heiporspectral
      ignore_value: 0
      labels: {1: artery, 2: vein, 3: vessel} # file value (or '#rrggbb' colour, or mask label) -> tree node
      annotators: union                       # union (conflicts become unlabelled) or one annotator's name
    samples:
      - {id: s01_f0, subject: s01, cube: cubes/s01_f0_SpecCube.dat, annotations: [scribbles/s01_f0.png],
         truth: truth/s01_f0.png}
    splits: {folds: 3, seed: 0, test: [s04_f0, s04_f1]}   # or train/val/test lists, or fold_file: folds.json

Validation uses a pydantic schema; errors name the file, the line and the field
(``demo.yaml: line 12 (samples.3.cube): Field required``). The file must be UTF-8 text.

Paths. ``root`` is relative to the spec file (or absolute); it defaults to the spec file's folder.
``label_tree`` is relative to the spec file. Sample paths (``cube``, ``annotations``, ``truth``) and
``splits.fold_file`` are relative to ``root`` and must stay inside it: a relative path that climbs out of
``root`` (``../../other/cube.dat``) is refused, naming the spec, the sample and the field, so a spec received
from someone else reads only files below the folder it describes. A file elsewhere is allowed when written as
an absolute path (``/data/hospital/cube.dat``), where a reader sees at a glance where it points. The check is
on the written path, not on symbolic links inside ``root``, which stay the user's choice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hsiseg.annotations import (
    UNLABELLED,
    merge_label_maps,
    read_colour_image,
    read_heiporspectral,
    read_label_image,
    read_strokes,
)
from hsiseg.dataset.splits import SPLIT_NAMES, check_no_leakage, group_folds, read_htc_folds
from hsiseg.errors import HsisegError
from hsiseg.io import Cube, read_cube
from hsiseg.spectral import Preprocessing
from hsiseg.structured_files import load_structured
from hsiseg.tree import LabelTree


class AnnotationSpec(BaseModel):
    """How annotation files are read and turned into tree nodes."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["label-image", "colour-image", "strokes", "heiporspectral"] = "label-image"
    ignore_value: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    annotators: str = "union"

    @field_validator("labels", mode="before")
    @classmethod
    def _string_keys(cls, value: Any) -> Any:
        return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else value


class SampleSpec(BaseModel):
    """One cube with its annotation file(s), optional dense truth, and its subject (patient / surgery)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    cube: str
    annotations: list[str] = Field(default_factory=list)
    truth: str | None = None


class SplitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    train: list[str] | None = None
    val: list[str] | None = None
    test: list[str] = Field(default_factory=list)
    folds: int | None = None
    seed: int = 0
    fold_file: str | None = None
    same_scene_evaluation: bool = False  # train on annotations, evaluate on the disjoint truth of the same images

    @model_validator(mode="after")
    def _one_way(self) -> SplitSpec:
        ways = [self.train is not None or self.val is not None, self.folds is not None, self.fold_file is not None]
        if sum(ways) != 1:
            raise ValueError("give exactly one of: train/val lists, folds (k), fold_file")
        return self


class DataSpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str | None = None
    root: str | None = None
    label_tree: str | dict[str, Any]
    reader: dict[str, Any] = Field(default_factory=dict)
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    annotations: AnnotationSpec = Field(default_factory=AnnotationSpec)
    samples: list[SampleSpec] = Field(min_length=1)
    splits: SplitSpec


class DataSpec:
    """A validated data spec with resolved paths; reads cubes and label maps of its samples. ``document`` is the
    validated file as written (:class:`DataSpecModel`)."""

    def __init__(self, model: DataSpecModel, path: Path) -> None:
        self.document = model
        self.path = path
        self.root = (path.parent / model.root).resolve() if model.root else path.parent
        self.name = model.name
        ids = [sample.id for sample in model.samples]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise HsisegError(f"{path}: duplicate sample ids {duplicates}")
        self.samples: dict[str, SampleSpec] = {sample.id: sample for sample in model.samples}
        self.preprocessing = Preprocessing.from_dict(model.preprocessing, source=f"{path} (preprocessing)")
        self._check_paths()
        self._check_split_ids()

    @classmethod
    def from_file(cls, path: str | Path) -> DataSpec:
        """Load and validate a spec file; errors name the line and field."""
        path = Path(path)
        data, locate = load_with_lines(path)
        if not isinstance(data, Mapping):
            raise HsisegError(f"{path}: a data spec must be a mapping")
        try:
            model = DataSpecModel.model_validate(data)
        except ValidationError as error:
            problems = [f"{locate(e['loc'])}: {e['msg']}" for e in error.errors()]
            raise HsisegError(f"{path}: " + "; ".join(problems)) from None
        return cls(model, path)

    # --- the pieces ------------------------------------------------------------------------------------

    @cached_property
    def tree(self) -> LabelTree:
        tree = self.document.label_tree
        if isinstance(tree, str):
            return LabelTree.from_file(self.path.parent / tree)  # relative to the spec file, not to root
        return LabelTree.from_dict(tree, source=f"{self.path} (label_tree)")

    def resolve(self, relative: str) -> Path:
        """A sample or fold-file path from the spec: relative to ``root`` (itself relative to the spec file),
        or to the spec file's folder when the spec gives no root."""
        return (self.root / relative).resolve() if not Path(relative).is_absolute() else Path(relative)

    def splits(self, fold: int = 0) -> dict[str, list[str]]:
        """Sample ids of ``train``, ``val`` and ``test`` (for fold ``fold`` when the spec has folds)."""
        all_folds = self._folds()
        if not 0 <= fold < len(all_folds):
            raise HsisegError(f"{self.path}: fold {fold} does not exist (the spec has {len(all_folds)})")
        return all_folds[fold]

    def split(self, name: str, fold: int = 0) -> list[str]:
        """Sample ids of one split."""
        if name not in SPLIT_NAMES:
            raise HsisegError(f"{self.path}: unknown split {name!r}; choose one of {SPLIT_NAMES}")
        return self.splits(fold)[name]

    @property
    def num_folds(self) -> int:
        return len(self._folds())

    def read_cube(self, sample_id: str) -> Cube:
        """The sample's cube, read with the spec's reader options."""
        return read_cube(self.resolve(self.samples[sample_id].cube), **self.reader_options)

    @cached_property
    def reader_options(self) -> dict[str, Any]:
        """The spec's ``read_cube`` options, a wavelengths file (``wavelengths: "@bands.txt"``) resolved against
        ``root`` under the same paths rule as the samples'."""
        options = dict(self.document.reader)
        wavelengths = options.get("wavelengths")
        if isinstance(wavelengths, str) and wavelengths.startswith("@"):
            written = wavelengths[1:]
            if leaves_folder(self.root, written):
                raise HsisegError(f"{self.path}: reader.wavelengths {written!r} leads outside the spec's root folder "
                                  f"{self.root}; move the file below it, or write its absolute path")  # fmt: skip
            options["wavelengths"] = f"@{self.resolve(written)}"
        return options

    def read_annotation(self, sample_id: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The sample's sparse annotation as a label map (H, W) int32 (:data:`UNLABELLED` = -100).

        ``shape`` (H, W) is needed for stroke files; by default it is read from the cube.
        """
        sample = self.samples[sample_id]
        if not sample.annotations:
            raise HsisegError(f"{self.path}: sample {sample_id!r} has no annotations")
        maps = {path: self._read_label_file(self.resolve(path), shape, sample_id) for path in sample.annotations}
        per_annotator: dict[str, np.ndarray] = {}
        for path, result in maps.items():
            if isinstance(result, dict):
                per_annotator.update(result)
            else:
                per_annotator[Path(path).stem] = result
        choice = self.document.annotations.annotators
        if choice != "union":
            if choice not in per_annotator:
                raise HsisegError(
                    f"{self.path}: sample {sample_id!r} has no annotator {choice!r} ({sorted(per_annotator)})"
                )
            return per_annotator[choice]
        return merge_label_maps(list(per_annotator.values()), source=f"sample {sample_id}").label_map

    def read_truth(self, sample_id: str, shape: tuple[int, int] | None = None) -> np.ndarray | None:
        """The sample's dense ground truth as a label map, or None when the spec gives none."""
        truth = self.samples[sample_id].truth
        if truth is None:
            return None
        result = self._read_label_file(self.resolve(truth), shape, sample_id)
        if isinstance(result, dict):
            return merge_label_maps(list(result.values()), source=f"truth of {sample_id}").label_map
        return result

    def label_values(self) -> dict[int, str]:
        """``annotations.labels`` of a label-image spec: file value -> node name (keys checked as integers)."""
        labels = {}
        for key, name in self.document.annotations.labels.items():
            try:
                labels[int(key)] = name
            except ValueError:
                raise HsisegError(f"{self.path}: annotations.labels key {key!r} is not an integer value") from None
        return labels

    # --- internals ---------------------------------------------------------------------------------------

    def _read_label_file(
        self, path: Path, shape: tuple[int, int] | None, sample_id: str
    ) -> np.ndarray | dict[str, np.ndarray]:
        spec = self.document.annotations
        if spec.format == "label-image":
            return read_label_image(path, self.tree, self.label_values(), spec.ignore_value)
        if spec.format == "colour-image":
            return read_colour_image(path, self.tree, spec.labels)
        if spec.format == "strokes":
            if shape is None:
                shape = self.read_cube(sample_id).shape[:2]
            return read_strokes(path, self.tree, shape)
        return read_heiporspectral(path, self.tree, spec.labels)

    def _folds(self) -> list[dict[str, list[str]]]:
        splits = self.document.splits
        subjects = {sample_id: sample.subject for sample_id, sample in self.samples.items()}
        if splits.folds is not None:
            try:
                return group_folds(subjects, splits.folds, splits.seed, splits.test)
            except HsisegError as error:
                raise HsisegError(f"{self.path}: {error}") from None
        if splits.fold_file is not None:
            return read_htc_folds(self.resolve(splits.fold_file))
        return [{"train": list(splits.train or []), "val": list(splits.val or []), "test": list(splits.test)}]

    def _check_paths(self) -> None:
        """Relative sample paths and the fold file must stay inside ``root`` (see the module docstring)."""
        for sample in self.document.samples:
            fields = [("cube", sample.cube)] + [(f"annotations.{i}", p) for i, p in enumerate(sample.annotations)]
            fields += [("truth", sample.truth)] if sample.truth is not None else []
            for field, written in fields:
                if leaves_folder(self.root, written):
                    raise HsisegError(
                        f"{self.path}: sample {sample.id!r} ({field}): {written!r} leads outside the spec's root "
                        f"folder {self.root}; move the file below it, or write its absolute path if it must live there"
                    )
        fold_file = self.document.splits.fold_file
        if fold_file is not None and leaves_folder(self.root, fold_file):
            raise HsisegError(
                f"{self.path}: splits.fold_file {fold_file!r} leads outside the spec's root folder {self.root}; "
                "move the file below it, or write its absolute path"
            )

    def _check_split_ids(self) -> None:
        subjects = {sample_id: sample.subject for sample_id, sample in self.samples.items()}
        for name in SPLIT_NAMES:  # before folds are dealt, which look the ids up
            unknown = sorted(set(getattr(self.document.splits, name) or []) - set(self.samples))
            if unknown:
                raise HsisegError(
                    f"{self.path}: splits ({name}) name unknown samples {unknown[:5]}; use ids listed under samples"
                )
        for number, fold in enumerate(self._folds()):
            for name, ids in fold.items():
                unknown = sorted(set(ids) - set(self.samples))
                if unknown:
                    raise HsisegError(f"{self.path}: splits (fold {number}, {name}) name unknown samples {unknown[:5]}")
            if not self.document.splits.same_scene_evaluation:
                check_no_leakage(fold, subjects, f"{self.path}: splits (fold {number})")

    def fitted_preprocessing(self, fold: int = 0) -> Preprocessing:
        """The spec's preprocessing, with z-score statistics fitted on the training split when it needs them."""
        preprocessing = self.preprocessing
        if preprocessing.normalization != "zscore" or preprocessing.mean is not None:
            return preprocessing

        def training_cubes():
            for sample_id in self.split("train", fold):
                cube = self.read_cube(sample_id)
                yield cube.data, cube.wavelengths

        return preprocessing.fit_statistics(training_cubes())


def leaves_folder(folder: Path, written: str) -> bool:
    """Whether a relative path climbs out of ``folder`` (``..`` components, judged on the text: symbolic links
    are not followed). Absolute paths never do: they say openly where they point."""
    if Path(written).is_absolute():
        return False
    return not Path(os.path.abspath(folder / written)).is_relative_to(os.path.abspath(folder))


def dump_spec(spec: Mapping[str, Any], comment: str) -> str:
    """A data spec as readable YAML (keys in the given order) under a ``#`` comment block."""
    header = "".join(f"# {line}\n" for line in comment.strip().splitlines())
    return header + yaml.safe_dump(dict(spec), sort_keys=False, width=120, allow_unicode=True)


def load_with_lines(path: Path) -> tuple[Any, Any]:
    """Parse a data spec (YAML/JSON); also return ``locate(loc)`` giving 'line N (a.b.0)' for a pydantic error
    location."""
    return load_structured(path, "data spec", "the spec")


__all__ = ["UNLABELLED", "AnnotationSpec", "DataSpec", "SampleSpec", "dump_spec", "leaves_folder", "load_with_lines"]
