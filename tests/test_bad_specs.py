"""Hospital data that must fail with one clear line, never a traceback (issue 12, items 9 and 13): broken spec
files, unknown split ids, annotations that are no image, pickled or oversized annotations, and the rule that
relative sample paths stay inside the spec's root folder."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from hsiseg import HsisegError
from hsiseg.annotations import read_label_image, read_strokes
from hsiseg.annotations.writers import write_label_image
from hsiseg.dataset.spec import DataSpec, leaves_folder
from hsiseg.dataset.spec_check import check_spec
from hsiseg.dataset.splits import read_htc_folds
from hsiseg.io.images import MAX_IMAGE_PIXELS, load_image
from hsiseg.tree import LabelTree
from hsiseg_cli.main import app

TREE = {"name": "tissue", "children": ["artery", "vein"]}
SHAPE = (6, 8, 5)


def write_small_data(folder: Path, subjects: int = 3) -> dict:
    """``subjects`` samples (one per subject) with .npy cubes and code + 1 scribble PNGs; returns the spec."""
    samples = []
    for number in range(subjects):
        sample_id = f"s{number}"
        cube = np.random.default_rng(number).uniform(0, 1, SHAPE).astype(np.float32)
        (folder / "cubes").mkdir(parents=True, exist_ok=True)
        np.save(folder / "cubes" / f"{sample_id}.npy", cube)
        scribbles = np.full(SHAPE[:2], -100, dtype=np.int32)
        scribbles[1, 1:4], scribbles[4, 2:6] = 0, 1  # artery, vein
        write_label_image(folder / "scribbles" / f"{sample_id}.png", scribbles)
        cube_file, scribble_file = f"cubes/{sample_id}.npy", f"scribbles/{sample_id}.png"
        samples.append({"id": sample_id, "subject": f"p{number}", "cube": cube_file, "annotations": [scribble_file]})
    return {
        "name": "small",
        "label_tree": TREE,
        "reader": {"wavelengths": [500.0, 550.0, 600.0, 650.0, 700.0]},
        "annotations": {"format": "label-image", "ignore_value": 0, "labels": {1: "artery", 2: "vein"}},
        "samples": samples,
        "splits": {"train": ["s0"], "val": ["s1"], "test": ["s2"]},
    }


def save_spec(folder: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def run_check(spec: Path) -> tuple[int, list[str]]:
    """Exit code and output lines of ``hsiseg check SPEC``; fails the test on an uncaught exception."""
    result = CliRunner().invoke(app, ["check", str(spec)])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output.strip().splitlines()


def assert_one_error_line(spec: Path, *fragments: str) -> None:
    """``hsiseg check`` stops with exit code 2 and exactly one ``hsiseg: error:`` line holding ``fragments``."""
    code, lines = run_check(spec)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("hsiseg: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0]


def assert_check_problem(spec: Path, *fragments: str) -> None:
    """``hsiseg check`` lists a problem line with ``fragments`` and ends with exit code 2."""
    code, lines = run_check(spec)
    assert code == 2
    assert any(line.startswith("problem: ") and all(f in line for f in fragments) for line in lines), lines
    assert lines[-1] == f"hsiseg: error: {spec}: 1 problem"


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header promises ``width`` x ``height`` pixels, with a few bytes of data (a decompression bomb's
    header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    data = zlib.compress(b"\x00" * 1024)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, dict]:
    return tmp_path, write_small_data(tmp_path)


def test_the_small_spec_is_valid(small) -> None:
    folder, spec = small
    path = save_spec(folder, spec)
    assert check_spec(DataSpec.from_file(path)).problems == []
    code, lines = run_check(path)
    assert code == 0 and lines[-1] == f"{path}: ok"


# --- the spec file ------------------------------------------------------------------------------------------


def test_a_spec_that_is_not_utf8_names_the_line(small) -> None:
    folder, spec = small
    path = save_spec(folder, spec)
    path.write_bytes(path.read_bytes().replace(b"name: small", b"name: small\ndescription: Universit\xe9tsklinik"))
    with pytest.raises(HsisegError, match=r"spec.yaml: line 2: byte 0xe9 is not UTF-8 text; save the spec as UTF-8"):
        DataSpec.from_file(path)
    assert_one_error_line(path, str(path), "line 2", "save the spec as UTF-8")


def test_other_text_files_that_are_not_utf8(tmp_path: Path) -> None:
    def latin1(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_bytes(text.encode("latin-1"))
        return path

    tree = LabelTree.from_dict(TREE)
    readers = [
        ("label tree", lambda: LabelTree.from_file(latin1("tree.yaml", "name: Universitätsklinik\n"))),
        ("fold file", lambda: read_htc_folds(latin1("folds.json", '[{"fold_name": "Universität"}]'))),
        ("strokes file", lambda: read_strokes(latin1("s.json", '{"strokes": [], "by": "Universität"}'), tree, (4, 4))),
    ]
    for kind, read in readers:
        with pytest.raises(HsisegError, match=rf"line 1: byte 0xe4 is not UTF-8 text; save the {kind} as UTF-8"):
            read()


def test_a_utf8_spec_with_a_byte_order_mark_loads(small) -> None:
    folder, spec = small
    path = save_spec(folder, spec)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert DataSpec.from_file(path).name == "small"


@pytest.mark.parametrize("split", ["test", "train"])
def test_an_unknown_sample_in_a_split_with_folds(small, split: str) -> None:
    folder, spec = small
    spec["samples"] += [dict(spec["samples"][0], id="s3", subject="p3")]
    spec["splits"] = {"folds": 2, "test": ["s2", "nobody"]}
    if split == "train":  # folds and lists together: the schema's error, which names the field
        spec["splits"]["train"] = ["nobody"]
    path = save_spec(folder, spec)
    expected = r"splits \(test\) name unknown samples \['nobody'\]" if split == "test" else "give exactly one of"
    with pytest.raises(HsisegError, match=expected):
        DataSpec.from_file(path)
    assert_one_error_line(path, str(path), "nobody" if split == "test" else "splits")


def test_every_sample_in_test_names_the_spec(small) -> None:
    folder, spec = small
    spec["splits"] = {"folds": 2, "test": ["s0", "s1", "s2"]}
    path = save_spec(folder, spec)
    with pytest.raises(HsisegError, match=r"spec.yaml: splits: every sample is in 'test'"):
        DataSpec.from_file(path)
    assert_one_error_line(path, str(path), "every sample is in 'test'", "keep 2 or more subjects out of it")


def test_too_many_folds_names_the_spec(small) -> None:
    folder, spec = small
    spec["splits"] = {"folds": 5, "test": ["s2"]}
    path = save_spec(folder, spec)
    with pytest.raises(HsisegError, match=r"spec.yaml: splits: 'folds' must be between 2 and the number of subjects"):
        DataSpec.from_file(path)


# --- annotation files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("s2.png", b"name: this is a YAML file, not an image\n"),
        ("s2.png", b"\x89PNG\r\n\x1a\n\x00\x00"),  # a truncated PNG (SyntaxError inside Pillow)
        ("s2.tif", b"II*\x00"),  # a truncated TIFF (struct.error inside tifffile)
        ("s2.png", b"GIF89a\x01"),
    ],
)
def test_an_annotation_that_is_not_an_image(small, name: str, content: bytes) -> None:
    folder, spec = small
    bad = folder / "scribbles" / name
    bad.write_bytes(content)
    spec["samples"][2]["annotations"] = [f"scribbles/{name}"]  # s2 is the test sample: its only problem
    path = save_spec(folder, spec)
    with pytest.raises(HsisegError, match="not a readable image") as error:
        read_label_image(bad, LabelTree.from_dict(TREE), {1: "artery"})
    assert str(error.value).startswith(str(bad)) and "\n" not in str(error.value)
    assert_check_problem(path, "sample s2", str(bad), "not a readable image", "PNG, TIFF or NPY label images")


def test_an_object_npy_annotation_is_refused_unread(small, monkeypatch) -> None:
    folder, spec = small
    bad = folder / "scribbles" / "s2.npy"
    np.save(bad, np.array([[1, None], [{"x": 1}, 2]], dtype=object), allow_pickle=True)
    spec["samples"][2]["annotations"] = ["scribbles/s2.npy"]
    path = save_spec(folder, spec)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("pickle.load called")

    monkeypatch.setattr("pickle.load", no_unpickling)
    monkeypatch.setattr("pickle.loads", no_unpickling)
    with pytest.raises(HsisegError, match=r"s2.npy: holds Python objects \(dtype object\), which hsiseg never"):
        load_image(bad)
    assert_check_problem(path, "sample s2", str(bad), "never unpickles", "integer array")


def test_an_integer_npy_annotation_reads(small) -> None:
    folder, spec = small
    values = np.zeros(SHAPE[:2], dtype=np.int16)
    values[2, 3] = 2
    np.save(folder / "scribbles" / "s0.npy", values)
    spec["samples"][0]["annotations"] = ["scribbles/s0.npy"]
    label_map = DataSpec.from_file(save_spec(folder, spec)).read_annotation("s0")
    assert label_map[2, 3] == LabelTree.from_dict(TREE).index("vein") and (label_map != -100).sum() == 1


def test_a_truncated_npy_annotation(small) -> None:
    folder, _ = small
    bad = folder / "scribbles" / "s0.npy"
    np.save(bad, np.zeros(SHAPE[:2], dtype=np.int32))
    bad.write_bytes(bad.read_bytes()[:-20])
    with pytest.raises(HsisegError, match=r"s0.npy: not a readable NPY file"):
        load_image(bad)
    bad.write_bytes(b"not numpy at all")
    with pytest.raises(HsisegError, match=r"s0.npy: not an NPY file"):
        load_image(bad)


def test_a_decompression_bomb_is_refused_with_its_pixel_count(small) -> None:
    folder, spec = small
    bomb = folder / "scribbles" / "s2.png"
    png_header_only(bomb, 100_000, 100_000)
    path = save_spec(folder, spec)
    message = f"100000 x 100000 image with 10,000,000,000 pixels, more than the {MAX_IMAGE_PIXELS:,}"
    with pytest.raises(HsisegError, match=message):
        load_image(bomb)
    assert_check_problem(path, str(bomb), message, "decompression bomb", "crop or downsample it")


def test_the_pixel_limit_is_a_parameter(small) -> None:
    folder, _ = small
    image = folder / "scribbles" / "s0.png"
    assert load_image(image).shape == SHAPE[:2]
    with pytest.raises(HsisegError, match=r"6 x 8 image with 48 pixels, more than the 47"):
        load_image(image, max_pixels=47)
    np.save(folder / "big.npy", np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(HsisegError, match=r"10 x 10 image with 100 pixels"):
        load_image(str(folder / "big.npy"), max_pixels=99)


# --- the paths policy ---------------------------------------------------------------------------------------


def test_relative_paths_must_stay_inside_root(small) -> None:
    folder, spec = small
    (folder / "specs").mkdir()
    spec["samples"][1]["annotations"] = ["scribbles/s1.png", "../../etc/s1.png"]
    path = save_spec(folder / "specs", dict(spec, root=".."))
    message = (
        f"{path}: sample 's1' (annotations.1): '../../etc/s1.png' leads outside the spec's root folder {folder}; "
        "move the file below it, or write its absolute path if it must live there"
    )
    with pytest.raises(HsisegError) as error:
        DataSpec.from_file(path)
    assert str(error.value) == message
    assert_one_error_line(path, message)


@pytest.mark.parametrize(("field", "written"), [("cube", "cubes/../../s0.npy"), ("truth", "../truth.png")])
def test_every_sample_path_is_checked(small, field: str, written: str) -> None:
    folder, spec = small
    spec["samples"][0][field] = written
    with pytest.raises(HsisegError, match=rf"sample 's0' \({field}\): '{written}' leads outside"):
        DataSpec.from_file(save_spec(folder, spec))


def test_a_fold_file_outside_root_is_refused(small) -> None:
    folder, spec = small
    spec["splits"] = {"fold_file": "../folds.json"}
    with pytest.raises(HsisegError, match=r"splits.fold_file '../folds.json' leads outside the spec's root folder"):
        DataSpec.from_file(save_spec(folder, spec))


def test_absolute_paths_outside_root_are_allowed(tmp_path: Path) -> None:
    data = tmp_path / "hospital-store"
    spec = write_small_data(data)
    for sample in spec["samples"]:
        sample["cube"] = str(data / sample["cube"])
        sample["annotations"] = [str(data / a) for a in sample["annotations"]]
    (tmp_path / "project").mkdir()
    path = save_spec(tmp_path / "project", spec)
    loaded = DataSpec.from_file(path)
    assert check_spec(loaded).problems == []
    assert loaded.read_cube("s0").shape == SHAPE


def test_dotted_paths_that_stay_inside_are_allowed(small) -> None:
    folder, spec = small
    spec["samples"][0]["cube"] = "cubes/../cubes/./s0.npy"
    assert DataSpec.from_file(save_spec(folder, spec)).read_cube("s0").shape == SHAPE


def test_leaves_folder() -> None:
    root = Path("/data/study")
    assert leaves_folder(root, "../x.png") and leaves_folder(root, "a/../../x.png")
    assert not leaves_folder(root, "a/../x.png") and not leaves_folder(root, "/elsewhere/x.png")
    assert leaves_folder(Path("."), "../x.png") and not leaves_folder(Path("."), "x/y.png")
