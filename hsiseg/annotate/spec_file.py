"""The data spec as an annotation session changes it: a new annotation file for a sample, a new value in the
label-image table for a node the table lacks. One atomic rewrite per change; the spec's first version is kept
once as ``<spec>.bak`` (the rewrite is YAML without the original's comments)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hsiseg.dataset.spec import DataSpec, load_with_lines
from hsiseg.errors import HsisegError
from hsiseg.io.atomic import atomic_path

MAX_VALUE = 65535  # the largest value a 16-bit PNG label image holds


def value_table(spec: DataSpec) -> dict[int, str]:
    """The spec's label-image table, file value -> node name (refuses other annotation formats)."""
    annotations = spec.document.annotations
    if annotations.format != "label-image":
        raise HsisegError(f"{spec.path}: annotations.format is {annotations.format!r}; hsiseg annotate writes "
                          "label images: use a spec with format label-image (as hsiseg demo-data writes)")  # fmt: skip
    return spec.label_values()


def values_of_codes(spec: DataSpec, table: dict[int, str]) -> dict[int, int]:
    """Target code -> file value for every node the table names (the smallest value where several do)."""
    values: dict[int, int] = {}
    for value, name in sorted(table.items()):
        if name in spec.tree:
            values.setdefault(spec.tree.index(name), value)
    return values


def next_value(table: dict[int, str], ignore: int) -> int:
    """A file value not in use: one above the largest value and the ignore value."""
    value = max([ignore, *table]) + 1
    if value > MAX_VALUE:
        raise HsisegError(f"annotations.labels: no free value below {MAX_VALUE + 1} for a new node")
    return value


def add_to_spec(spec_path: Path, sample_id: str, file: str | None, new_labels: Mapping[int, str]) -> None:
    """Rewrite the spec with ``file`` listed under ``sample_id``'s annotations (when given and not listed yet)
    and ``new_labels`` added to ``annotations.labels``; atomic, the first version kept as ``<spec>.bak``."""
    document, _ = load_with_lines(spec_path)
    if not isinstance(document, dict):
        raise HsisegError(f"{spec_path}: a data spec must be a mapping")
    _add_file(document, spec_path, sample_id, file)
    if new_labels:
        annotations = document.setdefault("annotations", {})
        labels = annotations.setdefault("labels", {})
        labels.update({int(value): name for value, name in new_labels.items()})
    backup = spec_path.with_name(spec_path.name + ".bak")
    if not backup.exists():
        shutil.copy2(spec_path, backup)
    with atomic_path(spec_path) as temporary:
        temporary.write_text(_dump(document, spec_path), encoding="utf-8")


def _add_file(document: dict[str, Any], spec_path: Path, sample_id: str, file: str | None) -> None:
    if file is None:
        return
    for sample in document.get("samples", []):
        if isinstance(sample, dict) and sample.get("id") == sample_id:
            files = sample.setdefault("annotations", [])
            if file not in files:
                files.append(file)
            return
    raise HsisegError(f"{spec_path}: no sample {sample_id!r}")


def _dump(document: dict[str, Any], spec_path: Path) -> str:
    if spec_path.suffix.lower() == ".json":
        import json

        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    header = "# Data spec, rewritten by hsiseg annotate (its first version: the .bak file beside it).\n"
    return header + yaml.safe_dump(document, sort_keys=False, width=120, allow_unicode=True)


def training_spec(spec: DataSpec, destination: Path) -> Path:
    """Write the spec as the final model trains on it to ``destination``: the samples with annotation files,
    every one of them in the training and the validation split (training holds a share of each class's strokes
    out for validation, as it does for images the two splits share), no test split; paths made absolute."""
    document, _ = load_with_lines(spec.path)
    annotated = [s for s in document["samples"] if isinstance(s, dict) and s.get("annotations")]
    if not annotated:
        raise HsisegError(f"{spec.path}: no sample has strokes yet; draw some first")
    ids = [s["id"] for s in annotated]
    document["samples"] = annotated
    document["root"] = str(spec.root)
    if isinstance(document.get("label_tree"), str):
        document["label_tree"] = str((spec.path.parent / document["label_tree"]).resolve())
    document["splits"] = {"train": ids, "val": ids, "test": [], "same_scene_evaluation": True}
    with atomic_path(destination) as temporary:
        temporary.write_text(_dump(document, destination), encoding="utf-8")
    return destination
