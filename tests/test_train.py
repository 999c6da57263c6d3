"""hsiseg.train, hsiseg.models, hsiseg.models.checkpoint: a few real steps end to end on the synthetic scene."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from hsiseg import HsisegError
from hsiseg.models import build_model
from hsiseg.models.checkpoint import load_model, read_card
from hsiseg.ood import DEFAULT_SCORES
from hsiseg.spectral import Preprocessing
from hsiseg.synthetic.dataset import generate_demo_data
from hsiseg.training import TrainConfig, train
from hsiseg_cli.main import app

SMALL = {"width": 8, "depth": 2}


def config(**changes) -> TrainConfig:
    """A short crop-trained U-Net run (``model="pixel"`` etc. switch to the pixel-batch path)."""
    base = dict(steps=8, validate_every=4, batch_size=4, patch_size=24, model="unet", model_options=SMALL)
    return TrainConfig(**{**base, **changes})


PIXEL = {"model": "spectral-spatial", "model_options": {"width": 16, "depth": 1}, "pixels_per_step": 64}


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    return generate_demo_data(folder, surgeries=3, frames=2, shape=(32, 40), seed=3)


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_unet_any_size_and_factory_errors() -> None:
    model = build_model("unet", 7, 5, width=8, depth=3)
    assert model(torch.randn(2, 7, 13, 21)).shape == (2, 5, 13, 21)
    with pytest.raises(HsisegError, match=r"model 'unet' has no option\(s\) \['heads'\]"):
        build_model("unet", 7, 5, heads=2)
    with pytest.raises(HsisegError, match="unknown model 'vit'"):
        build_model("vit", 7, 5)


def test_training_learns_and_checkpoints_reload_identically(spec_path: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    model = train(spec_path, run, config(steps=24))
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and [int(row["step"]) for row in rows] == [4, 8, 12, 16, 20, 24]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert (run / "curves.png").stat().st_size > 1000 and (run / "spec.yaml").is_file()
    from hsiseg.training import final_checkpoint

    assert final_checkpoint(run) == run / "checkpoints" / "final.json"  # refit on train + val images
    reloaded, card = load_model(final_checkpoint(run))  # the returned network
    model.eval()
    reloaded.eval()
    image = torch.randn(1, 100, 32, 40)
    with torch.no_grad():
        assert torch.equal(model(image), reloaded(image))
    best = read_card(run / "checkpoints" / "best.json")
    assert card.refit.steps == best.step and set(card.ood.scores) == set(best.ood.scores) == set(DEFAULT_SCORES)
    assert {c.method for c in card.ood.scores.values()} == {"transferred"} and card.ood.default == best.ood.default
    last = read_card(run / "checkpoints" / "last" / "model.json")
    assert last.round == 5 and last.step == 24 and last.model.in_channels == 100
    assert not last.ood.scores  # the best and final checkpoints carry the calibrations
    softmax = best.ood.scores["max_softmax"]
    assert 0 < softmax.threshold < 1 and softmax.keep == 0.95 and softmax.method == "held-out"


def test_model_card_round_trip(spec_path: Path, tmp_path: Path) -> None:
    train(spec_path, tmp_path / "run", config(loss="tree-ce"))
    card = read_card(tmp_path / "run" / "checkpoints" / "best.json")
    tree = card.tree
    assert tree.num_leaves == 14 and tree.index("vessel") == 21
    assert isinstance(card.preprocessing, Preprocessing)
    assert card.preprocessing.normalization == "l1" and len(card.preprocessing.wavelengths) == 100
    assert card.training["loss"] == "tree-ce" and "torch" in card.versions and card.model.input_multiple == 2
    # weights are plain safetensors: readable without hsiseg, no pickle involved
    weights = load_file(str(tmp_path / "run" / "checkpoints" / "best.safetensors"))
    network = {k for k in weights if not k.startswith("ood.")}
    assert network == set(build_model("unet", 100, 14, **SMALL).network.state_dict())
    fitted = {"ood.knn.bank", "ood.mahalanobis.means", "ood.mahalanobis.whitening",
              "ood.spectral_mahalanobis.means", "ood.spectral_mahalanobis.whitening",
              "ood.spectral_knn.bank", "ood.spectral_knn.mean", "ood.spectral_knn.std"}  # fmt: skip
    assert {k for k in weights if k.startswith("ood.")} == fitted


class Interrupt:
    """A reporter that stops training after round 1 (as a kill would), counting the steps it saw."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def start(self, *args): ...
    def message(self, text): ...
    def step(self, step, *args):
        self.steps.append(step)

    def round_end(self, row):
        if row["round"] == 1:
            raise KeyboardInterrupt


class StepCounter(Interrupt):
    def round_end(self, row): ...


@pytest.mark.parametrize("changes", [{}, PIXEL], ids=["unet-crops", "spectral-spatial-pixels"])
def test_resume_equals_uninterrupted(spec_path: Path, tmp_path: Path, changes: dict) -> None:
    straight = state(train(spec_path, tmp_path / "straight", config(steps=11, **changes)))
    interrupt = Interrupt()
    with pytest.raises(KeyboardInterrupt):
        train(spec_path, tmp_path / "resumed", config(steps=11, **changes), reporter=interrupt)
    assert interrupt.steps == list(range(8))
    counter = Interrupt()
    resumed = state(train(spec_path, tmp_path / "resumed", resume=True, reporter=counter))
    best_step = read_card(tmp_path / "resumed" / "checkpoints" / "best.json").step
    assert counter.steps == [8, 9, 10, *range(best_step)]  # budget (11) honoured: a short last round; then refit
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    with (tmp_path / "resumed" / "metrics.csv").open() as handle:
        assert [row["step"] for row in csv.DictReader(handle)] == ["4", "8", "11"]


DDP_WORKER = """
import os
from safetensors.torch import save_file
from hsiseg.training import TrainConfig, train
config = TrainConfig(steps=4, validate_every=4, batch_size=2, patch_size=24, model="unet", model_options={options})
model = train("{spec}", "{run}", config)
weights = {{k: v.contiguous() for k, v in model.state_dict().items()}}
save_file(weights, "{out}/rank" + os.environ["RANK"] + ".safetensors")
"""


def test_ddp_two_gloo_processes_agree(spec_path: Path, tmp_path: Path) -> None:
    script = tmp_path / "ddp_worker.py"
    script.write_text(
        DDP_WORKER.format(spec=str(spec_path), run=str(tmp_path / "ddp"), out=str(tmp_path), options=repr(SMALL))
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={port}",
        str(script),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    for key in first:
        assert torch.equal(first[key], second[key]), key
    initial = build_model("unet", 100, 14, **SMALL).state_dict()
    assert any(not torch.equal(first[k], initial[k]) for k in first)  # it did train


def test_bad_inputs(spec_path: Path, tmp_path: Path) -> None:
    with pytest.raises(HsisegError, match=r"loss 'tree-ce' has no option\(s\) \['gamma'\]"):
        train(spec_path, tmp_path / "a", config(loss="tree-ce", loss_options={"gamma": 1}))
    with pytest.raises(HsisegError, match="unknown loss 'focal'"):
        train(spec_path, tmp_path / "b", config(loss="focal"))
    with pytest.raises(HsisegError, match="non-finite loss .* data from \\['surgery"):
        train(spec_path, tmp_path / "c", config(learning_rate=1e30, steps=12))
    with pytest.raises(HsisegError, match="training: steps must be > 0, got 0"):
        train(spec_path, tmp_path / "e", config(steps=0))
    with pytest.raises(HsisegError, match=r"training: validation_strokes must be in \(0, 1\)"):
        train(spec_path, tmp_path / "e", config(validation_strokes=1.0))
    train(spec_path, tmp_path / "d", config())
    with pytest.raises(HsisegError, match="holds a training run; resume it"):
        train(spec_path, tmp_path / "d", config())
    card_path = tmp_path / "d" / "checkpoints" / "last" / "model.json"
    card = json.loads(card_path.read_text())
    card["model"]["in_channels"] = 50
    card_path.write_text(json.dumps(card))
    with pytest.raises(HsisegError, match="model.json: does not match the manifest of round 1"):
        train(spec_path, tmp_path / "d", resume=True)
    card["format"] = 99
    card_path.write_text(json.dumps(card))
    with pytest.raises(HsisegError, match="format 99 .* upgrade hsiseg"):
        read_card(card_path)


def test_split_without_annotations(spec_path: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load(spec_path.read_text())
    spec["root"] = str(spec_path.parent)
    spec["label_tree"] = str(spec_path.parent / "label_tree.yaml")
    spec["splits"] = {"train": ["surgery01_frame00"], "val": ["surgery02_frame00"]}
    empty = tmp_path / "empty.png"
    import imageio.v3 as imageio
    import numpy as np

    imageio.imwrite(empty, np.zeros((32, 40), dtype=np.uint8))
    spec["samples"][0]["annotations"] = [str(empty)]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(HsisegError, match="split 'train' .* has no annotated pixel"):
        train(path, tmp_path / "run", config())


def test_train_cli_end_to_end(spec_path: Path, tmp_path: Path) -> None:
    arguments = ["train", str(spec_path), "-o", str(tmp_path / "run"), "--steps", "6", "--val-every", "3",
                 "--model", "unet", "--width", "8", "--depth", "2", "--patch-size", "24", "--batch-size", "4",
                 "--loss", "tree-wasserstein", "--beta", "0.5", "--jsonl"]  # fmt: skip
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    row = [json.loads(line) for line in result.output.strip().splitlines() if '"round"' in line][-1]
    assert row["round"] == 1 and row["step"] == 6 and 0 <= row["leaf_accuracy"] <= 1
    assert read_card(tmp_path / "run" / "checkpoints" / "best.json").training["loss_options"] == {"beta": 0.5}


def test_same_scene_holds_out_strokes_and_refits_on_all(tmp_path: Path) -> None:
    import imageio.v3 as imageio
    import numpy as np

    from hsiseg.annotations import UNLABELLED
    from hsiseg.dataset.indian_pines import write_indian_pines
    from hsiseg.dataset.spec import DataSpec
    from hsiseg.training import build_training_data, final_checkpoint

    spec_path = write_indian_pines(tmp_path / "pines", fraction=0.05)
    run = tmp_path / "run"
    settings = config(steps=6, validate_every=3, ood_calibration="held-out", **PIXEL)
    train(spec_path, run, settings)
    record = json.loads((run / "validation_strokes.json").read_text())
    strokes = record["samples"]["indian_pines"]
    assert strokes and record["share"] == settings.validation_strokes
    held = imageio.imread(run / "validation_strokes" / "indian_pines.png") > 0
    assert held.sum() == sum(s["pixels"] for s in strokes)
    spec = DataSpec.from_file(spec_path)
    data = build_training_data(spec, settings, spec.fitted_preprocessing())
    train_target = data.train_set.sample(0).target
    validation_target = data.validation.sample(0).target
    assert not ((train_target != UNLABELLED) & (validation_target != UNLABELLED)).any()
    np.testing.assert_array_equal(validation_target != UNLABELLED, held)
    assert final_checkpoint(run) == run / "checkpoints" / "final.json"
    final = read_card(run / "checkpoints" / "final.json")
    annotated = int((spec.read_annotation("indian_pines") != UNLABELLED).sum())
    assert final.refit.annotated_pixels == annotated > int((train_target != UNLABELLED).sum())
    best = read_card(run / "checkpoints" / "best.json").ood.scores
    for name, calibration in final.ood.scores.items():  # held-out strokes calibrated best; the final network
        # flags the same share of the scene as the validated one
        assert best[name].method == "held-out" and best[name].held_out_pixels == int(held.sum())
        assert calibration.method == "transferred" and calibration.reference_share == best[name].reference_share
        assert calibration.threshold != best[name].threshold  # the final network's own scale


def test_the_automatic_unknown_tissue_default_follows_where_the_held_out_pixels_come_from(
    spec_path: Path, tmp_path: Path
) -> None:
    """One scene (strokes held out of the training image): spectral_knn, input-space scores cross-fitted on every
    stroke, feature scores on the held-out strokes; a validation split of other images: mahalanobis, held out."""
    from hsiseg.dataset.indian_pines import write_indian_pines
    from hsiseg.ood import build_score
    from hsiseg.ood.cross_fitting import cross_fittable
    from hsiseg.training.reporting import SilentReporter

    class Messages(SilentReporter):
        def __init__(self) -> None:
            self.said: list[str] = []

        def message(self, text: str) -> None:
            self.said.append(text)

    scene, reporter = write_indian_pines(tmp_path / "pines", fraction=0.05), Messages()
    train(scene, tmp_path / "scene", config(steps=4, **PIXEL), reporter=reporter)
    assert any(m.startswith("unknown tissue: 7 scores calibrated (keep 95%); default spectral_knn, cross-fitted on "
                            "every stroke") for m in reporter.said), reporter.said  # fmt: skip
    best = read_card(tmp_path / "scene" / "checkpoints" / "best.json").ood
    assert best.default == "spectral_knn"
    for name, calibration in best.scores.items():
        assert calibration.method == ("cross-fitted" if cross_fittable(build_score(name)) else "held-out"), name
    final = read_card(tmp_path / "scene" / "checkpoints" / "final.json").ood
    assert final.default == "spectral_knn" and final.scores["spectral_knn"].transferred_from == "cross-fitted"
    assert final.scores["mahalanobis"].transferred_from == "held-out"
    train(spec_path, tmp_path / "split", config(steps=4, **PIXEL))
    split = read_card(tmp_path / "split" / "checkpoints" / "best.json").ood
    assert split.default == "mahalanobis" and {c.method for c in split.scores.values()} == {"held-out"}


def test_multi_image_specs_keep_their_validation_split(spec_path: Path, tmp_path: Path) -> None:
    from hsiseg.training import final_checkpoint

    train(spec_path, tmp_path / "run", config(steps=4, **PIXEL))
    assert not (tmp_path / "run" / "validation_strokes.json").exists()
    final = read_card(final_checkpoint(tmp_path / "run"))
    spec = yaml.safe_load(spec_path.read_text())
    assert final.refit.annotated_pixels > 0 and spec["splits"]  # refit on train + val images
    train(spec_path, tmp_path / "no-refit", config(steps=4, refit=False, **PIXEL))
    assert final_checkpoint(tmp_path / "no-refit") == tmp_path / "no-refit" / "checkpoints" / "best.json"


def test_pixel_batches_are_class_balanced(spec_path: Path) -> None:
    import numpy as np

    from hsiseg.dataset.pixel_batches import PixelBatches
    from hsiseg.dataset.spec import DataSpec
    from hsiseg.dataset.torch_datasets import SpecDataset

    source = SpecDataset(DataSpec.from_file(spec_path), "train", mode="patches")
    counts = np.bincount(PixelBatches(source, 100, 1).codes)
    present = counts > 0
    for balance, spread in ((0.0, counts[present].max() / counts[present].min()), (1.0, 1.0)):
        batches = PixelBatches(source, 4000, 3, class_balance=balance)
        drawn = np.bincount(torch.cat([batches[i]["target"].ravel() for i in range(3)]).numpy(), minlength=len(counts))
        ratio = drawn[present].max() / drawn[present].min()
        assert 0.7 * spread < ratio < 1.5 * spread  # by area (balance 0) or every class equally (balance 1)
        item = batches[0]
        assert item["image"].shape == (source.num_bands, 1, 4000) and item["target"].shape == (1, 4000)
        assert torch.equal(batches[0]["image"], item["image"])  # seeded by (seed, round, step)


@pytest.mark.parametrize("changes", [{}, PIXEL], ids=["unet-crops", "spectral-spatial-pixels"])
def test_training_and_validation_on_odd_image_sizes(tmp_path: Path, changes: dict) -> None:
    odd = generate_demo_data(tmp_path / "odd", surgeries=3, frames=1, shape=(33, 47), seed=5)
    model = train(odd, tmp_path / "run", config(steps=4, patch_size=32, **changes))
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        assert 0 <= float(list(csv.DictReader(handle))[-1]["leaf_accuracy"]) <= 1
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 100, 33, 47)).shape == (1, 14, 33, 47)


def test_cli_resume_keeps_the_runs_budget_unless_told(spec_path: Path, tmp_path: Path) -> None:
    base = ["train", str(spec_path), "-o", str(tmp_path / "run"), "--model", "pixel", "--width", "8",
            "--pixels-per-step", "32", "--val-every", "3", "--jsonl"]  # fmt: skip
    assert CliRunner().invoke(app, [*base, "--steps", "3"]).exit_code == 0
    again = CliRunner().invoke(app, [*base, "--resume"])
    assert again.exit_code == 0, again.output
    assert read_card(tmp_path / "run" / "checkpoints" / "last" / "model.json").step == 3  # not the default budget
    longer = CliRunner().invoke(app, [*base, "--resume", "--steps", "6"])
    assert longer.exit_code == 0, longer.output
    assert [json.loads(line) for line in longer.output.splitlines() if '"round"' in line][-1]["step"] == 6


@pytest.mark.parametrize("shape", [(50, 60), (40, 32)], ids=["other size", "transposed"])
def test_train_refuses_annotations_that_do_not_fit_the_cube(spec_path: Path, tmp_path: Path, shape) -> None:
    """A 50 x 60 annotation on a 32 x 40 cube, or a transposed one: one clear error before the first step."""
    import imageio.v3 as imageio
    import numpy as np

    spec = yaml.safe_load(spec_path.read_text())
    spec["root"] = str(spec_path.parent)
    spec["label_tree"] = str(spec_path.parent / "label_tree.yaml")
    wrong = tmp_path / "wrong.png"
    imageio.imwrite(wrong, np.ones(shape, dtype=np.uint8))
    spec["samples"][0]["annotations"] = [str(wrong)]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    sample = spec["samples"][0]["id"]
    steps = Interrupt()
    with pytest.raises(
        HsisegError, match=rf"sample '{sample}': its annotation is {shape[0]} x {shape[1]} but its cube"
    ):
        train(path, tmp_path / "run", config(), reporter=steps)
    assert steps.steps == []
    result = CliRunner().invoke(app, ["train", str(path), "-o", str(tmp_path / "cli"), "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output and "its cube is 32 x 40" in result.output


def test_resume_of_a_run_killed_before_its_first_checkpoint(spec_path: Path, tmp_path: Path) -> None:
    class KillFirstStep(Interrupt):
        def step(self, step, *args):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(spec_path, tmp_path / "run", config(), reporter=KillFirstStep())
    with pytest.raises(HsisegError, match="stopped before its first checkpoint; .* start it again"):
        train(spec_path, tmp_path / "run", resume=True)
    train(spec_path, tmp_path / "run", config(steps=4, validate_every=4))  # starting again works
    assert read_card(tmp_path / "run" / "checkpoints" / "last" / "model.json").step == 4


def test_a_crash_while_saving_keeps_the_previous_resume_point(
    spec_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hsiseg.models.checkpoint

    saved = hsiseg.models.checkpoint.save_training_state

    def crash_in_round_one(path_stem, optimizer, scheduler, extra):
        if extra["round"] == 1:  # the weights and card of round 1 are written, its optimizer state is not
            raise KeyboardInterrupt
        saved(path_stem, optimizer, scheduler, extra)

    monkeypatch.setattr(hsiseg.models.checkpoint, "save_training_state", crash_in_round_one)
    with pytest.raises(KeyboardInterrupt):
        train(spec_path, tmp_path / "run", config(steps=12, refit=False))
    monkeypatch.undo()
    last = tmp_path / "run" / "checkpoints" / "last"
    assert read_card(last / "model.json").round == 0  # round 0's set, whole; no half-written folder beside it
    assert json.loads((last / "model.state.json").read_text())["round"] == 0
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.json", "best.safetensors", "last"]
    counter = StepCounter()
    train(spec_path, tmp_path / "run", resume=True, reporter=counter)
    assert counter.steps[0] == 4  # round 1 is trained again, from round 0's weights and optimizer state


def test_resume_refuses_a_mixed_checkpoint_set_and_recovers_an_interrupted_swap(
    spec_path: Path, tmp_path: Path
) -> None:
    train(spec_path, tmp_path / "run", config(steps=4, validate_every=4, refit=False))
    last = tmp_path / "run" / "checkpoints" / "last"
    old_state = (last / "model.state.json").read_text()
    train(spec_path, tmp_path / "run", config(steps=8, validate_every=4, refit=False), resume=True)
    (last / "model.state.json").write_text(old_state)  # round 1's weights with round 0's optimizer state
    result = CliRunner().invoke(app, ["train", str(spec_path), "-o", str(tmp_path / "run"), "--resume", "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "model.state.json: does not match the manifest of round 1" in result.output
    assert "start the run again without resume" in result.output

    train(spec_path, tmp_path / "fresh", config(steps=4, validate_every=4, refit=False))
    fresh = tmp_path / "fresh" / "checkpoints" / "last"
    fresh.rename(fresh.with_name(".last.old"))  # killed between the two renames of a save
    counter = StepCounter()
    train(spec_path, tmp_path / "fresh", config(steps=8, validate_every=4, refit=False), resume=True, reporter=counter)
    assert counter.steps == [4, 5, 6, 7] and read_card(fresh / "model.json").round == 1
    assert not fresh.with_name(".last.old").exists()
