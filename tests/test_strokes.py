"""hsiseg.dataset.strokes: held-out strokes are disjoint from training, deterministic per seed, and never empty for a
class with >= 2 strokes; checked against connected components counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from hsiseg.annotations import UNLABELLED
from hsiseg.annotations.simulate import simulate_scribbles
from hsiseg.dataset.strokes import hold_out_strokes, stroke_folds, subject_folds


def scribbles() -> np.ndarray:
    target = np.full((20, 30), UNLABELLED)
    target[1, 1:6] = 0  # class 0: three strokes
    target[5, 10:15] = 0
    target[9:12, 20] = 0
    target[15, 2:9] = 1  # class 1: one stroke (kept for training)
    target[17, 20:22] = 2  # class 2: two strokes, the second touching the first diagonally is one stroke
    target[18, 22] = 2
    target[2, 25:28] = 2
    return target


def test_hold_out_is_a_disjoint_partition_with_whole_strokes() -> None:
    target = scribbles()
    split = hold_out_strokes(target, 0.5, seed=0)
    assert not ((split.train != UNLABELLED) & (split.validation != UNLABELLED)).any()
    np.testing.assert_array_equal(np.where(split.validation != UNLABELLED, split.validation, split.train), target)
    assert (split.validation == 1).sum() == 0  # one stroke: nothing to spare
    assert (split.validation == 0).any() and (split.train == 0).any()
    assert (split.validation == 2).sum() == 3 and (split.train == 2).sum() == 3  # 1 of its 2 strokes
    held = {(s.code, s.pixels) for s in split.held_out}
    assert {code for code, _ in held} == {0, 2}
    assert sum(pixels for _, pixels in held) == int((split.validation != UNLABELLED).sum())


def test_hold_out_is_deterministic_per_seed_and_key() -> None:
    truth = np.repeat(np.arange(4), 25).reshape(10, 10)
    target = simulate_scribbles(np.kron(truth, np.ones((6, 6), dtype=int)), 0.2, 6, seed=1)
    first = hold_out_strokes(target, 0.3, seed=5, key="a")
    again = hold_out_strokes(target, 0.3, seed=5, key="a")
    np.testing.assert_array_equal(first.validation, again.validation)
    others = [hold_out_strokes(target, 0.3, seed=s, key="a").validation for s in range(6, 12)]
    assert any(not np.array_equal(first.validation, other) for other in others)
    for code in np.unique(target[target != UNLABELLED]):
        assert (first.validation == code).any()  # every class here has several strokes


def test_share_out_of_range() -> None:
    with pytest.raises(ValueError, match="share must be in"):
        hold_out_strokes(scribbles(), 1.0, 0)


def test_stroke_folds_deal_whole_strokes_of_every_image() -> None:
    """Every annotated pixel gets the fold of its stroke (a stroke is never split), nothing else gets one, each
    class's strokes over both images are spread over the folds, and the same seed gives the same folds."""
    from scipy import ndimage

    first, second = np.full((30, 40), UNLABELLED), np.full((20, 40), UNLABELLED)
    for index in range(7):  # class 0: 7 strokes in the first image, 3 in the second; class 1: 4 strokes
        first[2 * index + 1, 2:12] = 0
    for index in range(3):
        second[3 * index + 1, 2:12] = 0
    for index in range(4):
        first[3 * index + 1, 20:30] = 1
    targets = {"a": first, "b": second}
    folds = stroke_folds(targets, 5, seed=3)
    for key, target in targets.items():
        assert ((folds[key] >= 0) == (target != UNLABELLED)).all()
    for code, count in ((0, 10), (1, 4)):
        per_stroke = []
        for key, target in targets.items():
            components, found = ndimage.label(target == code, structure=np.ones((3, 3)))
            per_stroke += [np.unique(folds[key][components == k]) for k in range(1, found + 1)]
        assert len(per_stroke) == count and all(len(values) == 1 for values in per_stroke)
        used = [int(values[0]) for values in per_stroke]
        assert sorted(np.bincount(used, minlength=5).tolist()) == sorted(
            np.bincount(np.arange(count) % 5, minlength=5).tolist())  # round-robin: fold sizes differ by <= 1
    again = stroke_folds(targets, 5, seed=3)
    assert all(np.array_equal(again[key], folds[key]) for key in targets)
    with pytest.raises(ValueError, match="folds"):
        stroke_folds(targets, 1, seed=0)


def test_subject_folds_keep_each_subject_in_one_fold() -> None:
    """With several subjects every annotated pixel of a subject's images gets its subject's fold, the subjects
    are dealt round-robin over min(folds, subjects) folds, and one subject falls back to the folds of strokes."""
    rng = np.random.default_rng(0)
    targets, subjects = {}, {}
    for index in range(7):  # 7 images of 4 subjects (two images for some)
        target = np.full((10, 12), UNLABELLED)
        target[rng.random((10, 12)) < 0.2] = index % 3
        targets[f"image{index}"], subjects[f"image{index}"] = target, f"patient{index % 4}"
    folds = subject_folds(targets, subjects, 5, seed=1)
    fold_of_subject: dict[str, set[int]] = {}
    for key, target in targets.items():
        assert ((folds[key] >= 0) == (target != UNLABELLED)).all()
        fold_of_subject.setdefault(subjects[key], set()).update(np.unique(folds[key][target != UNLABELLED]).tolist())
    assert all(len(values) == 1 for values in fold_of_subject.values())  # a subject is never split
    assert sorted(next(iter(v)) for v in fold_of_subject.values()) == [0, 1, 2, 3]  # 4 subjects, 4 folds
    same = {key: "patient0" for key in targets}
    alone = subject_folds(targets, same, 5, seed=1)
    strokes = stroke_folds(targets, 5, seed=1)
    assert all(np.array_equal(alone[key], strokes[key]) for key in targets)
