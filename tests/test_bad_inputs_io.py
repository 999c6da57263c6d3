"""Issue 12 (hospital data) for cube reading: every bad or oversized file is one clear error, never a traceback.

Huge cubes are written as SPARSE files (a header declaring the size, then ``truncate``) or as HDF5 datasets
whose storage is never allocated, so no test holds more than a few kilobytes; the memory limit is fixed by
patching the machine's physical memory, so no test depends on the machine it runs on.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.io import savemat
from spectral.io import envi
from typer.testing import CliRunner

from hsiseg import HsisegError, HsisegWarning
from hsiseg.io import CubeTooLargeError, limits, read_cube, write_cube
from hsiseg.io.cube import Cube
from hsiseg_cli.main import app

runner = CliRunner()
HUGE = (20000, 20000, 100)  # 160 GB as float32
GIB16 = 16 * 2**30


@pytest.fixture
def machine_16gb(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine has 16 GiB: the default limit is 8 GiB whatever the real machine has."""
    monkeypatch.setattr(limits, "physical_memory_bytes", lambda: GIB16)


def sparse_tivita(path: Path, width: int, height: int, bands: int) -> Path:
    """A Tivita file of the full declared length whose data are a hole: a few bytes on disk."""
    with open(path, "wb") as handle:
        np.array([width, height, bands], dtype=">i4").tofile(handle)
        handle.truncate(12 + 4 * width * height * bands)
    return path


def envi_pair(folder: Path, name: str = "e", shape: tuple[int, int, int] = (3, 4, 2)) -> Path:
    header = folder / f"{name}.hdr"
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1
    wavelengths = [str(500 + 10 * i) for i in range(shape[2])]
    envi.save_image(str(header), data, metadata={"wavelength": wavelengths}, interleave="bsq")
    return header


def set_header_field(header: Path, key: str, value: str) -> None:
    lines = [line for line in header.read_text().splitlines() if not line.lower().startswith(f"{key} ")]
    header.write_text("\n".join([*lines, f"{key} = {value}"]) + "\n")


def small_recordings(folder: Path) -> None:
    """Two good cubes: a Tivita file and an ENVI pair."""
    folder.mkdir(parents=True, exist_ok=True)
    write_cube(folder / "good_SpecCube.dat", Cube(np.ones((3, 2, 5), np.float32), np.linspace(500, 1000, 5)))
    envi_pair(folder, "good_envi")


def one_error_line(output: str, name: str) -> str:
    """The single ``hsiseg: error:`` line naming ``name`` (and no traceback anywhere)."""
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if name in line and "error" in line.lower()]
    assert len(lines) == 1, output
    return lines[0]


# --- item 6: files that used to stop a folder with an unexpected exception ----------------------------


def test_envi_with_zero_lines_is_refused(tmp_path: Path) -> None:
    header = envi_pair(tmp_path)
    set_header_field(header, "lines", "0")
    with pytest.raises(HsisegError, match=rf"{re.escape(str(header))}: ENVI 'lines' is '0'; write the number of"):
        read_cube(header)


def test_sparse_huge_tivita_is_refused_before_allocating(tmp_path: Path, machine_16gb: None) -> None:
    path = sparse_tivita(tmp_path / "huge_SpecCube.dat", 20000, 20000, 100)
    with pytest.raises(CubeTooLargeError, match=r"huge_SpecCube.dat: a 20000 x 20000 x 100 cube needs 160.0 GB"):
        read_cube(path)


def test_tiny_hdf5_declaring_a_huge_cube_is_refused(tmp_path: Path, machine_16gb: None) -> None:
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("cube", shape=HUGE, dtype="f4", chunks=(64, 64, 100))
        handle["wavelengths"] = np.linspace(500, 1000, 100)
    assert path.stat().st_size < 100_000
    with pytest.raises(CubeTooLargeError, match=r"huge.h5: a 20000 x 20000 x 100 cube needs 160.0 GB .* 8.6 GB"):
        read_cube(path)


def test_object_npz_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, cube=np.array([[[1.0]]], dtype=object), wavelengths=np.array([500.0]))
    for options in ({}, {"variable": "cube"}):
        with pytest.raises(HsisegError, match=r"objects.npz: variable 'cube' holds object values, not numbers"):
            read_cube(path, **options)
    np.savez(path, cube=np.ones((2, 2, 2)), notes=np.array([[["a"]]], dtype=object), wavelengths=np.arange(2.0))
    assert read_cube(path).shape == (2, 2, 2)  # the object array is never loaded
    with pytest.raises(HsisegError, match=r"no numeric variable 'cubes'.*\(not arrays of numbers, so not read: notes"):
        read_cube(path, variable="cubes")


def test_empty_cubes_are_refused_in_every_format(tmp_path: Path) -> None:
    np.save(tmp_path / "e.npy", np.ones((0, 3, 2), np.float32))
    with h5py.File(tmp_path / "e.h5", "w") as handle:
        handle["cube"] = np.ones((3, 0, 2), np.float32)
    savemat(tmp_path / "e.mat", {"cube": np.ones((3, 2, 0)), "wavelengths": np.arange(2.0)})
    for name, shape in (("e.npy", "0 x 3 x 2"), ("e.h5", "3 x 0 x 2"), ("e.mat", "3 x 2 x 0")):
        with pytest.raises(HsisegError, match=rf"{name}: the cube's shape is {shape}, which holds no values"):
            read_cube(tmp_path / name, wavelengths=[1, 2])


def make_bad_folder(folder: Path) -> dict[str, Path]:
    """A folder of two good cubes and every bad file of item 6, the Tivita and HDF5 ones huge but sparse."""
    small_recordings(folder)
    zero = envi_pair(folder, "zero_lines")
    set_header_field(zero, "lines", "0")
    huge_h5 = folder / "huge.h5"
    with h5py.File(huge_h5, "w") as handle:
        handle.create_dataset("cube", shape=HUGE, dtype="f4", chunks=(64, 64, 100))
        handle["wavelengths"] = np.linspace(500, 1000, 100)
    objects = folder / "objects.npz"
    np.savez(objects, cube=np.array([[[1.0]]], dtype=object), wavelengths=np.array([500.0]))
    return {
        "zero_lines.hdr": zero,
        "huge_SpecCube.dat": sparse_tivita(folder / "huge_SpecCube.dat", *HUGE),
        "huge.h5": huge_h5,
        "objects.npz": objects,
    }


def test_info_over_a_folder_reports_each_bad_file_and_goes_on(tmp_path: Path, machine_16gb: None) -> None:
    bad = make_bad_folder(tmp_path)
    result = runner.invoke(app, ["info", str(tmp_path)])
    assert result.exit_code == 2
    for name in bad:
        assert one_error_line(result.output, name).startswith("hsiseg: error: ")
    assert "zero_lines.hdr: ENVI 'lines' is '0'" in result.output
    assert "160.0 GB" in one_error_line(result.output, "huge_SpecCube.dat")
    assert "--max-cube-gb" in one_error_line(result.output, "huge.h5")
    assert "good_SpecCube.dat" in result.output and "good_envi.hdr" in result.output  # still listed


def test_convert_over_a_folder_reports_each_bad_file_and_goes_on(tmp_path: Path, machine_16gb: None) -> None:
    bad = make_bad_folder(tmp_path / "in")
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert f"converted 2 of {2 + len(bad)} cubes" in result.output and f"{len(bad)} failed" in result.output
    for name in bad:
        assert len([line for line in result.output.splitlines() if name in line]) == 1, result.output
    assert (tmp_path / "out" / "good_SpecCube.h5").is_file() and (tmp_path / "out" / "good_envi.h5").is_file()


def test_an_unexpected_reader_exception_is_one_line_and_the_batch_goes_on(tmp_path: Path, monkeypatch) -> None:
    from hsiseg.io import READERS

    small_recordings(tmp_path / "in")

    def broken(path: Path, **options: object) -> Cube:
        raise RuntimeError("Calculated padded input size per channel: (0 x 4)\nmore detail")

    monkeypatch.setitem(READERS, "tivita", broken)
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "converted 1 of 2 cubes" in result.output
    line = one_error_line(result.output.replace("failed:", "error:"), "good_SpecCube.dat")
    assert "cannot be read (RuntimeError: Calculated padded input size" in line and "more detail" not in line
    info = runner.invoke(app, ["info", str(tmp_path / "in")])
    assert info.exit_code == 2 and "Traceback" not in info.output and "good_envi.hdr" in info.output


# --- item 7: the memory limit, for every format, before allocating --------------------------------------


def test_default_limit_is_half_the_memory_with_a_fallback(monkeypatch) -> None:
    monkeypatch.setattr(limits, "physical_memory_bytes", lambda: GIB16)
    assert limits.default_max_bytes() == 8 * 2**30 and limits.resolve_max_bytes(None) == 8 * 2**30
    monkeypatch.setattr(limits, "physical_memory_bytes", lambda: None)
    assert limits.default_max_bytes() == limits.FALLBACK_MAX_BYTES
    monkeypatch.undo()

    def no_sysconf(name: str) -> int:
        raise ValueError(f"unrecognized configuration name {name}")

    monkeypatch.setattr(limits.os, "sysconf", no_sysconf)
    assert limits.physical_memory_bytes() is None


@pytest.mark.parametrize("bad", [0, -5, "lots", True, float("nan")])
def test_max_bytes_must_be_a_positive_number(tmp_path: Path, bad: object) -> None:
    np.save(tmp_path / "c.npy", np.ones((2, 2, 2), np.float32))
    with pytest.raises(HsisegError, match="option 'max_bytes' must be a positive number of bytes"):
        read_cube(tmp_path / "c.npy", wavelengths=[1, 2], max_bytes=bad)


def sparse_npy(path: Path, shape: tuple[int, ...]) -> Path:
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": shape})
        handle.truncate(handle.tell() + 4 * int(np.prod(shape)))
    return path


def npz_declaring(path: Path, shape: tuple[int, ...]) -> Path:
    """A .npz whose cube member's header declares ``shape`` but holds no data (nothing can load it)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    wavelengths = io.BytesIO()
    np.save(wavelengths, np.linspace(500, 1000, shape[-1]))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cube.npy", header.getvalue())
        archive.writestr("wavelengths.npy", wavelengths.getvalue())
    return path


def test_every_format_checks_the_declared_size_first(tmp_path: Path, machine_16gb: None) -> None:
    npy = sparse_npy(tmp_path / "huge.npy", HUGE)
    with pytest.raises(CubeTooLargeError, match=r"huge.npy: a 20000 x 20000 x 100 cube needs 160.0 GB"):
        read_cube(npy, wavelengths=np.arange(100.0))
    npz = npz_declaring(tmp_path / "huge.npz", HUGE)
    # float64 stored: the raw values (8 bytes) are held besides the float32 cube (4 bytes)
    with pytest.raises(CubeTooLargeError, match=r"huge.npz: a 20000 x 20000 x 100 cube needs 480.0 GB"):
        read_cube(npz)
    v73 = tmp_path / "huge.mat"
    with h5py.File(v73, "w", userblock_size=512) as handle:
        handle.create_dataset("cube", shape=HUGE[::-1], dtype="f8", chunks=(100, 64, 64))
        handle["wavelengths"] = np.linspace(500, 1000, 100)[:, None]
    with pytest.raises(CubeTooLargeError, match=r"huge.mat: a 20000 x 20000 x 100 cube needs 480.0 GB"):
        read_cube(v73)
    header = envi_pair(tmp_path, "huge_envi")
    for key, value in (("lines", "20000"), ("samples", "20000"), ("bands", "100")):
        set_header_field(header, key, value)
    set_header_field(header, "wavelength", "{" + ", ".join(str(500 + i) for i in range(100)) + "}")
    with open(tmp_path / "huge_envi.img", "r+b") as handle:
        handle.truncate(4 * int(np.prod(HUGE)))
    with pytest.raises(CubeTooLargeError, match=r"huge_envi.hdr: a 20000 x 20000 x 100 cube needs 160.0 GB"):
        read_cube(header)


def test_mat_v5_size_is_checked_from_whosmat_before_loading(tmp_path: Path, monkeypatch) -> None:
    import scipy.io

    path = tmp_path / "c.mat"
    savemat(path, {"cube": np.ones((4, 5, 6)), "wavelengths": np.arange(6.0)})

    def no_loading(*args: object, **kwargs: object) -> dict:
        raise AssertionError("loadmat must not be called for a cube over the limit")

    monkeypatch.setattr(scipy.io, "loadmat", no_loading)
    # 120 float64 values: 8 bytes raw + 4 bytes float32 each = 1440 bytes
    with pytest.raises(CubeTooLargeError, match=r"c.mat: a 4 x 5 x 6 cube needs 0.0 GB .* \(max_bytes\)"):
        read_cube(path, max_bytes=1439)
    monkeypatch.undo()
    assert read_cube(path, max_bytes=1440).shape == (4, 5, 6)


def test_the_limit_counts_exactly_float32_plus_a_raw_copy(tmp_path: Path) -> None:
    cube = Cube(np.ones((4, 5, 6), np.float32), np.arange(6.0) + 500)
    tivita = write_cube(tmp_path / "t_SpecCube.dat", cube)  # memory-mapped: float32 only
    assert read_cube(tivita, max_bytes=480).shape == (4, 5, 6)
    with pytest.raises(CubeTooLargeError):
        read_cube(tivita, max_bytes=479)
    h5 = write_cube(tmp_path / "c.h5", cube, dtype="float16")  # 2 raw bytes + 4 float32 bytes per value
    assert read_cube(h5, max_bytes=720).shape == (4, 5, 6)
    with pytest.raises(CubeTooLargeError):
        read_cube(h5, max_bytes=719)


def test_cli_max_cube_gb(tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", np.ones((20, 20, 10), np.float32))  # 16000 bytes as float32
    args = ["info", str(tmp_path / "c.npy"), "-O", "wavelengths=[1,2,3,4,5,6,7,8,9,10]"]
    refused = runner.invoke(app, [*args, "--max-cube-gb", "0.00001"])
    assert refused.exit_code == 2
    line = one_error_line(refused.output, "c.npy")
    assert "c.npy: a 20 x 20 x 10 cube needs 0.0 GB of memory to read, more than the 0.0 GB allowed" in line
    assert line.endswith("(--max-cube-gb sets the limit)")
    assert runner.invoke(app, [*args, "--max-cube-gb", "0.001"]).exit_code == 0
    out = tmp_path / "out"
    convert = runner.invoke(app, ["convert", *args[1:], "-o", str(out), "--max-cube-gb", "0.00001"])
    assert convert.exit_code == 2 and "1 failed" in convert.output and "--max-cube-gb sets the limit" in convert.output


# --- item 8: ENVI header fields ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("lines", "-3", "ENVI 'lines' is '-3'; write the number of image rows, a whole number > 0"),
        ("lines", "ninety-six", "ENVI 'lines' is 'ninety-six'; write the number of image rows"),
        ("samples", "0", "ENVI 'samples' is '0'; write the number of image columns"),
        ("bands", "2.5", "ENVI 'bands' is '2.5'; write the number of bands, a whole number > 0 in digits"),
        ("header offset", "-4", "ENVI 'header offset' is '-4'; write the number of bytes before the data"),
        ("header offset", "many", "ENVI 'header offset' is 'many'"),
        ("byte order", "2", "ENVI 'byte order' is '2'; write 'byte order = 0' .* or 'byte order = 1'"),
        ("interleave", "bsp", "ENVI 'interleave' is 'bsp'; write 'interleave = bsq'"),
        ("reflectance scale factor", "0", "ENVI 'reflectance scale factor' is '0'; write the stored value that"),
        ("reflectance scale factor", "-10000", "ENVI 'reflectance scale factor' is '-10000'"),
        ("reflectance scale factor", "ten", "ENVI 'reflectance scale factor' is 'ten'"),
        ("data type", "7", "unknown ENVI 'data type' '7'; write one of 1, 2, 3, 4, 5, 6, 9, 12, 13, 14, 15"),
    ],
)
def test_bad_envi_header_fields(tmp_path: Path, key: str, value: str, expected: str) -> None:
    header = envi_pair(tmp_path)
    set_header_field(header, key, value)
    before = {path: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(HsisegError, match=rf"^{re.escape(str(header))}: {expected}") as caught:
        read_cube(header)
    assert "\n" not in str(caught.value)
    assert {path: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_envi_data_file_longer_than_the_header_says_is_a_warning(tmp_path: Path) -> None:
    header = envi_pair(tmp_path)
    expected = read_cube(header).data
    with open(tmp_path / "e.img", "ab") as handle:
        handle.write(b"\x00" * 10)
    with pytest.warns(HsisegWarning, match=r"e.img: ENVI data file has 106 bytes, 10 more than the header"):
        cube = read_cube(header)
    np.testing.assert_array_equal(cube.data, expected)


def test_envi_scale_factor_on_float32_data_does_not_write_to_the_file(tmp_path: Path) -> None:
    header = tmp_path / "r.hdr"
    stored = np.full((2, 3, 2), 5000.0, np.float32)
    envi.save_image(str(header), stored, metadata={"wavelength": ["1", "2"], "reflectance scale factor": "10000"})
    cube = read_cube(header)  # used to fail: "output array is read-only"
    np.testing.assert_allclose(cube.data, 0.5)


def test_info_refuses_zero_lines(tmp_path: Path) -> None:
    header = envi_pair(tmp_path)
    set_header_field(header, "lines", "0")
    result = runner.invoke(app, ["info", str(header)])
    assert result.exit_code == 2
    assert one_error_line(result.output, "e.hdr") == (
        f"hsiseg: error: {header}: ENVI 'lines' is '0'; write the number of image rows, a whole number > 0 in "
        "digits (e.g. 'lines = 480')"
    )


# --- item 14: scale and offset -------------------------------------------------------------------------------


def test_scale_and_offset_for_counts(tmp_path: Path) -> None:
    counts = np.array([[[0, 0], [2000, 4000]], [[10000, 5000], [0, 1]]], dtype=np.uint16)
    path = tmp_path / "counts.npy"
    np.save(path, counts)
    before = path.read_bytes()
    cube = read_cube(path, wavelengths=[500, 600], scale=1e-4, offset=0.01)
    expected = counts.astype(np.float32) * np.float32(1e-4) + np.float32(0.01)
    expected[0, 0] = 0  # a pixel of zeros in the file stays 0 (no spectrum, still invalid)
    np.testing.assert_allclose(cube.data, expected, rtol=1e-6)
    assert cube.data[1, 1, 0] == pytest.approx(0.01)  # one zero band of a pixel with signal is shifted
    assert cube.meta["scale"] == 1e-4 and cube.meta["offset"] == 0.01
    assert "scale" not in read_cube(path, wavelengths=[500, 600]).meta
    assert path.read_bytes() == before


def test_scale_of_a_memory_mapped_float32_file_never_writes_to_it(tmp_path: Path) -> None:
    path = tmp_path / "c.npy"
    np.save(path, np.full((2, 2, 2), 3.0, np.float32))
    before = path.read_bytes()
    assert read_cube(path, wavelengths=[1, 2], scale=2).data[0, 0, 0] == 6.0
    assert path.read_bytes() == before


def test_scale_combines_with_the_envi_reflectance_scale_factor(tmp_path: Path) -> None:
    header = tmp_path / "r.hdr"
    stored = np.full((2, 2, 2), 5000, np.int16)
    envi.save_image(str(header), stored, metadata={"wavelength": ["1", "2"], "reflectance scale factor": "10000"})
    cube = read_cube(header, scale=2.0, offset=-0.5)
    np.testing.assert_allclose(cube.data, 5000 / 10000 * 2.0 - 0.5)  # stored / factor * scale + offset
    assert cube.meta["reflectance_scale_factor"] == 10000 and cube.meta["scale"] == 2.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scale": 0}, "'scale' must be greater than 0"),
        ({"scale": "x"}, "'scale' must be a finite number"),
        ({"offset": float("inf")}, "'offset' must be a finite number"),
    ],
)
def test_bad_scale_or_offset(tmp_path: Path, options: dict, message: str) -> None:
    np.save(tmp_path / "c.npy", np.ones((2, 2, 2), np.float32))
    with pytest.raises(HsisegError, match=message):
        read_cube(tmp_path / "c.npy", wavelengths=[1, 2], **options)


def test_cli_scale_option_written_as_yaml_text(tmp_path: Path) -> None:
    import json

    np.save(tmp_path / "c.npy", np.full((2, 2, 2), 2000, np.uint16))
    result = runner.invoke(
        app, ["info", str(tmp_path / "c.npy"), "--json", "-O", "wavelengths=[1, 2]", "-O", "scale=1e-4"]
    )  # YAML reads 1e-4 as text
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["value_min"] == pytest.approx(0.2) and summary["value_max"] == pytest.approx(0.2)


# --- item 15: wavelengths from a file -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("bands.txt", "500 600\n700,800\n"),
        ("bands.txt", "# band centres, nm\n500;600;700;800\n"),
        ("bands.csv", "wavelength_nm\n500\n600\n700\n800\n"),
        ("bands.npy", None),
    ],
)
def test_wavelengths_file_for_every_format(tmp_path: Path, name: str, content: str | None) -> None:
    bands = tmp_path / name
    if content is None:
        np.save(bands, np.array([500, 600, 700, 800]))
    else:
        bands.write_text(content)
    data = np.random.default_rng(0).random((3, 2, 4)).astype(np.float32)
    np.save(tmp_path / "c.npy", data)
    np.savez(tmp_path / "c.npz", cube=data)
    savemat(tmp_path / "c.mat", {"cube": data})
    with h5py.File(tmp_path / "c.h5", "w") as handle:
        handle["cube"] = data
    envi.save_image(str(tmp_path / "e.hdr"), data)
    write_cube(tmp_path / "t_SpecCube.dat", Cube(data, np.arange(4.0)))
    for cube_file in ("c.npy", "c.npz", "c.mat", "c.h5", "e.hdr", "t_SpecCube.dat"):
        cube = read_cube(tmp_path / cube_file, wavelengths=f"@{bands}")
        np.testing.assert_array_equal(cube.wavelengths, [500, 600, 700, 800])
        np.testing.assert_array_equal(cube.data, data)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.txt", None, "missing.txt: wavelengths file not found"),
        ("bad.txt", "500 600\n700 eight hundred\n", r"bad.txt: line 2: 'eight' is not a number"),
        ("wide.csv", "500,600\n700,800\n", "wide.csv: line 1 has 2 columns; a wavelengths .csv has one column"),
        ("empty.txt", "# nothing\n", "empty.txt: wavelengths file holds no numbers"),
        ("short.txt", "500 600 700", "3 wavelengths for 4 bands"),
        ("binary.txt", b"\xff\xfe\x00\x81", "binary.txt: wavelengths file is not text"),
    ],
)
def test_bad_wavelengths_files(tmp_path: Path, name: str, content: str | bytes | None, message: str) -> None:
    if isinstance(content, str):
        (tmp_path / name).write_text(content)
    elif isinstance(content, bytes):
        (tmp_path / name).write_bytes(content)
    np.save(tmp_path / "c.npy", np.ones((2, 2, 4), np.float32))
    with pytest.raises(HsisegError, match=message):
        read_cube(tmp_path / "c.npy", wavelengths=f"@{tmp_path / name}")


def test_wavelengths_as_plain_text_is_one_clear_error(tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", np.ones((2, 2, 2), np.float32))
    with pytest.raises(HsisegError, match=r"wavelengths must be numbers in nm .*'@file'.*got 'bands.txt'"):
        read_cube(tmp_path / "c.npy", wavelengths="bands.txt")


def test_cli_wavelengths_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "bands.txt").write_text("510\n520\n530\n")
    np.save(tmp_path / "c.npy", np.ones((2, 2, 3), np.float32))
    result = runner.invoke(app, ["info", str(tmp_path / "c.npy"), "--json", "-O", f"wavelengths=@{tmp_path}/bands.txt"])
    assert result.exit_code == 0, result.output
    assert '"wavelength_min_nm": 510.0' in result.output and '"wavelength_max_nm": 530.0' in result.output
    missing = runner.invoke(app, ["info", str(tmp_path / "c.npy"), "-O", "wavelengths=@nowhere.txt"])
    assert missing.exit_code == 2
    assert one_error_line(missing.output, "nowhere.txt").startswith("hsiseg: error: nowhere.txt: wavelengths file")


# --- item 16: info without wavelengths ------------------------------------------------------------------------


def test_info_without_wavelengths_shows_shape_dtype_and_values(tmp_path: Path) -> None:
    import json

    data = np.linspace(0.1, 0.9, 24, dtype=np.float32).reshape(2, 3, 4)
    np.save(tmp_path / "a.npy", data)
    savemat(tmp_path / "b.mat", {"cube": data.astype(np.float64)})
    with h5py.File(tmp_path / "c.h5", "w") as handle:
        handle["cube"] = data
    envi.save_image(str(tmp_path / "d.hdr"), data)
    result = runner.invoke(app, ["info", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summaries = {Path(s["path"]).name: s for s in map(json.loads, result.output.splitlines())}
    assert set(summaries) == {"a.npy", "b.mat", "c.h5", "d.hdr"}
    for summary in summaries.values():
        assert summary["shape"] == [2, 3, 4] and summary["wavelength_min_nm"] is None
        assert summary["value_min"] == pytest.approx(0.1) and summary["value_max"] == pytest.approx(0.9)
    assert summaries["b.mat"]["stored_dtype"] == "float64" and summaries["a.npy"]["stored_dtype"] == "float32"
    table = runner.invoke(app, ["info", str(tmp_path / "b.mat")])
    assert table.exit_code == 0, table.output
    assert "mat-v5, float64" in table.output and "2 x 3 x 4" in table.output and "0.1 .. 0.9" in table.output


def test_npy_with_nonfinite_values_is_repaired_without_touching_the_file(tmp_path: Path) -> None:
    path = tmp_path / "n.npy"
    np.save(path, np.array([[[np.nan, 1.0]]], dtype=np.float32))
    before = path.read_bytes()
    with pytest.warns(HsisegWarning, match="1 NaN/Inf values set to 0"):
        cube = read_cube(path, wavelengths=[1, 2])
    assert cube.data[0, 0, 0] == 0 and path.read_bytes() == before
