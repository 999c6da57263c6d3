"""hsiseg.spectral: calibration, normalisation (with the invalid-pixel rule), streaming statistics, bands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hsiseg import HsisegError, HsisegWarning
from hsiseg.spectral import (
    BandStatistics,
    Preprocessing,
    bin_bands,
    calibrate,
    drop_bands,
    normalize,
    resample,
    select_range,
    valid_pixels,
    zscore,
)
from hsiseg.spectral import normalization as normalization_module

RNG = np.random.default_rng(3)
WAVELENGTHS = np.linspace(500, 1000, 11)


def cube_with_invalid_pixels() -> np.ndarray:
    data = RNG.normal(0.4, 0.2, (6, 7, 11)).astype(np.float32)
    data[0, 0] = 0.0  # all-zero pixel
    data[1, 2, 5] = np.nan  # NaN in one band
    data[2, 3, 0] = np.inf
    data[3, 3] = 0.25  # constant, valid spectrum
    return data


def reference(method: str, spectrum: np.ndarray) -> np.ndarray:
    """The textbook formula for one spectrum, in float64."""
    x = spectrum.astype(np.float64)
    if method == "l1":
        return x / np.abs(x).sum()
    if method == "l2":
        return x / np.sqrt((x**2).sum())
    if method == "snv":
        return (x - x.mean()) / x.std() if x.std() > 0 else np.zeros_like(x)
    return (x - x.min()) / (x.max() - x.min()) if x.max() > x.min() else np.zeros_like(x)


def test_valid_pixels() -> None:
    mask = valid_pixels(cube_with_invalid_pixels())
    assert mask.shape == (6, 7)
    assert not mask[0, 0] and not mask[1, 2] and not mask[2, 3] and mask[3, 3]
    assert mask.sum() == 6 * 7 - 3


@pytest.mark.parametrize("method", ["l1", "l2", "snv", "minmax"])
def test_per_pixel_normalisation_against_formulas(method: str, monkeypatch) -> None:
    monkeypatch.setattr(normalization_module, "BLOCK_VALUES", 50)  # many blocks, ragged last block
    data = cube_with_invalid_pixels()
    out = normalize(data, method)
    assert out.dtype == np.float32 and not np.isnan(out).any()
    valid = valid_pixels(data)
    for row, column in zip(*np.nonzero(valid), strict=True):
        np.testing.assert_allclose(out[row, column], reference(method, data[row, column]), rtol=2e-5, atol=2e-6)
    assert (out[~valid] == 0).all()


def test_normalisation_in_place_and_input_untouched() -> None:
    data = cube_with_invalid_pixels()
    original = data.copy()
    expected = normalize(data, "l1")
    np.testing.assert_array_equal(data, original)
    result = normalize(data, "l1", out=data)
    assert result is data
    np.testing.assert_array_equal(data, expected)
    with pytest.raises(HsisegError, match="unknown method 'l3'"):
        normalize(data, "l3")


def test_streaming_statistics_equal_two_pass() -> None:
    cubes = [RNG.normal(i, 1 + i, (5 + i, 4, 3)).astype(np.float32) for i in range(4)]
    cubes[1][0, 0] = 0.0  # invalid pixels are left out
    statistics = BandStatistics.from_cubes(iter(cubes))
    pixels = np.concatenate([c[valid_pixels(c)] for c in cubes]).astype(np.float64)
    np.testing.assert_allclose(statistics.mean, pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(statistics.std, pixels.std(axis=0), rtol=1e-12)
    assert statistics.count == len(pixels)
    with pytest.raises(HsisegError, match="no valid pixel"):
        _ = BandStatistics().std


def test_zscore() -> None:
    data = cube_with_invalid_pixels()
    mean, std = np.full(11, 0.4), np.full(11, 0.2)
    std[0] = 0.0  # a constant band is not divided by zero
    out = zscore(data, mean, std)
    np.testing.assert_allclose(out[4, 4, 1:], (data[4, 4, 1:] - 0.4) / 0.2, rtol=1e-5)
    assert np.isfinite(out).all() and (out[0, 0] == 0).all()
    with pytest.raises(HsisegError, match="statistics have 3 bands, the cube has 11"):
        zscore(data, mean[:3], std[:3])


def test_calibration() -> None:
    raw = RNG.uniform(100, 1000, (4, 5, 3)).astype(np.float32)
    white = RNG.uniform(1000, 2000, (5, 3)).astype(np.float32)  # line-scan white reference (W, B)
    dark = np.array([10.0, 20.0, 30.0], dtype=np.float32)
    np.testing.assert_allclose(calibrate(raw, white, dark), (raw - dark) / (white - dark), rtol=1e-6)
    dead = white.copy()
    dead[0, 0] = dark[0]  # white equals dark: would divide by zero
    with pytest.warns(HsisegWarning, match="4 values have white - dark"):
        result = calibrate(raw, dead, dark)
    assert (result[:, 0, 0] == 0).all() and np.isfinite(result).all()
    with pytest.raises(HsisegError, match=r"white reference of shape \(7,\) does not fit"):
        calibrate(raw, np.ones(7), dark)


def test_select_bin_drop() -> None:
    data = np.arange(2 * 2 * 11, dtype=np.float32).reshape(2, 2, 11)
    selected, wavelengths = select_range(data, WAVELENGTHS, 600, 800)
    np.testing.assert_array_equal(wavelengths, [600, 650, 700, 750, 800])
    np.testing.assert_array_equal(selected, data[..., 2:7])
    with pytest.raises(HsisegError, match="holds no band"):
        select_range(data, WAVELENGTHS, 100, 200)
    binned, centres = bin_bands(data, WAVELENGTHS, 4)
    np.testing.assert_allclose(binned[0, 0], [1.5, 5.5, 9.0])  # groups 0-3, 4-7, 8-10
    np.testing.assert_allclose(centres, [575, 775, 950])
    dropped, kept = drop_bands(data, WAVELENGTHS, [0, 10])
    assert dropped.shape[-1] == 9 and kept[0] == 550
    with pytest.raises(HsisegError, match=r"bad bands \[11\] do not exist"):
        drop_bands(data, WAVELENGTHS, [11])


def test_resample_linear_and_extrapolation_warning() -> None:
    slope = np.broadcast_to(WAVELENGTHS.astype(np.float32) / 1000, (2, 3, 11)).copy()  # linear spectra
    target = np.array([510.0, 777.0, 999.0])
    out, centres = resample(slope, WAVELENGTHS, target)
    np.testing.assert_allclose(out[1, 2], target / 1000, rtol=1e-6)  # linear data is reproduced exactly
    np.testing.assert_array_equal(centres, target)
    with pytest.warns(HsisegWarning, match=r"2 target bands \(450-1100 nm\) lie outside the measured 500-1000 nm"):
        out, _ = resample(slope, WAVELENGTHS, np.array([450.0, 700.0, 1100.0]))
    np.testing.assert_allclose(out[0, 0], [0.5, 0.7, 1.0], rtol=1e-6)


def test_preprocessing_round_trips_through_json() -> None:
    data = cube_with_invalid_pixels()
    other_camera = np.linspace(490, 1010, 15)  # the cube comes from another camera than the model's grid
    with pytest.warns(HsisegWarning, match="outside the measured"):
        cube = resample(data, WAVELENGTHS, other_camera)[0]
    description = Preprocessing(wavelengths=list(WAVELENGTHS), band_range=(550, 950), binning=2, normalization="zscore")
    fitted = description.fit_statistics([(cube, other_camera)])
    restored = Preprocessing.model_validate(json.loads(fitted.model_dump_json()))
    first, first_wavelengths = fitted.apply(cube, other_camera)
    second, second_wavelengths = restored.apply(cube, other_camera)
    assert first.tobytes() == second.tobytes()
    np.testing.assert_array_equal(first_wavelengths, second_wavelengths)
    assert first.shape[-1] == 5 and np.isfinite(first).all()
    with pytest.raises(HsisegError, match="zscore needs dataset statistics"):
        description.apply(cube, other_camera)


def test_preprocessing_errors_name_the_field() -> None:
    with pytest.raises(HsisegError, match="model card: binning: Input should be greater than or equal to 1"):
        Preprocessing.from_dict({"binning": 0}, source="model card")
    with pytest.raises(HsisegError, match="normalization: Input should be"):
        Preprocessing.from_dict({"normalization": "l7"})
    with pytest.raises(HsisegError, match="low < high"):
        Preprocessing.from_dict({"band_range": [900, 600]})
    with pytest.raises(HsisegError, match="Extra inputs"):
        Preprocessing.from_dict({"normalisation": "l1"})
