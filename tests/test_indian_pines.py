"""Indian Pines from the tensorly wheel, and the scribble simulation that makes it sparse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hsiseg.annotations import UNLABELLED
from hsiseg.annotations.simulate import simulate_scribbles
from hsiseg.dataset.spec import DataSpec
from hsiseg.dataset.spec_check import check_spec
from tests.conftest import REPO

pytest.importorskip("tensorly")


def test_simulated_scribbles_budget_classes_and_determinism() -> None:
    truth = np.full((40, 40), UNLABELLED, dtype=np.int32)
    truth[:20, :30] = 0
    truth[25:, :] = 1
    truth[5:7, 35:37] = 2  # a tiny class
    scribbles = simulate_scribbles(truth, fraction=0.05, stroke_length=6, seed=3)
    labelled = scribbles != UNLABELLED
    assert abs(labelled.sum() - 0.05 * (truth != UNLABELLED).sum()) <= 6  # budget, within one stroke
    np.testing.assert_array_equal(scribbles[labelled], truth[labelled])  # strokes stay inside their class
    assert set(np.unique(scribbles[labelled])) == {0, 1, 2}  # every class gets a stroke
    np.testing.assert_array_equal(scribbles, simulate_scribbles(truth, 0.05, 6, seed=3))


def test_indian_pines_data_set(tmp_path: Path) -> None:
    from hsiseg.dataset.indian_pines import CLASS_NAMES, load_indian_pines, write_indian_pines

    cube, truth = load_indian_pines()
    assert cube.shape == (145, 145, 200) and cube.wavelengths[0] == pytest.approx(400.02)
    assert (np.diff(cube.wavelengths) > 0).all()  # overlapping spectrometers sorted
    assert (truth != UNLABELLED).sum() == 10249 and len(CLASS_NAMES) == 16
    spec_path = write_indian_pines(tmp_path, fraction=0.03, seed=1)
    spec = DataSpec.from_file(spec_path)
    scribbles, evaluation = spec.read_annotation("indian_pines"), spec.read_truth("indian_pines")
    assert not ((scribbles != UNLABELLED) & (evaluation != UNLABELLED)).any()
    assert (scribbles != UNLABELLED).sum() + (evaluation != UNLABELLED).sum() == 10249
    assert check_spec(spec).problems == []
    fitted = spec.fitted_preprocessing()
    assert fitted.normalization == "zscore" and len(fitted.mean) == 200


def test_shipped_indian_pines_spec_matches_the_writer() -> None:
    from hsiseg.dataset.indian_pines import pines_tree, spec_dict, spec_text

    text = spec_text(spec_dict(pines_tree(), "trees/indian_pines.yaml", "../indian-pines-data"))
    assert (REPO / "data_specs" / "indian_pines.yaml").read_text() == text
