"""Out-of-range, non-finite and impossible options: one line naming the option, exit 2, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hsiseg import HsisegError
from hsiseg.devices import resolve_device
from hsiseg.option_checks import in_range, whole_number
from hsiseg.predict import PredictOptions, RunOptions
from hsiseg.training import TrainConfig
from hsiseg_cli.main import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ood-threshold", "nan"], "ood_threshold must be a finite number, got nan"),
        (["--ood-threshold", "inf"], "ood_threshold must be a finite number, got inf"),
        (["--opacity", "5"], "opacity must be in [0, 1], got 5"),
        (["--opacity", "nan"], "opacity must be a finite number"),
        (["--confidence", "1.5"], "confidence must be in (0, 1], got 1.5"),
        (["--batch-size", "0"], "batch_size must be at least 1, got 0"),
        (["--tile", "8"], "tile must be at least 16, got 8"),
        (["--workers", "0"], "workers must be in [1, 64], got 0"),
        (["--workers", "1000"], "workers must be in [1, 64], got 1000"),
        (["--overlap", "nan"], "overlap must be a finite number"),
        (["--overlap", "0.95"], "overlap must be in [0, 0.9], got 0.95"),
        (["--level", "0"], "level must be at least 1, got 0"),
        (["--num-parts", "2", "--part-id", "2"], "part_id must be in [0, 1], got 2"),
        (["--device", "banana"], "device 'banana' is not a device"),
        (["--device", "xla"], "hsiseg runs on cpu, cuda, cuda:N, mps or auto"),
        (["--ood-score", "entropy"], "unknown OOD score 'entropy'"),
    ],
)
def test_predict_refuses_bad_options_before_reading_anything(tmp_path: Path, flags: list[str], message: str) -> None:
    missing = tmp_path / "no-model.json"  # never read: the options are checked first
    result = runner.invoke(app, ["predict", str(missing), str(tmp_path), "-o", str(tmp_path / "out"), *flags])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_on_a_machine_without_it_is_one_line(tmp_path: Path, device: str) -> None:
    result = runner.invoke(app, ["predict", str(tmp_path / "m.json"), str(tmp_path), "--device", device])
    assert result.exit_code == 2 and "CUDA is not available on this machine" in result.output


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="checks a machine without MPS")
def test_mps_on_a_machine_without_it_is_one_line() -> None:
    with pytest.raises(HsisegError, match="device 'mps': Apple's MPS is not available"):
        resolve_device("mps")
    with pytest.raises(HsisegError, match="device 'mps'"):
        TrainConfig(device="mps").check()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--class-balance", "nan"], "class_balance must be a finite number, got nan"),
        (["--seed", "-1"], "seed must be in [0, 4.29497e+09], got -1"),
        (["--device", "banana"], "device 'banana' is not a device"),
        (["--validation-strokes", "nan"], "validation_strokes must be a finite number"),
    ],
)
def test_train_refuses_bad_options_before_reading_the_spec(tmp_path: Path, flags: list[str], message: str) -> None:
    result = runner.invoke(app, ["train", str(tmp_path / "no-spec.yaml"), "-o", str(tmp_path / "run"), *flags])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_library_options_name_the_parameter() -> None:
    with pytest.raises(HsisegError, match="ood_threshold must be a finite number, got nan"):
        RunOptions(ood_threshold=float("nan")).check()
    with pytest.raises(HsisegError, match="opacity must be in"):
        PredictOptions(opacity=-0.1).check()
    PredictOptions().check()  # the defaults are valid
    RunOptions(ood_threshold=-3.5, device="cpu").check()  # any finite threshold is a threshold


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "3", None, True])
def test_in_range_refuses_what_is_not_a_finite_number(value) -> None:
    with pytest.raises(HsisegError, match="x must be a finite number"):
        in_range(value, "x")


def test_in_range_bounds_are_exact() -> None:
    assert in_range(0.0, "x", 0, 1) == 0.0 and in_range(1.0, "x", 0, 1) == 1.0
    for value, low_open, high_open in ((0.0, True, False), (1.0, False, True)):
        with pytest.raises(HsisegError, match=r"x must be in [\[(]0, 1[\])], got"):
            in_range(value, "x", 0, 1, low_open=low_open, high_open=high_open)
    with pytest.raises(HsisegError, match="n must be a whole number, got 2.5"):
        whole_number(2.5, "n")  # type: ignore[arg-type]


@pytest.mark.parametrize("band", ["nan", "-5", "inf"])
def test_render_refuses_wavelengths_that_are_not_wavelengths(tmp_path: Path, band: str) -> None:
    result = runner.invoke(app, ["render", str(tmp_path / "c.dat"), "-o", str(tmp_path / "x.png"), f"--band={band}"])
    assert result.exit_code == 2 and "wavelength (nm) must be" in result.output


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--every", "2"], "--every applies"),
        (["--smooth", "0.5", "--export", "areas"], "--smooth, --export apply"),
        (["--start", "3", "--stop", "9", "--demosaic", "bilinear", "--batch-frames", "4"],
         "--demosaic, --start, --stop, --batch-frames apply"),
    ],
)
def test_recording_options_with_files_of_cubes_are_refused_not_ignored(
    tmp_path: Path, flags: list[str], named: str
) -> None:
    result = runner.invoke(app, ["predict", str(tmp_path / "m.json"), str(tmp_path), "-o", str(tmp_path / "out"),
                                 *flags])  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{named} to recordings (with --camera), not to files of cubes" in result.output
    assert not (tmp_path / "out").exists()


def test_a_recordings_default_options_given_aloud_with_cubes_are_not_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["predict", str(tmp_path / "m.json"), str(tmp_path), "--every", "1",
                                 "--export", "areas,mp4,html"])  # fmt: skip
    assert "recordings (with --camera)" not in result.output and "m.json" in result.output  # the model, read next


def test_render_keeps_a_read_only_file_at_its_output(tmp_path: Path) -> None:
    import numpy as np

    from hsiseg.io import write_cube
    from hsiseg.io.cube import Cube

    write_cube(tmp_path / "c.h5", Cube(np.random.default_rng(0).random((8, 8, 3), np.float32), [500.0, 600.0, 700.0]))
    kept = tmp_path / "kept.png"
    kept.write_bytes(b"not yours to replace")
    kept.chmod(0o444)
    result = runner.invoke(app, ["render", str(tmp_path / "c.h5"), "-o", str(kept)])
    assert result.exit_code == 2 and "kept.png: the file is read-only" in result.output
    assert kept.read_bytes() == b"not yours to replace" and not list(tmp_path.glob(".kept.png.*"))
    kept.chmod(0o644)
    assert runner.invoke(app, ["render", str(tmp_path / "c.h5"), "-o", str(kept)]).exit_code == 0
    assert kept.read_bytes().startswith(b"\x89PNG")


def test_an_empty_part_of_the_work_is_not_an_error(tmp_path: Path) -> None:
    import numpy as np

    from hsiseg.io import write_cube
    from hsiseg.io.cube import Cube
    from hsiseg.predict import plan_frames

    write_cube(tmp_path / "in" / "only.h5", Cube(np.ones((4, 4, 3), np.float32), [1.0, 2.0, 3.0]))
    assert plan_frames([tmp_path / "in"], tmp_path / "out", PredictOptions(num_parts=5, part_id=4)) == []
    (tmp_path / "empty").mkdir()
    with pytest.raises(HsisegError, match="no cube files among the inputs"):
        plan_frames([tmp_path / "empty"], tmp_path / "o2", PredictOptions())


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (["predict", "no-model.json", "."], "no-model.json: model card not found"),
        (["train", "no-spec.yaml", "-o", "run"], "no-spec.yaml: No such file or directory"),
    ],
)
def test_an_error_before_any_work_is_one_line_without_an_empty_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], error: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, command)
    lines = result.output.splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("hsiseg: error: ") and error in lines[0]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["train", "spec.yaml", "--steps", "abc"], "hsiseg: error: Invalid value for '--steps': "),
        (["train", "spec.yaml", "--no-such-flag"], "hsiseg: error: No such option: --no-such-flag"),
        (["predict"], "hsiseg: error: Missing argument 'model' (see hsiseg predict --help)"),
        (["trian"], "hsiseg: error: No such command 'trian'. Did you mean 'train'? (see hsiseg --help)"),
    ],
)
def test_what_the_command_line_cannot_parse_is_one_line_not_a_box(capsys, args: list[str], line: str) -> None:
    from hsiseg_cli.entry import main

    with pytest.raises(SystemExit) as stopped:
        main(args)
    printed = capsys.readouterr()
    assert stopped.value.code == 2 and printed.out == "" and printed.err.count("\n") == 1
    assert printed.err.startswith(line) and "─" not in printed.err and "Traceback" not in printed.err


def test_the_console_script_keeps_help_version_and_exit_codes(capsys, tmp_path: Path) -> None:
    from hsiseg import __version__
    from hsiseg_cli.entry import main

    for args, code in ((["--version"], 0), (["train", "--help"], 0), (["render", str(tmp_path / "c.dat"), "-o",
                                                                         str(tmp_path / "x.png")], 2)):  # fmt: skip
        with pytest.raises(SystemExit) as stopped:
            main(args)
        assert stopped.value.code == code, args
    printed = capsys.readouterr()
    assert f"hsiseg {__version__}" in printed.out and "Train a network" in printed.out
    assert printed.err.startswith("hsiseg: error: ") and "c.dat" in printed.err


def test_hsiseg_alone_prints_its_help_and_nothing_else(capsys) -> None:
    from hsiseg_cli.entry import main

    with pytest.raises(SystemExit) as stopped:
        main([])
    printed = capsys.readouterr()
    assert stopped.value.code == 2 and "train" in printed.out and printed.err == ""


def test_an_option_without_its_value_names_the_command_to_ask(capsys, tmp_path: Path) -> None:
    from hsiseg_cli.entry import main

    with pytest.raises(SystemExit) as stopped:
        main(["render", str(tmp_path / "c.h5"), "--bands"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.startswith("hsiseg: error: Option '--bands' requires an argument")
    assert err.rstrip().endswith("(see hsiseg render --help)")


def test_the_predictor_itself_refuses_an_overlap_above_the_limit() -> None:
    from hsiseg.models import DEFAULT_MODEL
    from hsiseg.predict import Predictor
    from hsiseg.predict.untrained import untrained
    from hsiseg.synthetic.dataset import demo_tree

    network = untrained(DEFAULT_MODEL, demo_tree(), [500.0, 600.0, 700.0])
    with pytest.raises(HsisegError, match=r"overlap must be in \[0, 0.9\], got 0.95"):
        Predictor(network.model, network.card, overlap=0.95)
    assert Predictor(network.model, network.card, overlap=0.9, scores=network.scores).overlap == 0.9


def test_files_hsiseg_writes_stay_rewritable_under_a_umask_without_write_bits(tmp_path: Path) -> None:
    import os

    from hsiseg.io.atomic import atomic_path

    previous = os.umask(0o222)
    try:
        for text in ("first", "second"):  # the second write replaces hsiseg's own file
            with atomic_path(tmp_path / "metrics.csv") as temporary:
                temporary.write_text(text)
    finally:
        os.umask(previous)
    assert (tmp_path / "metrics.csv").read_text() == "second"
