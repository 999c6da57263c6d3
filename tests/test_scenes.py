"""hsiseg.dataset.scenes: the shipped real scenes load as published (shapes, class counts, counts x scale), write a
scribble data set whose scribbles and truth are disjoint and together the labels, under either placement;
``hsiseg real-scene`` end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hsiseg import HsisegError
from hsiseg.annotations import UNLABELLED
from hsiseg.annotations.simulate import simulate_scribbles
from hsiseg.dataset.scenes import load_scene, write_real_scene
from hsiseg.dataset.spec import DataSpec
from hsiseg_cli.main import app

# Published argmax class counts (SOURCE.md of each scene) and the DN maxima of the original files.
COUNTS = {"jasper-ridge": ([3493, 3326, 2428, 753], 5437), "samson": ([3015, 3666, 2344], 1402)}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_shipped_scenes_load_as_published(name: str) -> None:
    cube, truth = load_scene(name)
    counts, maximum = COUNTS[name]
    assert cube.data.dtype == np.float32 and cube.data.shape[:2] == truth.shape
    assert np.bincount(truth.ravel()).tolist() == counts  # every pixel labelled: codes 0..K-1
    assert cube.data.max() == pytest.approx(1.0, abs=1e-6)  # counts / maximum count
    counts_back = cube.data * maximum
    np.testing.assert_allclose(counts_back, np.round(counts_back), atol=2e-3)  # integer counts, exactly scaled
    assert np.all(np.diff(cube.wavelengths) > 0) and cube.meta["wavelengths_are_approximate"]


def test_crops_subset_keeps_only_corn_and_soybean() -> None:
    pytest.importorskip("tensorly")
    _, truth = load_scene("indian-pines-crops")
    assert set(np.unique(truth)) == {UNLABELLED, 0, 1, 2, 3, 4, 5}
    assert int((truth != UNLABELLED).sum()) == 1428 + 830 + 237 + 972 + 2455 + 593  # the six classes' pixels


@pytest.mark.parametrize("placement", ["area", "class"])
def test_written_scene_splits_the_labels(tmp_path: Path, placement: str) -> None:
    spec = DataSpec.from_file(write_real_scene("samson", tmp_path, 0.02, 6, seed=3, placement=placement))
    _, labels = load_scene("samson")
    scribbles, truth = spec.read_annotation("samson"), spec.read_truth("samson")
    assert not ((scribbles != UNLABELLED) & (truth != UNLABELLED)).any()
    np.testing.assert_array_equal(np.where(scribbles != UNLABELLED, scribbles, truth), labels)
    assert 0.02 <= (scribbles != UNLABELLED).mean() < 0.03
    with pytest.raises(HsisegError, match="exists"):
        write_real_scene("samson", tmp_path)


def test_class_placement_gives_every_class_as_many_strokes() -> None:
    truth = np.zeros((60, 60), dtype=np.int32)
    truth[:, 50:] = 1  # class 1 covers a sixth of the image
    counts = {}
    for placement in ("area", "class"):
        scribbles = simulate_scribbles(truth, 0.05, 5, seed=1, placement=placement)
        counts[placement] = [int((scribbles == code).sum()) for code in (0, 1)]
    assert counts["area"][0] > 3 * counts["area"][1]  # by area: the big class gets most strokes (5 : 1 by area)
    assert 0.67 < counts["class"][0] / counts["class"][1] < 1.5  # class by class: about as many pixels each
    with pytest.raises(HsisegError, match="placement"):
        simulate_scribbles(truth, 0.05, placement="grid")


def test_real_scene_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["real-scene", "jasper-ridge", str(tmp_path), "--fraction", "0.01"])
    assert result.exit_code == 0, result.output
    assert "jasper_ridge.yaml" in result.output and (tmp_path / "label_tree.yaml").is_file()
    assert DataSpec.from_file(tmp_path / "jasper_ridge.yaml").tree.leaves == ("tree", "water", "soil", "road")
    bad = CliRunner().invoke(app, ["real-scene", "pavia", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown scene 'pavia'" in bad.output
