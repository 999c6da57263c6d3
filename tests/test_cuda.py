"""The GPU path (``pytest -m cuda``): skipped cleanly without CUDA, never required by CI. ``benchmarks/gpu_check.py``
runs these on a lent device and reports passed / failed / skipped."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from hsiseg import HsisegError, build_loss
from hsiseg.synthetic.dataset import demo_tree, generate_demo_data
from hsiseg.training import TrainConfig, train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
LOSSES = ["ce", "tree-ce", "tree-wasserstein", "tree-gwdl"]


def inputs(classes: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, classes, 16, 16, generator=generator) * scale
    target = torch.randint(0, classes, (2, 16, 16), generator=generator)
    target[torch.rand(target.shape, generator=generator) < 0.3] = -100
    return logits, target


@pytest.mark.parametrize("name", LOSSES)
def test_losses_on_cuda_equal_cpu(name: str) -> None:
    tree = demo_tree()
    logits, target = inputs(tree.num_leaves)
    cpu = logits.clone().requires_grad_()
    gpu = logits.cuda().requires_grad_()
    value_cpu = build_loss(name, tree)(cpu, target)
    value_gpu = build_loss(name, tree).to("cuda")(gpu, target.cuda())
    value_cpu.backward()
    value_gpu.backward()
    torch.testing.assert_close(value_gpu.cpu(), value_cpu, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gpu.grad.cpu(), cpu.grad, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_losses_stay_finite_at_extreme_logits(name: str, dtype: torch.dtype) -> None:
    tree = demo_tree()
    logits, target = inputs(tree.num_leaves, scale=60.0)
    gpu = logits.cuda().requires_grad_()
    with torch.autocast("cuda", dtype=dtype):
        value = build_loss(name, tree).cuda()(gpu, target.cuda())
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(gpu.grad).all()


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    return generate_demo_data(tmp_path_factory.mktemp("cuda") / "data", surgeries=3, frames=1, shape=(64, 80))


@pytest.mark.parametrize("model", ["spectral-spatial", "unet"])
def test_training_with_amp_and_channels_last(spec: Path, tmp_path: Path, model: str) -> None:
    config = TrainConfig(steps=40, validate_every=20, model=model, device="cuda", amp=True, channels_last=True,
                         refit=False, batch_size=4, patch_size=32)  # fmt: skip
    train(spec, tmp_path / "run", config)
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        losses = [float(row["train_loss"]) for row in csv.DictReader(handle)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_a_cuda_checkpoint_predicts_the_same_labels_on_cpu(spec: Path, tmp_path: Path) -> None:
    from hsiseg.io import read_cube
    from hsiseg.predict import Predictor

    train(spec, tmp_path / "run", TrainConfig(steps=20, validate_every=20, device="cuda", refit=False))
    model = tmp_path / "run" / "checkpoints" / "best.json"
    cube = read_cube(next((spec.parent / "cubes").rglob("*.dat")))
    on_gpu = Predictor.from_checkpoint(model, "cuda", tile=16).predict(cube)
    on_cpu = Predictor.from_checkpoint(model, "cpu", tile=16).predict(cube)
    agreement = (on_gpu.labels == on_cpu.labels).mean()
    assert agreement >= 0.999  # tolerance: float reductions in another order flip at most 0.1% of argmaxes
    np.testing.assert_allclose(on_gpu.probabilities, on_cpu.probabilities, atol=1e-3)


def test_out_of_memory_is_one_clear_line(spec: Path, tmp_path: Path) -> None:
    """A batch absurd for the device's free memory. The batch is built on the host, so the device is first filled
    to 512 MiB short of full: a batch absurd for a 141 GB card would exhaust the host's memory first."""
    config = TrainConfig(steps=2, validate_every=2, model="unet", device="cuda", batch_size=4096,
                         patch_size=32, refit=False)  # fmt: skip
    free, _ = torch.cuda.mem_get_info()
    filler = torch.empty(max(free - 2**29, 0), dtype=torch.uint8, device="cuda")
    try:
        with pytest.raises(HsisegError, match="out of memory with batch_size"):
            train(spec, tmp_path / "run", config)
    finally:
        del filler
        torch.cuda.empty_cache()


def test_torchrun_with_nccl_trains(spec: Path, tmp_path: Path) -> None:
    """``torchrun --nproc_per_node=1`` of ``hsiseg train`` on CUDA: DDP is set up with NCCL from the environment."""
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", f"--master_port={port}",
               "-m", "hsiseg_cli.main", "train", str(spec), "-o", str(tmp_path / "run"), "--steps", "20",
               "--val-every", "20", "--device", "cuda", "--model", "unet", "--no-refit", "--quiet"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "best.json").is_file()
