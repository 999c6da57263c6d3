"""The GPU path's CPU-testable parts: bf16 autocast training, channels-last, compile refused where it cannot
run (the 2-process gloo DDP run is in ``tests/test_train.py``)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from hsiseg import HsisegError
from hsiseg.models import DEFAULT_MODEL, build_model
from hsiseg.synthetic.dataset import generate_demo_data
from hsiseg.training import TrainConfig, train


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    return generate_demo_data(tmp_path_factory.mktemp("amp") / "data", surgeries=3, frames=1, shape=(48, 64), seed=1)


def history(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_bf16_autocast_training_on_cpu_is_finite_and_close_to_fp32(spec: Path, tmp_path: Path) -> None:
    settings = {"steps": 60, "validate_every": 30, "model": "pixel", "refit": False, "device": "cpu", "seed": 3}
    train(spec, tmp_path / "fp32", TrainConfig(amp=False, **settings))
    train(spec, tmp_path / "bf16", TrainConfig(amp=True, amp_dtype="bfloat16", **settings))
    full, half = history(tmp_path / "fp32"), history(tmp_path / "bf16")
    assert all(torch.isfinite(torch.tensor(float(row["train_loss"]))) for row in half)
    assert float(half[-1]["train_loss"]) < float(half[0]["train_loss"])  # it learns
    dice = {name: float(rows[-1]["mean_dice"]) for name, rows in (("fp32", full), ("bf16", half))}
    assert abs(dice["bf16"] - dice["fp32"]) <= 0.1, dice  # tolerance: bf16 keeps 8 bits of mantissa


@pytest.mark.parametrize("name", [DEFAULT_MODEL, "unet"])
def test_channels_last_gives_the_same_outputs(name: str) -> None:
    torch.manual_seed(0)
    network = build_model(name, 20, 6, **({"width": 8, "depth": 2} if name == "unet" else {})).eval()
    image = torch.rand(2, 20, 32, 48)
    with torch.no_grad():
        plain = network(image)
        network.to(memory_format=torch.channels_last)
        last = network(image.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(last, plain, rtol=1e-4, atol=1e-5)


def test_options_of_the_gpu_path_are_checked() -> None:
    with pytest.raises(HsisegError, match="compile runs on CUDA only"):
        TrainConfig(compile=True, device="cpu").check()
    with pytest.raises(HsisegError, match="amp_dtype must be auto, bfloat16 or float16"):
        TrainConfig(amp_dtype="int8").check()
    TrainConfig(amp_dtype="bfloat16", device="cpu").check()
