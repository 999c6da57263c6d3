"""``hsiseg check``: validate everything a data spec points at, collecting every problem instead of stopping."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from hsiseg.annotations import UNLABELLED
from hsiseg.errors import HsisegError
from hsiseg.spec import DataSpec
from hsiseg.strokes import stroke_counts


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
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cube = spec.read_cube(sample_id)
            cube_data = spec.preprocessing.bands(cube.data, cube.wavelengths)[0]
            facts.shape = cube.shape
            band_counts[cube_data.shape[-1]] += 1
        except HsisegError as error:
            report.problems.append(f"sample {sample_id}: {error}")
            continue
        annotation = np.full(cube.shape[:2], UNLABELLED)
        for kind, reader in (("annotation", spec.read_annotation), ("truth", spec.read_truth)):
            if kind == "annotation" and not sample.annotations:
                report.problems.append(f"sample {sample_id}: no annotation files")
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    label_map = reader(sample_id, cube.shape[:2])
            except HsisegError as error:
                report.problems.append(f"sample {sample_id}: {error}")
                continue
            if label_map is None:
                continue
            if label_map.shape != cube.shape[:2]:
                report.problems.append(
                    f"sample {sample_id}: {kind} is {label_map.shape[0]} x {label_map.shape[1]} but the cube is "
                    f"{cube.shape[0]} x {cube.shape[1]}"
                )
            elif kind == "truth" and spec.model.splits.same_scene_evaluation:
                overlap = int(((label_map != UNLABELLED) & (annotation != UNLABELLED)).sum())
                if overlap:
                    report.problems.append(
                        f"sample {sample_id}: {overlap} pixels are both annotation and truth; same-scene evaluation "
                        "needs disjoint pixels"
                    )
            elif kind == "annotation":
                annotation = label_map
                facts.strokes = stroke_counts(label_map)
                labelled = label_map[label_map != UNLABELLED]
                facts.annotated_pixels = int(labelled.size)
                codes, counts = np.unique(labelled, return_counts=True)
                facts.label_counts.update(
                    {spec.tree.node(int(c)).name: int(n) for c, n in zip(codes, counts, strict=True)}
                )
    if len(band_counts) > 1:
        report.problems.append(f"cubes differ in band count after preprocessing: {dict(band_counts)}")
    try:
        splits = spec.splits(fold)
    except HsisegError as error:
        report.problems.append(str(error))
        return report
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
    return report


def validation_gaps(
    spec: DataSpec, splits: dict[str, list[str]], samples: dict[str, SampleReport], fold: int
) -> list[str]:
    """Classes trained on but without held-out validation pixels. A class is validated when it is annotated in
    a validation image that is not also a training image, or has >= 2 strokes in an image shared by both
    splits (strokes are held out image by image, a class keeping its only stroke: :mod:`hsiseg.strokes`)."""
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
