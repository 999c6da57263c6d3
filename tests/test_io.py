"""hsiseg.io: every format read from files written byte for byte or by third-party code, and every bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.io import savemat
from spectral.io import envi

from hsiseg import HsisegError, HsisegWarning
from hsiseg.io import Cube, detect_format, find_cubes, read_cube, write_cube
from hsiseg.io.tivita import WAVELENGTH_PRESETS

RNG = np.random.default_rng(7)


def small_cube(height: int = 6, width: int = 5, bands: int = 4) -> Cube:
    data = RNG.random((height, width, bands)).astype(np.float32)
    return Cube(data, np.linspace(500, 800, bands), {"source": "test", "patient": "P1"})


def tivita_bytes(stored: np.ndarray) -> bytes:
    """The DATA.md layout written by hand: (width, height, bands) big-endian int32, then big-endian float32."""
    width, height, bands = stored.shape
    return np.array([width, height, bands], dtype=">i4").tobytes() + stored.astype(">f4").tobytes()


# --- Tivita ----------------------------------------------------------------------------------------------


def test_tivita_layout_and_orientation(tmp_path: Path) -> None:
    stored = RNG.random((7, 3, 5)).astype(np.float32)  # (width, height, bands) as on disk
    path = tmp_path / "2021_SpecCube.dat"
    path.write_bytes(tivita_bytes(stored))
    cube = read_cube(path)
    assert cube.shape == (3, 7, 5) and cube.data.dtype == np.float32
    # DATA.md: reshape to the header shape, flip axis 1, swap axes 0 and 1
    np.testing.assert_array_equal(cube.data, np.flip(stored, axis=1).swapaxes(0, 1))
    # pixel (row r, column c) is stored at (c, H - 1 - r)
    assert cube.data[0, 2, 4] == stored[2, 2, 4] and cube.data[2, 6, 1] == stored[6, 0, 1]
    np.testing.assert_array_equal(cube.wavelengths, np.linspace(500, 1000, 5))
    assert detect_format(path) == "tivita"


def test_tivita_write_is_byte_exact(tmp_path: Path) -> None:
    original = tmp_path / "a_SpecCube.dat"
    original.write_bytes(tivita_bytes(RNG.random((8, 4, 6)).astype(np.float32)))
    copy = tmp_path / "b_SpecCube.dat"
    write_cube(copy, read_cube(original))
    assert copy.read_bytes() == original.read_bytes()


def test_tivita_full_size_file_length(tmp_path: Path) -> None:
    assert len(tivita_bytes(np.zeros((640, 480, 100), dtype=np.float32))) == 122_880_012


def test_tivita_wavelengths_preset_and_override(tmp_path: Path) -> None:
    path = tmp_path / "x_SpecCube.dat"
    path.write_bytes(tivita_bytes(np.ones((4, 3, 100), dtype=np.float32)))
    vendor = read_cube(path, wavelength_preset="tivita-vendor")
    np.testing.assert_array_equal(vendor.wavelengths, 500 + 5 * np.arange(100))
    custom = read_cube(path, wavelengths=np.arange(600, 700))
    assert custom.wavelengths[0] == 600
    assert set(WAVELENGTH_PRESETS) == {"tivita", "tivita-vendor"}
    with pytest.raises(HsisegError, match="unknown wavelength preset 'hyper'"):
        read_cube(path, wavelength_preset="hyper")


def test_tivita_sidecars(tmp_path: Path) -> None:
    from skimage.io import imsave

    path = tmp_path / "2020_01_01_SpecCube.dat"
    path.write_bytes(tivita_bytes(np.ones((640, 480, 2), dtype=np.float32)))
    (tmp_path / "2020_01_01_meta.log").write_text("[Camera]\nSerial = 42\nExposure = 3.5\n")
    imsave(tmp_path / "2020_01_01_RGB-Image.png", np.zeros((513, 646, 3), dtype=np.uint8), check_contrast=False)
    cube = read_cube(path)
    assert cube.meta["tivita"] == {"Camera": {"serial": "42", "exposure": "3.5"}}
    assert cube.meta["rgb_image"]["crop_rows"] == [30, -3]
    from hsiseg.io import read_tivita_rgb

    assert read_tivita_rgb(path).shape == (480, 640, 3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x00", "too short"),
        (
            np.array([4, 3, 2], dtype=">i4").tobytes() + b"\x00" * 40,
            r"truncated: 52 bytes, but the header \(4 x 3 x 2\) needs 108",
        ),
        (np.array([2, 1, 1], dtype=">i4").tobytes() + b"\x00" * 12, "oversized: 24 bytes"),
        (np.array([-5, 3, 2], dtype=">i4").tobytes(), "this is not a Tivita cube"),
    ],
)
def test_tivita_bad_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad_SpecCube.dat"
    path.write_bytes(content)
    with pytest.raises(HsisegError, match=f"{path}: .*{message}"):
        read_cube(path)


# --- ENVI, written by Spectral Python itself ----------------------------------------------------------------

ENVI_DTYPES = [np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64, np.float32, np.float64]


@pytest.mark.parametrize("interleave", ["bil", "bip", "bsq"])
@pytest.mark.parametrize("byte_order", [0, 1])
@pytest.mark.parametrize("dtype", ENVI_DTYPES)
def test_envi_written_by_spectral(tmp_path: Path, interleave: str, byte_order: int, dtype) -> None:
    data = (RNG.random((5, 4, 3)) * 100).astype(dtype)
    header = tmp_path / "scene.hdr"
    envi.save_image(
        str(header),
        data,
        interleave=interleave,
        byteorder=byte_order,
        metadata={"wavelength": ["0.5", "0.6", "0.7"], "wavelength units": "Micrometers"},
    )
    cube = read_cube(header)
    np.testing.assert_array_equal(cube.data, data.astype(np.float32))
    np.testing.assert_allclose(cube.wavelengths, [500, 600, 700])
    assert cube.meta["interleave"] == interleave and cube.meta["byte_order"] == byte_order
    # the data file works as the entry point too
    np.testing.assert_array_equal(read_cube(tmp_path / "scene.img").data, cube.data)


def test_envi_scale_factor_bad_bands_and_fwhm(tmp_path: Path) -> None:
    data = (RNG.random((3, 3, 4)) * 10000).astype(np.int16)
    header = tmp_path / "r.hdr"
    metadata = {
        "wavelength": ["400", "500", "600", "700"],
        "reflectance scale factor": "10000",
        "bbl": ["1", "0", "1", "1"],
        "fwhm": ["10", "10", "12", "12"],
    }
    envi.save_image(str(header), data, metadata=metadata, ext=".raw")
    cube = read_cube(header)
    np.testing.assert_allclose(cube.data, data[:, :, [0, 2, 3]].astype(np.float32) / 10000)
    np.testing.assert_array_equal(cube.wavelengths, [400, 600, 700])
    assert cube.meta["dropped_bad_bands"] == [1] and cube.meta["fwhm"] == [10, 10, 12, 12]
    assert read_cube(header, drop_bad_bands=False).num_bands == 4


def test_envi_write_round_trip(tmp_path: Path) -> None:
    cube = small_cube()
    for interleave in ("bil", "bip", "bsq"):
        path = write_cube(tmp_path / f"{interleave}.hdr", cube, interleave=interleave, byte_order=1)
        back = read_cube(path)
        np.testing.assert_array_equal(back.data, cube.data)
        np.testing.assert_array_equal(back.wavelengths, cube.wavelengths)
    assert not list(tmp_path.glob(".*part*"))


def envi_pair(tmp_path: Path) -> Path:
    header = tmp_path / "e.hdr"
    envi.save_image(str(header), np.ones((3, 3, 2), dtype=np.float32), metadata={"wavelength": ["1", "2"]})
    return header


def test_envi_missing_byte_order(tmp_path: Path) -> None:
    header = envi_pair(tmp_path)
    header.write_text("\n".join(line for line in header.read_text().splitlines() if "byte order" not in line))
    with pytest.raises(HsisegError, match="lacks 'byte order'; add 'byte order = 0'"):
        read_cube(header)


def test_envi_missing_data_file(tmp_path: Path) -> None:
    header = envi_pair(tmp_path)
    (tmp_path / "e.img").unlink()
    with pytest.raises(HsisegError, match=f"{header}: ENVI data file not found"):
        read_cube(header)


def test_envi_truncated_data(tmp_path: Path) -> None:
    header = envi_pair(tmp_path)
    data = tmp_path / "e.img"
    data.write_bytes(data.read_bytes()[:-8])
    with pytest.raises(HsisegError, match=r"e.img: ENVI data file is truncated: 64 bytes.*needs 72"):
        read_cube(header)


def test_envi_frame_offsets_and_no_wavelengths(tmp_path: Path) -> None:
    header = envi_pair(tmp_path)
    text = header.read_text()
    header.write_text(text + "major frame offsets = {0, 0}\n")
    with pytest.raises(HsisegError, match="frame offsets are not supported"):
        read_cube(header)
    header.write_text("\n".join(line for line in text.splitlines() if "wavelength" not in line))
    with pytest.raises(HsisegError, match="no 'wavelength' in the ENVI header; pass wavelengths"):
        read_cube(header)
    assert read_cube(header, wavelengths=[700, 800]).wavelengths[1] == 800


def test_envi_complex_data_is_refused(tmp_path: Path) -> None:
    header = tmp_path / "c.hdr"
    envi.save_image(str(header), np.ones((2, 2, 2), dtype=np.complex64), metadata={"wavelength": ["1", "2"]})
    with pytest.raises(HsisegError, match="complex ENVI data"):
        read_cube(header)


def test_envi_dat_data_file_is_not_tivita(tmp_path: Path) -> None:
    header = tmp_path / "scan.hdr"
    envi.save_image(str(header), np.ones((2, 2, 2), dtype=np.float32), metadata={"wavelength": ["1", "2"]}, ext=".dat")
    assert detect_format(tmp_path / "scan.dat") == "envi"
    assert find_cubes(tmp_path) == [header]


# --- HDF5 ------------------------------------------------------------------------------------------------


def test_hdf5_round_trip_is_exact(tmp_path: Path) -> None:
    cube = small_cube(70, 66, 9)
    path = write_cube(tmp_path / "c.h5", cube)
    back = read_cube(path)
    assert back.data.tobytes() == cube.data.tobytes()
    assert back.wavelengths.tobytes() == cube.wavelengths.tobytes()
    assert back.meta["patient"] == "P1"
    with h5py.File(path) as handle:
        assert handle["cube"].chunks == (64, 64, 9) and handle["cube"].compression == "gzip"


def test_hdf5_float16_storage(tmp_path: Path) -> None:
    cube = small_cube()
    back = read_cube(write_cube(tmp_path / "c.h5", cube, dtype="float16"))
    np.testing.assert_array_equal(back.data, cube.data.astype(np.float16).astype(np.float32))
    assert back.meta["stored_dtype"] == "float16"
    with pytest.raises(HsisegError, match="storage dtype must be one of"):
        write_cube(tmp_path / "d.h5", cube, dtype="int8")


def test_hdf5_foreign_layouts(tmp_path: Path) -> None:
    data = RNG.random((4, 6, 5)).astype(np.float32)  # stored (B, H, W)
    path = tmp_path / "foreign.hdf5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("scan/reflectance", data=data)
        handle.create_dataset("scan/wavelength", data=np.arange(4) * 10.0 + 400)
        handle.create_dataset("scan/mask", data=np.ones((6, 5)))
    cube = read_cube(path, axes="BHW")
    np.testing.assert_array_equal(cube.data, data.transpose(1, 2, 0))
    np.testing.assert_array_equal(cube.wavelengths, [400, 410, 420, 430])
    with h5py.File(path, "a") as handle:
        handle.create_dataset("other", data=np.zeros((2, 2, 2)))
        handle["scan/reflectance"].attrs["wavelengths"] = [1, 2, 3, 4]
    chosen = read_cube(path, axes="BHW")  # two 3-D datasets, one named like a cube
    assert chosen.meta["dataset"] == "/scan/reflectance" and chosen.wavelengths[0] == 1  # attribute wins
    with h5py.File(path, "a") as handle:
        handle.create_dataset("scan2/data", data=np.zeros((2, 2, 2)))
    with pytest.raises(HsisegError, match="cannot tell which dataset is the cube"):
        read_cube(path)
    with pytest.raises(HsisegError, match="no dataset 'nope'"):
        read_cube(path, dataset="nope")
    with pytest.raises(HsisegError, match="permutation of 'HWB'"):
        read_cube(path, dataset="other", axes="HWX")


def test_hdf5_without_wavelengths(tmp_path: Path) -> None:
    path = tmp_path / "bare.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = np.zeros((2, 2, 3))
    with pytest.raises(HsisegError, match="no wavelengths found"):
        read_cube(path)
    assert read_cube(path, wavelengths=[1, 2, 3]).num_bands == 3


# --- NumPy and MATLAB ------------------------------------------------------------------------------------


def test_npy_and_npz(tmp_path: Path) -> None:
    cube = small_cube()
    np.save(tmp_path / "c.npy", cube.data)
    np.testing.assert_array_equal(read_cube(tmp_path / "c.npy", wavelengths=cube.wavelengths).data, cube.data)
    with pytest.raises(HsisegError, match="holds no wavelengths"):
        read_cube(tmp_path / "c.npy")
    np.savez(tmp_path / "c.npz", data=cube.data.transpose(2, 0, 1), wavelengths=cube.wavelengths)
    np.testing.assert_array_equal(read_cube(tmp_path / "c.npz", axes="BHW").data, cube.data)


def test_mat_v5_and_2d_spectra_in_matlab_order(tmp_path: Path) -> None:
    cube = small_cube(3, 4, 5)
    savemat(tmp_path / "v5.mat", {"hsi": cube.data, "wavelength": cube.wavelengths, "label": np.eye(3)})
    back = read_cube(tmp_path / "v5.mat")
    np.testing.assert_array_equal(back.data, cube.data)
    assert back.meta["format"] == "mat-v5"
    # (bands, pixels) with pixels in MATLAB's column-major order, as reshape(hsi, [], bands)' gives
    spectra = cube.data.reshape(-1, 5, order="F").T
    savemat(tmp_path / "flat.mat", {"X": spectra, "wl": cube.wavelengths})
    np.testing.assert_array_equal(read_cube(tmp_path / "flat.mat", image_shape=(3, 4)).data, cube.data)
    with pytest.raises(HsisegError, match=r"does not hold 4 x 4 pixels of 5 bands"):
        read_cube(tmp_path / "flat.mat", image_shape=(4, 4))


def test_mat_v73_is_hdf5_and_column_major(tmp_path: Path) -> None:
    cube = small_cube(3, 4, 5)
    path = tmp_path / "v73.mat"
    with h5py.File(path, "w", userblock_size=512) as handle:  # how MATLAB lays out a -v7.3 file
        handle["cube"] = cube.data.transpose()  # MATLAB's column-major array as HDF5 sees it
        handle["wavelengths"] = cube.wavelengths[None, :].transpose()
    with open(path, "r+b") as raw:
        raw.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64")
    back = read_cube(path)
    np.testing.assert_array_equal(back.data, cube.data)
    assert back.meta["format"] == "mat-v7.3"


# --- values, wavelengths, detection ----------------------------------------------------------------------


def test_nonfinite_rules(tmp_path: Path) -> None:
    cube = small_cube()
    cube.data[0, 0, 0] = np.nan
    cube.data[1, 1, 1] = np.inf
    path = write_cube(tmp_path / "n.h5", cube)
    with pytest.warns(HsisegWarning, match="2 NaN/Inf values set to 0"):
        repaired = read_cube(path)
    assert repaired.data[0, 0, 0] == 0 and repaired.meta["nonfinite_set_to_zero"] == 2
    with pytest.raises(HsisegError, match="2 NaN/Inf values"):
        read_cube(path, nonfinite="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(read_cube(path, nonfinite="keep").data[0, 0, 0])


@pytest.mark.parametrize(
    ("wavelengths", "message"),
    [
        ([500, 600, 700], "3 wavelengths for 4 bands"),
        ([500, 600, 600, 700], r"band 2 \(600 nm\) follows 600 nm"),
        ([1, np.nan, 3, 4], "NaN"),
    ],
)
def test_bad_wavelengths(tmp_path: Path, wavelengths, message: str) -> None:
    np.save(tmp_path / "c.npy", np.zeros((2, 2, 4), dtype=np.float32))
    with pytest.raises(HsisegError, match=message):
        read_cube(tmp_path / "c.npy", wavelengths=wavelengths)


def test_detection_by_magic_and_unknown_files(tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", np.zeros((2, 2, 2), dtype=np.float32))
    renamed = tmp_path / "cube.bin"
    renamed.write_bytes((tmp_path / "c.npy").read_bytes())
    assert detect_format(renamed) == "npy"
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(HsisegError, match="unknown cube format"):
        read_cube(other)
    with pytest.raises(HsisegError, match="file not found"):
        read_cube(tmp_path / "missing.h5")
    with pytest.raises(HsisegError, match=r"the npy reader has no option\(s\) \['dataset'\]"):
        read_cube(tmp_path / "c.npy", wavelengths=[1, 2], dataset="x")


def test_reading_never_modifies_inputs(tmp_path: Path) -> None:
    path = tmp_path / "a_SpecCube.dat"
    content = tivita_bytes(RNG.random((4, 3, 2)).astype(np.float32))
    path.write_bytes(content)
    cube = read_cube(path)
    cube.data[:] = 0
    assert path.read_bytes() == content


def test_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    path = write_cube(tmp_path / "c.h5", small_cube())
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    with pytest.raises(OSError, match="disk full"):
        write_cube(path, small_cube())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.h5"]
