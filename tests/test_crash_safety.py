"""A recording run killed with SIGKILL at any moment loses only unfinished frames, and ``--continue`` then
gives the same ``maps.h5`` and exports as a run that was never interrupted.

The kills are real (a subprocess sends itself SIGKILL) and deterministic: a wrapped function kills the
process on its N-th call, between frames, halfway through writing a frame, while ``maps.h5`` is being
consolidated, and while the exports run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from hsiseg.synthetic.dataset import demo_tree, generate_demo_data
from hsiseg.synthetic.recording import write_demo_recording
from hsiseg.training import TrainConfig, train
from hsiseg_cli.main import app

FRAMES, SHAPE = 6, (24, 32)

KILLER = """
import io, os, signal, sys
import numpy as np
from hsiseg.export import EXPORTERS
from hsiseg.predict import maps_store

point, after = sys.argv[1], int(sys.argv[2])
calls = [0]

def die_after(original, partial=None):
    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] > after:
            if partial is not None:
                partial(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    return wrapped

def half_a_frame(handle, **arrays):  # the frame's file is cut off in the middle
    buffer = io.BytesIO()
    SAVEZ(buffer, **arrays)
    handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    handle.flush()

SAVEZ = np.savez_compressed
if point == "between-frames":
    maps_store.MapsStore.write = die_after(maps_store.MapsStore.write)
elif point == "inside-a-frame":
    np.savez_compressed = die_after(SAVEZ, half_a_frame)
elif point == "consolidating":
    np.load = die_after(np.load)
elif point == "exporting":
    EXPORTERS["mp4"] = die_after(EXPORTERS["mp4"])
from hsiseg_cli.main import app
app(sys.argv[3:])
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    """(model, recording, camera, the output of an uninterrupted run)."""
    folder = tmp_path_factory.mktemp("crash")
    spec = generate_demo_data(folder / "data", surgeries=3, frames=1, shape=SHAPE, seed=5)
    train(spec, folder / "run", TrainConfig(steps=2, validate_every=2, model="pixel", refit=False, device="cpu"))
    recording, camera = write_demo_recording(folder / "rec", demo_tree(), frames=FRAMES, shape=SHAPE)
    model = folder / "run" / "checkpoints" / "best.json"
    whole = folder / "whole"
    result = CliRunner().invoke(app, command(model, recording, camera, whole))
    assert result.exit_code == 0, result.output
    return model, recording, camera, whole


def command(model: Path, recording: Path, camera: Path, output: Path) -> list[str]:
    return ["predict", str(model), str(recording), "--camera", str(camera), "-o", str(output)]


def assert_same_maps(path: Path, reference: Path) -> None:
    with h5py.File(path) as maps, h5py.File(reference) as expected:
        assert maps["done"][()].all()
        for name in ("labels", "score", "rgb", "pixels", "frame", "timestamp", "warnings", "failures"):
            np.testing.assert_array_equal(maps[name][()], expected[name][()], err_msg=name)
        assert dict(maps.attrs) == dict(expected.attrs)


@pytest.mark.parametrize(
    ("point", "after", "kept"),
    [
        ("between-frames", 3, 0),  # 3 frames in the journal, none consolidated yet
        ("inside-a-frame", 2, 0),  # the third frame's file half written
        ("consolidating", 2, 0),  # killed while maps.h5's copy takes the journal's rows
        ("exporting", 0, FRAMES),  # maps.h5 complete, the MP4 not yet written
    ],
)
def test_a_kill_at_any_point_loses_only_unfinished_frames(setup, tmp_path: Path, point, after, kept) -> None:
    model, recording, camera, whole = setup
    out = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", KILLER, point, str(after), *command(model, recording, camera, out)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if (out / "maps.h5").exists():  # whatever is there is a readable maps file
        with h5py.File(out / "maps.h5") as maps:
            assert int(maps["done"][()].sum()) == kept
    journal = sorted(path.name for path in (out / "maps.journal").glob("*.npz")) if point != "exporting" else []
    assert len(journal) == {"between-frames": 3, "inside-a-frame": 2, "consolidating": FRAMES}.get(point, 0)
    again = CliRunner().invoke(app, [*command(model, recording, camera, out), "--continue"])
    assert again.exit_code == 0, again.output
    assert f"{FRAMES - kept - len(journal)} frames predicted" in again.output
    assert_same_maps(out / "maps.h5", whole / "maps.h5")
    assert not (out / "maps.journal").exists() and not list(out.glob(".maps.h5.*"))  # no leftovers
    for name in ("areas.csv", "overlay.mp4", "report.html"):
        assert (out / name).is_file(), name
    assert (out / "areas.csv").read_text() == (whole / "areas.csv").read_text()


def test_a_kill_before_anything_was_finished_leaves_a_folder_that_continues(setup, tmp_path: Path) -> None:
    model, recording, camera, whole = setup
    out = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", KILLER, "between-frames", "0",
                             *command(model, recording, camera, out)], capture_output=True, timeout=300)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    refused = CliRunner().invoke(app, command(model, recording, camera, out))
    assert refused.exit_code == 2 and "maps.journal exists; pass --continue to finish the run" in refused.output
    again = CliRunner().invoke(app, [*command(model, recording, camera, out), "--continue"])
    assert again.exit_code == 0, again.output
    assert_same_maps(out / "maps.h5", whole / "maps.h5")


def test_a_damaged_journal_costs_only_its_damaged_frames(setup, tmp_path: Path) -> None:
    """Entries that are not whole frames of this run are predicted again; files that are not entries are
    ignored; a journal that is not a folder is replaced by --overwrite."""
    model, recording, camera, whole = setup
    out = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", KILLER, "between-frames", "4",
                             *command(model, recording, camera, out)], capture_output=True, timeout=300)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    journal = out / "maps.journal"
    (journal / "000001.npz").write_bytes(b"garbage")
    (journal / "000002.npz").write_bytes(b"")
    (journal / "000099.npz").write_bytes(b"out of range")
    (journal / "0abc.npz").write_bytes(b"not an entry")
    again = CliRunner().invoke(app, [*command(model, recording, camera, out), "--continue"])
    assert again.exit_code == 0, again.output
    assert f"{FRAMES - 2} frames predicted" in again.output  # frames 0 and 3 were kept
    assert_same_maps(out / "maps.h5", whole / "maps.h5")
    assert [path.name for path in journal.iterdir()] == ["0abc.npz"]  # not the journal's: left where it was
    (journal / "0abc.npz").unlink()
    journal.rmdir()
    (out / "maps.h5").unlink()
    journal.write_text("a file where the journal goes")
    refused = CliRunner().invoke(app, [*command(model, recording, camera, out), "--continue"])
    assert refused.exit_code == 2 and "not a journal of hsiseg's streaming prediction" in refused.output
    replaced = CliRunner().invoke(app, [*command(model, recording, camera, out), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert_same_maps(out / "maps.h5", whole / "maps.h5")
