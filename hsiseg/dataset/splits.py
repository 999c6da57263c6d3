"""Train/validation/test splits that never put one patient (subject, surgery) in two splits.

Three ways to give them in a data spec (``splits:``):

- explicit lists of sample ids: ``{train: [...], val: [...], test: [...]}``;
- k folds grouped by subject: ``{folds: 5, seed: 0, test: [...]}``: subjects not in ``test`` are shuffled
  with the seed and dealt into k groups; fold i validates on group i and trains on the rest;
- the reference toolkit's (DKFZ htc) fold file: ``{fold_file: folds.json}``, a JSON list of folds
  ``{"fold_name": ..., "train...": {"image_names": [...]}, "val...": {...}, "test": {...}}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.textfiles import read_utf8

SPLIT_NAMES = ("train", "val", "test")


def group_folds(
    subjects: Mapping[str, str], folds: int, seed: int, test: Sequence[str] = ()
) -> list[dict[str, list[str]]]:
    """k folds of sample ids grouped by subject.

    Parameters
    ----------
    subjects: sample id -> subject id.
    folds: k >= 2, at most the number of non-test subjects.
    seed: shuffles the subjects before dealing them into folds (reproducible).
    test: sample ids held out of every fold.

    Returns
    -------
    One ``{"train": [...], "val": [...], "test": [...]}`` per fold, ids in the order of ``subjects``.
    """
    test_set = set(test)
    unknown = sorted(test_set - set(subjects))
    if unknown:
        raise HsisegError(f"splits: 'test' names unknown samples {unknown[:5]}; use ids listed under samples")
    pool = sorted({subject for sample, subject in subjects.items() if sample not in test_set})
    if not pool:
        raise HsisegError(
            "splits: every sample is in 'test', none is left for the folds; keep 2 or more subjects out of it"
        )
    test_subjects = {subjects[sample] for sample in test_set}
    shared = sorted(test_subjects & set(pool))
    if shared:
        raise HsisegError(f"splits: subjects {shared} have samples in test and outside it; move all their samples")
    if folds < 2 or folds > len(pool):
        raise HsisegError(f"splits: 'folds' must be between 2 and the number of subjects ({len(pool)}), got {folds}")
    order = np.random.default_rng(seed).permutation(len(pool))
    groups = [{pool[i] for i in order[k::folds]} for k in range(folds)]
    result = []
    for group in groups:
        result.append(
            {
                "train": [s for s, subject in subjects.items() if s not in test_set and subject not in group],
                "val": [s for s, subject in subjects.items() if s not in test_set and subject in group],
                "test": [s for s in subjects if s in test_set],
            }
        )
    return result


def read_htc_folds(path: Path) -> list[dict[str, list[str]]]:
    """Folds from the reference toolkit's JSON fold file (keys starting with train/val/test)."""
    try:
        content = json.loads(read_utf8(path, "the fold file"))
    except FileNotFoundError:
        raise HsisegError(f"{path}: fold file not found") from None
    except json.JSONDecodeError as error:
        raise HsisegError(f"{path}: line {error.lineno}: invalid JSON: {error.msg}") from None
    if not isinstance(content, list) or not content:
        raise HsisegError(f"{path}: expected a JSON list of folds")
    folds = []
    for number, fold in enumerate(content):
        if not isinstance(fold, dict):
            raise HsisegError(f"{path}: fold {number} is not an object")
        splits: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
        for key, value in fold.items():
            if key == "fold_name":
                continue
            name = next((n for n in SPLIT_NAMES if key.startswith(n)), None)
            if name is None or not isinstance(value, dict) or "image_names" not in value:
                raise HsisegError(
                    f"{path}: fold {number}: unexpected entry {key!r} (want train*/val*/test with image_names)"
                )
            splits[name].extend(str(v) for v in value["image_names"])
        folds.append(splits)
    return folds


def check_no_leakage(splits: Mapping[str, Sequence[str]], subjects: Mapping[str, str], source: str) -> None:
    """Raise when a subject has samples in two splits, or a sample is in two splits."""
    owner: dict[str, str] = {}
    seen: dict[str, str] = {}
    for split, samples in splits.items():
        for sample in samples:
            if sample in seen and seen[sample] != split:
                raise HsisegError(f"{source}: sample {sample!r} is in both {seen[sample]!r} and {split!r}")
            seen[sample] = split
            subject = subjects[sample]
            if owner.setdefault(subject, split) != split:
                raise HsisegError(
                    f"{source}: subject {subject!r} is in both {owner[subject]!r} and {split!r} (patient leakage)"
                )
