"""hsiseg.dataset.strokes: held-out strokes are disjoint from training, deterministic per seed, and never empty for a
class with >= 2 strokes; checked against connected components counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from hsiseg.annotations import UNLABELLED
from hsiseg.annotations.simulate import simulate_scribbles
from hsiseg.dataset.strokes import hold_out_strokes


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
