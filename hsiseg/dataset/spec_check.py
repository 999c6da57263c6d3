"""``hsiseg check``: validate everything a data spec points at, collecting every problem instead of stopping."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from hsiseg.annotations import UNLABELLED
from hsiseg.dataset.spec import DataSpec, SampleSpec
from hsiseg.dataset.strokes import stroke_counts
from hsiseg.errors import HsisegError

T = TypeVar("T")


@dataclass
class SampleReport:
    sample_id: str
    subject: str
    shape: tuple[int, int, int] | None = None
    annotated_pixels: int = 0
    label_counts: Counter = field(default_factory=Counter)
    strokes: dict[int, int] = field(default_factory=dict)  # code -> number of strokes


@dataclass
class CheckReport:
    """Problems found (empty = the spec is usable), per-sample facts and per-split totals."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # usable, but the user should know
    samples: dict[str, SampleReport] = field(default_factory=dict)
    splits: dict[str, dict[str, int]] = field(default_factory=dict)


def check_spec(spec: DataSpec, fold: int = 0) -> CheckReport:
    """Read every cube header/data and annotation of ``spec``; report missing files, shape and band mismatches,
    unknown labels, empty splits and splits without annotated pixels."""
    report = CheckReport()
    band_counts: Counter = Counter()
    for sample_id, sample in spec.samples.items():
        facts = SampleReport(sample_id, sample.subject)
        report.samples[sample_id] = facts
        bands = _check_sample(spec, sample, facts, report.problems)
        if bands is not None:
            band_counts[bands] += 1
    if len(band_counts) > 1:
        report.problems.append(f"cubes differ in band count after preprocessing: {dict(band_counts)}")
    _check_splits(spec, fold, report)
    return report


def _quietly(read: Callable[..., T], *args: Any) -> T:
    """``read(*args)`` with its warnings silenced: the check reports problems, not reader chatter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read(*args)


def _check_sample(spec: DataSpec, sample: SampleSpec, facts: SampleReport, problems: list[str]) -> int | None:
    """Check one sample's cube and label maps into ``facts`` and ``problems``; return its band count after
    preprocessing, or ``None`` when the cube cannot be read (its label maps are then not checked)."""
    try:
        cube = _quietly(spec.read_cube, sample.id)
        cube_data = spec.preprocessing.bands(cube.data, cube.wavelengths)[0]
        facts.shape = cube.shape
        bands = cube_data.shape[-1]
    except HsisegError as error:
        problems.append(f"sample {sample.id}: {error}")
        return None
    _check_label_maps(spec, sample, cube.shape[:2], facts, problems)
    return bands


def _check_label_maps(
    spec: DataSpec, sample: SampleSpec, shape: tuple[int, int], facts: SampleReport, problems: list[str]
) -> None:
    """Read the sample's annotation, then its truth: each must match the cube's ``shape``, truth and annotation
    must not overlap under same-scene evaluation, and the annotation's labels and strokes go into ``facts``."""
    annotation = np.full(shape, UNLABELLED)
    for kind, reader in (("annotation", spec.read_annotation), ("truth", spec.read_truth)):
        if kind == "annotation" and not sample.annotations:
            problems.append(f"sample {sample.id}: no annotation files")
            continue
        try:
            label_map = _quietly(reader, sample.id, shape)
        except HsisegError as error:
            problems.append(f"sample {sample.id}: {error}")
            continue
        if label_map is None:
            continue
        if label_map.shape != shape:
            problems.append(
                f"sample {sample.id}: {kind} is {label_map.shape[0]} x {label_map.shape[1]} but the cube is "
                f"{shape[0]} x {shape[1]}"
            )
        elif kind == "truth" and spec.document.splits.same_scene_evaluation:
            problems.extend(_overlap_problems(sample.id, label_map, annotation))
        elif kind == "annotation":
            annotation = label_map
            _count_annotation(spec, label_map, facts)


def _overlap_problems(sample_id: str, truth: np.ndarray, annotation: np.ndarray) -> list[str]:
    """The problem of truth pixels that are also annotated, if any (same-scene evaluation needs them disjoint)."""
    overlap = int(((truth != UNLABELLED) & (annotation != UNLABELLED)).sum())
    if not overlap:
        return []
    return [
        f"sample {sample_id}: {overlap} pixels are both annotation and truth; same-scene evaluation "
        "needs disjoint pixels"
    ]


def _count_annotation(spec: DataSpec, annotation: np.ndarray, facts: SampleReport) -> None:
    """Record the annotation's strokes, annotated pixel count and pixels per label name in ``facts``."""
    facts.strokes = stroke_counts(annotation)
    labelled = annotation[annotation != UNLABELLED]
    facts.annotated_pixels = int(labelled.size)
    codes, counts = np.unique(labelled, return_counts=True)
    facts.label_counts.update({spec.tree.node(int(c)).name: int(n) for c, n in zip(codes, counts, strict=True)})


def _check_splits(spec: DataSpec, fold: int, report: CheckReport) -> None:
    """Totals per split of ``fold`` into ``report.splits``; empty or unannotated train/val splits are problems,
    classes without held-out validation pixels warnings. A spec whose splits cannot be made is one problem."""
    try:
        splits = spec.splits(fold)
    except HsisegError as error:
        report.problems.append(str(error))
        return
    for name, ids in splits.items():
        pixels = sum(report.samples[i].annotated_pixels for i in ids if i in report.samples)
        report.splits[name] = {
            "samples": len(ids),
            "subjects": len({spec.samples[i].subject for i in ids}),
            "annotated_pixels": pixels,
        }
        if name in ("train", "val") and not ids:
            report.problems.append(f"split {name!r} (fold {fold}) is empty")
        elif name in ("train", "val") and pixels == 0:
            report.problems.append(f"split {name!r} (fold {fold}) has no annotated pixel")
    report.warnings += validation_gaps(spec, splits, report.samples, fold)


def validation_gaps(
    spec: DataSpec, splits: dict[str, list[str]], samples: dict[str, SampleReport], fold: int
) -> list[str]:
    """Classes trained on but without held-out validation pixels. A class is validated when it is annotated in
    a validation image that is not also a training image, or has >= 2 strokes in an image shared by both
    splits (strokes are held out image by image, a class keeping its only stroke: :mod:`hsiseg.dataset.strokes`)."""
    shared = set(splits["train"]) & set(splits["val"])
    trained: set[int] = set()
    validated: set[int] = set()
    for sample_id in splits["train"]:
        trained.update(samples[sample_id].strokes if sample_id in samples else ())
    for sample_id in splits["val"]:
        strokes = samples[sample_id].strokes if sample_id in samples else {}
        validated.update(code for code, count in strokes.items() if sample_id not in shared or count >= 2)
    gaps = []
    for code in sorted(trained - validated):
        name = spec.tree.node(code).name
        if shared:
            why = "no image gives it two strokes to hold one out, nor has a validation-only image it"
            gaps.append(
                f"class {name!r} has no held-out validation pixel (fold {fold}): {why}; annotate a second stroke"
            )
        else:
            why = "checkpoint choice and the unknown-tissue threshold cannot see it"
            gaps.append(f"class {name!r} has no annotated pixel in the validation split (fold {fold}): {why}")
    return gaps
