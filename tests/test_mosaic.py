"""Snapshot-mosaic recordings: camera files, demosaicking against the known band images, calibration and the
correction matrix against the direct formula, recording readers (b2nd, npy, HDF5, frame folders), damage."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml

from hsiseg import HsisegError
from hsiseg.io.camera import CameraDescription
from hsiseg.io.mosaic import MosaicDecoder, bilinear, subsample
from hsiseg.io.recording import MosaicVideo, open_recording

MOSAIC = (2, 3)  # a non-square tile catches row/column mix-ups
OFFSET = (1, 2)
TILES = (5, 4)
WAVELENGTHS = [600.0, 500.0, 650.0, 520.0, 700.0, 480.0]  # filter positions are not in wavelength order


def camera(**changes) -> CameraDescription:
    return CameraDescription(**{"mosaic": MOSAIC, "offset": OFFSET, "wavelengths": WAVELENGTHS, **changes})


def mosaic_frame(bands: np.ndarray, offset=OFFSET, margin=(1, 2), fill=7) -> np.ndarray:
    """A raw sensor frame holding band images (T_r, T_c, P) at their filter positions, with junk around."""
    rows, columns = MOSAIC
    tile_rows, tile_columns, _ = bands.shape
    frame = np.full((offset[0] + tile_rows * rows + margin[0], offset[1] + tile_columns * columns + margin[1]), fill)
    for position in range(rows * columns):
        row, column = divmod(position, columns)
        frame[offset[0] + row :: rows, offset[1] + column :: columns][:tile_rows, :tile_columns] = bands[..., position]
    return frame.astype(np.uint16)


@pytest.fixture
def bands() -> np.ndarray:
    return np.random.default_rng(0).integers(1, 1000, (*TILES, 6)).astype(np.uint16)


def test_subsample_gives_the_known_band_images_sorted_by_wavelength(bands) -> None:
    cube = MosaicDecoder(camera()).cube(mosaic_frame(bands))
    order = np.argsort(WAVELENGTHS)
    assert cube.shape == (*TILES, 6) and list(cube.wavelengths) == sorted(WAVELENGTHS)
    np.testing.assert_array_equal(cube.data, bands[..., order].astype(np.float32))
    assert cube.meta["calibrated"] is False and not cube.repaired.any()


def test_bilinear_equals_separable_interpolation_of_each_band(bands) -> None:
    frame = mosaic_frame(bands, offset=(0, 0), margin=(0, 0))
    full = bilinear(frame, MOSAIC)
    rows, columns = MOSAIC
    height, width = frame.shape
    for position in range(6):
        row, column = divmod(position, columns)
        samples = bands[..., position].astype(np.float64)
        along_rows = np.stack([np.interp(np.arange(width), column + columns * np.arange(TILES[1]), line)
                               for line in samples])  # fmt: skip
        expected = np.stack([np.interp(np.arange(height), row + rows * np.arange(TILES[0]), line)
                             for line in along_rows.T], axis=1)  # fmt: skip
        np.testing.assert_allclose(full[..., position], expected, rtol=1e-6)
        np.testing.assert_array_equal(full[row::rows, column::columns, position], samples)  # exact at samples
    decoded = MosaicDecoder(camera(offset=(0, 0)), "bilinear").cube(frame)
    assert decoded.shape == (height, width, 6)


def test_white_dark_calibration_and_correction_matrix_against_the_formula(bands) -> None:
    rng = np.random.default_rng(1)
    raw = mosaic_frame(bands).astype(np.float64)
    dark = rng.uniform(5, 20, raw.shape)
    white = dark + rng.uniform(800, 1200, raw.shape)
    white[OFFSET[0], OFFSET[1]] = dark[OFFSET[0], OFFSET[1]]  # a dead white pixel: invalid, not infinite
    matrix = rng.normal(size=(4, 6))
    corrected = camera(correction={"wavelengths": [560.0, 510.0, 610.0, 700.0], "matrix": matrix.tolist()},
                       saturation=990)  # fmt: skip
    cube = MosaicDecoder(corrected, white=white.astype(np.float32), dark=dark.astype(np.float32)).cube(raw)
    reflectance = np.where(white > dark, (raw - dark) / np.where(white > dark, white - dark, 1), 0)
    top, left = OFFSET
    region = reflectance[top : top + TILES[0] * MOSAIC[0], left : left + TILES[1] * MOSAIC[1]]
    expected = subsample(region, MOSAIC) @ matrix.T
    np.testing.assert_allclose(cube.data, expected[..., [1, 0, 2, 3]], rtol=1e-4, atol=1e-5)
    assert list(cube.wavelengths) == [510.0, 560.0, 610.0, 700.0] and cube.meta["calibrated"] is True
    saturated = subsample(mosaic_frame(bands)[top:, left:][: TILES[0] * 2, : TILES[1] * 3], MOSAIC) >= 990
    expected_invalid = saturated.any(-1)
    expected_invalid[0, 0] = True  # the dead white pixel
    np.testing.assert_array_equal(cube.repaired, expected_invalid)


def test_camera_file_errors_name_the_line_and_field(tmp_path) -> None:
    path = tmp_path / "camera.yaml"
    path.write_text(yaml.safe_dump({"mosaic": [4, 4], "wavelengths": list(range(500, 515))}))
    with pytest.raises(HsisegError, match=r"camera.yaml: .*wavelengths has 15 values; the 4 x 4 mosaic has 16"):
        CameraDescription.from_file(path)
    path.write_text("mosaic: [4, 4]\nwavelengths: [1, 2]\ncolour: red\n")
    with pytest.raises(HsisegError, match=r"camera.yaml: line 3 \(colour\): Extra inputs are not permitted"):
        CameraDescription.from_file(path)
    with pytest.raises(HsisegError, match="exceeds the raw frame of 8 x 8 pixels"):
        camera(size=(20, 20)).tiles((8, 8))
    with pytest.raises(HsisegError, match="demosaicking method 'cubic' is unknown"):
        MosaicDecoder(camera(), "cubic")
    for field, value, message in (("saturation", -1, "saturation must be a positive raw value, got -1"),
                                  ("fwhm", [10.0, -5.0], "fwhm values must be positive")):  # fmt: skip
        path.write_text(yaml.safe_dump({"mosaic": [1, 2], "wavelengths": [500.0, 600.0], field: value}))
        with pytest.raises(HsisegError, match=f"camera.yaml: .*{message}"):
            CameraDescription.from_file(path)


def write_recording(path, frames: np.ndarray, timestamps=None) -> None:
    import blosc2

    array = blosc2.asarray(frames, urlpath=str(path), mode="w", chunks=(1, *frames.shape[1:]))
    if timestamps is not None:
        array.schunk.vlmeta["timestamps"] = list(timestamps)
    array.schunk.vlmeta["camera_temperature"] = 41.5


def test_recordings_in_every_format_read_the_same_frames(bands, tmp_path) -> None:
    frames = np.stack([mosaic_frame(bands + index) for index in range(4)])
    write_recording(tmp_path / "rec.b2nd", frames, timestamps=[0.0, 0.04, 0.08, 0.12])
    np.save(tmp_path / "rec.npy", frames)
    with h5py.File(tmp_path / "rec.h5", "w") as handle:
        handle["frames"] = frames
    folder = tmp_path / "frames"
    folder.mkdir()
    import imageio.v3 as imageio

    for index, frame in enumerate(frames):
        imageio.imwrite(folder / f"f{index:03d}.png", frame)
    for path in ("rec.b2nd", "rec.npy", "rec.h5", "frames"):
        recording = open_recording(tmp_path / path)
        assert len(recording) == 4
        for index in range(4):
            np.testing.assert_array_equal(recording.raw(index), frames[index])
    b2nd = open_recording(tmp_path / "rec.b2nd")
    assert b2nd.timestamps == [0.0, 0.04, 0.08, 0.12] and b2nd.meta["camera_temperature"] == 41.5
    video = MosaicVideo(b2nd, camera())
    cube = video.cube(2)
    np.testing.assert_array_equal(cube.data, (bands + 2)[..., np.argsort(WAVELENGTHS)])
    assert cube.meta["timestamp"] == 0.08 and cube.meta["source"].endswith("rec.b2nd#2")
    with pytest.raises(HsisegError, match="frame 4 does not exist"):
        video.cube(4)


def test_white_and_dark_references_are_averaged_recordings(bands, tmp_path) -> None:
    shape = mosaic_frame(bands).shape
    write_recording(tmp_path / "white.b2nd", np.stack([np.full(shape, 900), np.full(shape, 1100)]).astype(np.uint16))
    write_recording(tmp_path / "dark.b2nd", np.full((3, *shape), 100, dtype=np.uint16))
    (tmp_path / "camera.yaml").write_text(yaml.safe_dump(
        {"mosaic": list(MOSAIC), "offset": list(OFFSET), "wavelengths": WAVELENGTHS, "white": "white.b2nd",
         "dark": "dark.b2nd"}))  # fmt: skip
    write_recording(tmp_path / "rec.b2nd", mosaic_frame(bands)[None])
    video = MosaicVideo(open_recording(tmp_path / "rec.b2nd"), CameraDescription.from_file(tmp_path / "camera.yaml"))
    expected = (bands[..., np.argsort(WAVELENGTHS)] - 100.0) / 900.0
    np.testing.assert_allclose(video.cube(0).data, expected, rtol=1e-6)


def test_damaged_recordings_fail_frame_by_frame(bands, tmp_path) -> None:
    frames = np.random.default_rng(2).integers(0, 1023, (6, 64, 64)).astype(np.uint16)
    write_recording(tmp_path / "rec.b2nd", frames)
    data = bytearray((tmp_path / "rec.b2nd").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 200] = bytes(b ^ 0xFF for b in data[middle : middle + 200])
    (tmp_path / "corrupt.b2nd").write_bytes(bytes(data))
    recording = open_recording(tmp_path / "corrupt.b2nd")
    outcomes = []
    for index in range(6):
        try:
            outcomes.append(bool((recording.raw(index) == frames[index]).all()))
        except HsisegError as error:
            assert f"corrupt.b2nd: frame {index} cannot be read" in str(error)
            outcomes.append(None)
    assert outcomes[0] is True and None in outcomes  # the damage is confined to some frames
    (tmp_path / "cut.b2nd").write_bytes((tmp_path / "rec.b2nd").read_bytes()[: len(data) * 2 // 3])
    with pytest.raises(HsisegError, match="cut.b2nd: not a readable Blosc2 recording"):
        open_recording(tmp_path / "cut.b2nd")
    with pytest.raises(HsisegError, match="not a recording hsiseg reads"):
        open_recording(tmp_path / "camera.yaml" if (tmp_path / "camera.yaml").exists() else tmp_path / "rec.b2nd",
                       format="avi")  # fmt: skip


def test_an_hdf5_stack_is_a_white_reference_too(bands, tmp_path) -> None:
    shape = mosaic_frame(bands).shape
    with h5py.File(tmp_path / "white.h5", "w") as handle:
        handle["frames"] = np.full((2, *shape), 1000, dtype=np.uint16)
    write_recording(tmp_path / "rec.b2nd", mosaic_frame(bands)[None])
    video = MosaicVideo(open_recording(tmp_path / "rec.b2nd"), camera(), white=tmp_path / "white.h5")
    np.testing.assert_allclose(video.cube(0).data, bands[..., np.argsort(WAVELENGTHS)] / 1000.0, rtol=1e-6)
