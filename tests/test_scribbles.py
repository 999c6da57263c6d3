"""``hsiseg scribbles``: simulated scribbles and held-out truth from a dense label image (issue 12, item 18), and
label writers that take ``str`` paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hsiseg import HsisegError
from hsiseg.annotations.simulate import write_simulated_scribbles
from hsiseg.annotations.writers import write_label_image, write_label_values
from hsiseg.io.images import load_image
from hsiseg_cli.main import app

runner = CliRunner()


def dense_truth(folder: Path, name: str = "truth.png") -> tuple[Path, np.ndarray]:
    """A 48 x 60 truth with three regions (values 3, 7, 200) and an unlabelled border (0), as a PNG."""
    values = np.zeros((48, 60), dtype=np.uint8)
    values[2:-2, 2:20], values[2:-2, 20:40], values[2:-2, 40:-2] = 3, 7, 200
    path = folder / name
    Image.fromarray(values).save(path)
    return path, values


def test_scribbles_cli_writes_a_subset_of_the_truth(tmp_path: Path) -> None:
    truth_path, truth = dense_truth(tmp_path)
    before = truth_path.read_bytes()
    output = tmp_path / "out" / "scribbles.png"
    result = runner.invoke(app, ["scribbles", str(truth_path), "-o", str(output), "--fraction", "0.1", "--seed", "4"])
    assert result.exit_code == 0, result.output
    held_out = tmp_path / "out" / "scribbles_heldout.png"
    assert f"to {output}; held-out truth: {held_out}" in result.output
    scribbles, rest = load_image(output), load_image(held_out)
    assert scribbles.dtype == np.uint8 and scribbles.shape == truth.shape
    drawn = scribbles != 0
    np.testing.assert_array_equal(scribbles[drawn], truth[drawn])  # a subset of the truth, same values
    assert set(np.unique(scribbles[drawn])) == {3, 7, 200}  # every class scribbled
    labelled = truth != 0
    assert abs(drawn.sum() / labelled.sum() - 0.1) < 0.02  # about the fraction
    np.testing.assert_array_equal(np.where(drawn, 0, truth), rest)  # the held-out truth is the rest
    assert truth_path.read_bytes() == before  # the input is untouched
    assert sorted(p.name for p in output.parent.iterdir()) == ["scribbles.png", "scribbles_heldout.png"]  # no temp


def test_scribbles_are_reproducible_and_refuse_to_overwrite(tmp_path: Path) -> None:
    truth_path, _ = dense_truth(tmp_path)
    first = write_simulated_scribbles(str(truth_path), str(tmp_path / "a.png"), 0.05, seed=1)
    second = write_simulated_scribbles(truth_path, tmp_path / "b.npy", 0.05, held_out=tmp_path / "rest.npy", seed=1)
    np.testing.assert_array_equal(load_image(first.scribbles), load_image(second.scribbles))
    assert second.held_out == tmp_path / "rest.npy" and load_image(second.held_out).dtype == np.uint8
    result = runner.invoke(app, ["scribbles", str(truth_path), "-o", str(tmp_path / "a.png")])
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"hsiseg: error: {tmp_path / 'a.png'} exists; choose another file or allow overwriting it (--overwrite)"
    )
    again = runner.invoke(app, ["scribbles", str(truth_path), "-o", str(tmp_path / "a.png"), "--overwrite"])
    assert again.exit_code == 0, again.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["-o", "{truth}"], "{truth}: is the truth file itself; write to another file"),
        (["-o", "{tmp}/s.png", "--held-out", "{truth}"], "{truth}: is the truth file itself"),
        (["-o", "{tmp}/s.png", "--fraction", "1.5"], "scribbles: fraction must be between 0 and 1"),
        (["-o", "{tmp}/s.png", "--stroke-length", "0"], "scribbles: stroke_length must be at least 1 pixel"),
        (["-o", "{tmp}/s.tif"], "{tmp}/s.tif: label images are written as .png or .npy"),
        (["-o", "{tmp}/s.png", "--held-out", "{tmp}/s.png"], "need two different files"),
    ],
)
def test_scribbles_cli_errors_are_one_line(tmp_path: Path, arguments: list[str], message: str) -> None:
    truth_path, _ = dense_truth(tmp_path)
    before = truth_path.read_bytes()
    fill = {"truth": str(truth_path), "tmp": str(tmp_path)}
    result = runner.invoke(app, ["scribbles", str(truth_path), *[a.format(**fill) for a in arguments]])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hsiseg: error: ") and message.format(**fill) in lines[0], lines
    assert truth_path.read_bytes() == before


def test_scribbles_of_an_unreadable_truth(tmp_path: Path) -> None:
    bad = tmp_path / "truth.png"
    bad.write_text("not an image")
    result = runner.invoke(app, ["scribbles", str(bad), "-o", str(tmp_path / "s.png")])
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"hsiseg: error: {bad}: not a readable image")


def test_scribbles_keep_wide_values_and_another_ignore_value(tmp_path: Path) -> None:
    truth = np.full((20, 20), -1, dtype=np.int32)
    truth[:, :10], truth[:, 10:] = -100, 70000  # -100 is an ordinary file value here
    np.save(tmp_path / "truth.npy", truth)
    written = write_simulated_scribbles(tmp_path / "truth.npy", tmp_path / "s.npy", 0.2, ignore_value=-1, seed=2)
    scribbles, rest = np.load(written.scribbles), np.load(written.held_out)
    assert scribbles.dtype == np.int32 and set(np.unique(scribbles)) == {-100, -1, 70000}
    np.testing.assert_array_equal(np.where(scribbles != -1, scribbles, rest), truth)  # disjoint parts of the truth
    with pytest.raises(HsisegError, match=r"s.png: values -100 to 70000 do not fit a PNG label image"):
        write_simulated_scribbles(tmp_path / "truth.npy", tmp_path / "s.png", 0.2, ignore_value=-1)
    assert not (tmp_path / "s.png").exists()


def test_label_writers_take_str_paths(tmp_path: Path) -> None:
    label_map = np.full((4, 5), -100, dtype=np.int32)
    label_map[1, 2] = 6
    write_label_image(str(tmp_path / "sub" / "codes.png"), label_map)
    assert load_image(tmp_path / "sub" / "codes.png")[1, 2] == 7  # code + 1
    write_label_values(str(tmp_path / "values.png"), np.array([[0, 300]], dtype=np.int64))
    assert load_image(str(tmp_path / "values.png")).tolist() == [[0, 300]]  # 16-bit when the values need it
