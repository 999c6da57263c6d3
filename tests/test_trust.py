"""hsiseg.ood.trust: the calibrated promise of a map, and warnings for frames unlike the calibration data."""

from __future__ import annotations

import numpy as np

from hsiseg.models.card import OodCalibration
from hsiseg.ood.trust import frame_warnings, promise


def calibration(method: str = "held-out") -> OodCalibration:
    return OodCalibration(threshold=-4.0, keep=0.95, method=method, held_out_pixels=321, reference_share=0.04,
                          reference_low=-5.0)  # fmt: skip


def test_promise_states_what_was_calibrated() -> None:
    line = promise("mahalanobis", -4.0, calibration())
    assert "'mahalanobis' below -4" in line and "keep 95% of known tissue (321 held-out pixels)" in line
    assert "4.0% of their pixels flagged" in line
    assert "(321 held-out pixels, transferred to the refit)" in promise("knn", -4.0, calibration("transferred"))
    crossed = calibration("transferred").model_copy(update={"transferred_from": "cross-fitted"})
    assert "(321 annotated pixels, each scored without its stroke, transferred to the refit)" in promise(
        "spectral_knn", -4.0, crossed)
    assert "(321 annotated pixels, each scored without its stroke)" in promise("knn", -4.0, calibration("cross-fitted"))
    assert "set by hand, no calibrated promise" in promise("knn", -3.0, calibration())
    assert "no calibrated score" in promise(None, None, None)


def test_frame_warnings_name_shifted_frames_and_many_unknown_pixels() -> None:
    rng = np.random.default_rng(0)
    none = np.zeros((20, 30), dtype=bool)
    like_training = rng.normal(0.0, 1.0, (20, 30))  # median 0 >> the reference's 5% quantile (-5)
    assert frame_warnings(like_training, like_training < -4.0, none, calibration()) == []
    shifted = like_training - 8.0  # median -8 < -5: unlike the training data
    warnings = frame_warnings(shifted, shifted < -4.0, none, calibration())
    assert len(warnings) == 2 and warnings[0].startswith("unlike the training data")
    assert warnings[1].startswith("100% flagged unknown where the training images had 4.0%")
    invalid = np.ones((20, 30), dtype=bool)  # no valid pixel: nothing to say
    assert frame_warnings(shifted, shifted < -4.0, invalid, calibration()) == []
    assert frame_warnings(shifted, shifted < -4.0, none, None) == []
    half = like_training.copy()
    half[:, :12] -= 20  # 40% of the frame is new tissue: many unknown, but the median pixel is in range
    messages = frame_warnings(half, half < -4.0, none, calibration())
    assert len(messages) == 1 and "flagged unknown" in messages[0]


def test_predict_states_the_promise_and_warns_on_a_shifted_frame(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from hsiseg.dataset.scenes import write_real_scene
    from hsiseg.dataset.spec import DataSpec
    from hsiseg.io import Cube, write_cube
    from hsiseg.training import TrainConfig, final_checkpoint, train
    from hsiseg_cli.main import app

    spec = DataSpec.from_file(write_real_scene("samson", tmp_path / "data", fraction=0.03, seed=1))
    config = TrainConfig(model="spectral-spatial", steps=30, validate_every=15, pixels_per_step=128)
    train(spec.path, tmp_path / "run", config)
    cube = spec.read_cube("samson")
    write_cube(tmp_path / "cubes" / "same.h5", cube)
    write_cube(tmp_path / "cubes" / "shifted.h5", Cube(cube.data * 3 + 0.5, cube.wavelengths, {}))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(final_checkpoint(tmp_path / "run")), str(tmp_path / "cubes"),
                                      "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "calibrated to keep 95% of known tissue" in json.loads((out / "args.json").read_text())["ood_promise"]
    warnings = {row["frame"]: row["warnings"] for row in json.loads((out / "summary.json").read_text())}
    assert not any(w.startswith("unlike the training data") for w in warnings["same"])
    assert any(w.startswith("unlike the training data") for w in warnings["shifted"])
    assert "calibrated to keep 95%" in result.output  # the CLI says what the unknown map promises
