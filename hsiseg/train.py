"""Training a segmentation network on a data-spec split with any hsiseg loss (background-free: the loss sees
annotated pixels only).

``train(spec, run_dir, TrainConfig(...))`` writes into ``run_dir``:

- ``spec.yaml`` (a copy of the data spec) and ``args.json`` (the full configuration);
- ``metrics.csv`` (one row per epoch) and ``curves.png``;
- ``checkpoints/best.{json,safetensors}`` (best validation mean Dice) and ``checkpoints/last.*`` with the
  training state for ``resume=True`` (optimizer, scheduler, epoch, RNG), see :mod:`hsiseg.checkpoint`.

GPU path: CUDA when available (``device="auto"``), automatic mixed precision (bfloat16 where supported,
else float16 with a gradient scaler), channels-last, pinned memory and non-blocking copies, optional
``torch.compile``. Multi-GPU/multi-node: launch the same command with ``torchrun``; DDP is set up from the
environment (NCCL on CUDA, gloo on CPU), each rank sees its own share of the patches, rank 0 validates
and writes. AdamW with linear warm-up and cosine decay, gradient clipping, seeded everything.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from hsiseg.checkpoint import load_model, load_training_state, read_card, save_model, save_training_state
from hsiseg.data import Augmentation, SpecDataset
from hsiseg.errors import HsisegError
from hsiseg.io.atomic import atomic_path
from hsiseg.losses import build_loss
from hsiseg.metrics import annotated_metrics
from hsiseg.models import build_model
from hsiseg.spec import DataSpec


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``args.json``)."""

    loss: str = "tree-ce"
    loss_options: dict[str, Any] = field(default_factory=dict)
    model: str = "unet"
    model_options: dict[str, Any] = field(default_factory=lambda: {"width": 32, "depth": 4})
    epochs: int = 20
    batch_size: int = 8
    patch_size: int = 64
    patches_per_epoch: int | None = None
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    fold: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    workers: int = 0
    ood_keep: float = 0.95


class Reporter(Protocol):
    """Where training progress goes (the CLI shows a rich display, JSON lines, or nothing)."""

    def start(self, epochs: int, first_epoch: int, steps_per_epoch: int) -> None: ...
    def step(self, epoch: int, step: int, loss: float, patches_per_second: float) -> None: ...
    def epoch_end(self, row: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...


class SilentReporter:
    def start(self, epochs: int, first_epoch: int, steps_per_epoch: int) -> None:
        pass

    def step(self, epoch: int, step: int, loss: float, patches_per_second: float) -> None:
        pass

    def epoch_end(self, row: dict[str, Any]) -> None:
        pass

    def message(self, text: str) -> None:
        pass


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_kind: str) -> Distributed:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HsisegError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds the global state third-party code draws from
    torch.manual_seed(seed)


def warmup_cosine(total_steps: int, warmup_steps: int):
    """Learning-rate factor: linear warm-up to 1, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def train(
    spec_path: str | Path,
    run_dir: str | Path,
    config: TrainConfig | None = None,
    resume: bool = False,
    reporter: Reporter | None = None,
) -> nn.Module:
    """Train (or resume) a run; returns the trained network (unwrapped from DDP)."""
    run_dir = Path(run_dir)
    reporter = reporter or SilentReporter()
    config = _resolve_config(run_dir, config, resume)
    device = resolve_device(config.device)
    world = setup_distributed(device.type)
    if world.world_size > 1 and device.type == "cuda":
        device = torch.device(f"cuda:{world.local_rank}")
        torch.cuda.set_device(device)
    seed_everything(config.seed)

    spec = DataSpec.from_file(spec_path)
    tree = spec.tree
    preprocessing = spec.fitted_preprocessing(config.fold)
    if preprocessing.wavelengths is None:  # the grid the network will expect from every future cube
        first = spec.read_cube(spec.split("train", config.fold)[0])
        preprocessing = preprocessing.model_copy(update={"wavelengths": first.wavelengths.tolist()})
    train_set = SpecDataset(
        spec,
        "train",
        config.fold,
        "patches",
        config.patch_size,
        config.patches_per_epoch,
        augmentation=Augmentation(),
        seed=config.seed,
        preprocessing=preprocessing,
    )
    val_set = SpecDataset(spec, "val", config.fold, "full", preprocessing=preprocessing)
    bands = train_set.num_bands

    model = build_model(config.model, bands, tree.num_leaves, **config.model_options)
    loss_fn = build_loss(config.loss, tree, **config.loss_options)
    start_epoch, best_dice, history = 0, -1.0, []
    checkpoints = run_dir / "checkpoints"
    if resume:
        card = read_card(checkpoints / "last.json")
        if card["model"]["in_channels"] != bands:
            raise HsisegError(
                f"{checkpoints / 'last.json'}: the network takes {card['model']['in_channels']} bands, "
                f"the data has {bands}"
            )
        model, _ = load_model(checkpoints / "last.json")
    model.to(device)
    if device.type == "cuda" and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / world.world_size / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total_steps, max(1, int(config.warmup_epochs * steps_per_epoch)))
    )
    if resume:
        state = load_training_state(checkpoints / "last", optimizer, scheduler)
        start_epoch, best_dice = state["epoch"] + 1, state["best_dice"]
        history = _read_history(run_dir / "metrics.csv")[:start_epoch]
    elif world.main:
        _prepare_run_dir(run_dir, Path(spec_path), config)

    network: nn.Module = model
    if config.compile:
        network = torch.compile(network)
    if world.world_size > 1:
        network = nn.parallel.DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None
        )
    autocast_dtype = _autocast_dtype(device, config.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)
    sampler = (
        DistributedSampler(train_set, world.world_size, world.rank, shuffle=False) if world.world_size > 1 else None
    )
    loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=config.workers > 0,
        drop_last=False,
    )
    card_base = {
        "model": {
            "name": config.model,
            "in_channels": bands,
            "classes": tree.num_leaves,
            "options": config.model_options,
        },
        "label_tree": tree.to_dict(),
        "preprocessing": preprocessing.model_dump(),
        "training": {**asdict(config), "spec": str(spec_path)},
    }
    reporter.start(config.epochs, start_epoch, steps_per_epoch)
    for epoch in range(start_epoch, config.epochs):
        train_set.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        started = time.perf_counter()
        train_loss = _train_epoch(
            network,
            loader,
            loss_fn,
            optimizer,
            scheduler,
            scaler,
            device,
            autocast_dtype,
            config,
            epoch,
            train_set,
            reporter,
        )
        seconds = time.perf_counter() - started
        if world.main:
            metrics, ood = validate(model, val_set, tree, device, autocast_dtype, config.ood_keep)
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                **metrics,
                "lr": scheduler.get_last_lr()[0],
                "seconds": seconds,
                "patches_per_second": len(train_set) / seconds,
            }
            history.append(row)
            card = {**card_base, "epoch": epoch, "metrics": metrics, "ood": ood}
            improved = not math.isnan(metrics["mean_dice"]) and metrics["mean_dice"] > best_dice
            best_dice = max(best_dice, metrics["mean_dice"]) if improved else best_dice
            checkpoints.mkdir(parents=True, exist_ok=True)
            save_model(checkpoints / "last", model, card)
            save_training_state(checkpoints / "last", optimizer, scheduler, {"epoch": epoch, "best_dice": best_dice})
            if improved or not (checkpoints / "best.json").is_file():
                save_model(checkpoints / "best", model, card)
            _write_history(run_dir, history)
            reporter.epoch_end(row)
        if world.world_size > 1:
            dist.barrier()
    if world.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
    return model


def _train_epoch(
    network, loader, loss_fn, optimizer, scheduler, scaler, device, autocast_dtype, config, epoch, dataset, reporter
) -> float:
    network.train()
    total, count, started = 0.0, 0, time.perf_counter()
    for step, batch in enumerate(loader):
        images = batch["image"].to(device, non_blocking=True)
        if device.type == "cuda" and config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        target = batch["target"].to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        try:
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                loss = loss_fn(network(images), target)
            if not torch.isfinite(loss):
                names = sorted({dataset.sample_ids[int(i)] for i in batch["index"]})
                raise HsisegError(
                    f"non-finite loss ({loss.item()}) in epoch {epoch}, step {step}, patches from {names}; "
                    "training stopped, the last good checkpoint is kept (try a lower --lr)"
                )
            scaler.scale(loss).backward()
            if config.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
        except torch.OutOfMemoryError:
            raise HsisegError(
                f"out of memory with --batch-size {config.batch_size} and --patch-size {config.patch_size}; "
                f"try --batch-size {max(1, config.batch_size // 2)} or a smaller --patch-size"
            ) from None
        scheduler.step()
        total += loss.item() * len(images)
        count += len(images)
        reporter.step(epoch, step, loss.item(), count / max(1e-9, time.perf_counter() - started))
    return total / max(1, count)


@torch.no_grad()
def validate(
    model, dataset: SpecDataset, tree, device, autocast_dtype, keep: float
) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics on the annotated pixels of full validation images, and the unknown-tissue threshold that keeps
    ``keep`` of those pixels (max softmax probability)."""
    model.eval()
    predictions, targets, confidences = [], [], []
    for index in range(len(dataset)):
        item = dataset[index]
        image = item["image"][None].to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(image)
        probabilities = torch.softmax(logits.float(), 1)[0]
        confidence, prediction = probabilities.max(0)
        target = item["target"].numpy()
        predictions.append(prediction.cpu().numpy().ravel())
        targets.append(target.ravel())
        confidences.append(confidence.cpu().numpy().ravel()[target.ravel() != -100])
    model.train()
    metrics = annotated_metrics(np.concatenate(predictions), np.concatenate(targets), tree)
    scores = np.concatenate(confidences)
    threshold = float(np.quantile(scores, 1 - keep)) if scores.size else 0.0
    return metrics, {
        "score": "max_softmax",
        "threshold": threshold,
        "kept_fraction": keep,
        "calibration_pixels": int(scores.size),
    }


def _autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if device.type != "cuda" or not amp:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _resolve_config(run_dir: Path, config: TrainConfig | None, resume: bool) -> TrainConfig:
    if not resume:
        if (run_dir / "checkpoints" / "last.json").exists():
            raise HsisegError(f"{run_dir} holds a training run; pass --resume to continue it or choose another folder")
        return config or TrainConfig()
    saved = run_dir / "args.json"
    if not saved.is_file():
        raise HsisegError(f"{run_dir}: nothing to resume (no args.json)")
    stored = TrainConfig(**json.loads(saved.read_text())["config"])
    if config is not None and config.epochs != stored.epochs:
        stored.epochs = config.epochs  # continuing for longer is allowed; everything else stays as it was
    return stored


def _prepare_run_dir(run_dir: Path, spec_path: Path, config: TrainConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec_path, run_dir / "spec.yaml")
    with atomic_path(run_dir / "args.json") as temporary:
        temporary.write_text(json.dumps({"spec": str(spec_path.resolve()), "config": asdict(config)}, indent=2))


def _write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    with atomic_path(run_dir / "metrics.csv") as temporary:
        temporary.write_text(buffer.getvalue())
    _plot_curves(run_dir / "curves.png", history)


def _read_history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open() as handle:
        return [
            {k: (int(v) if k in ("epoch", "pixels") else float(v)) for k, v in row.items()}
            for row in csv.DictReader(handle)
        ]


def _plot_curves(path: Path, history: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] + 1 for row in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.plot(epochs, [row["train_loss"] for row in history], marker="o")
    left.set(xlabel="epoch", ylabel="training loss", title="loss")
    for key, label in (
        ("leaf_accuracy", "leaf accuracy"),
        ("top_accuracy", "top-level accuracy"),
        ("mean_dice", "mean Dice"),
    ):
        right.plot(epochs, [row[key] for row in history], marker="o", label=label)
    right.set(xlabel="epoch", ylim=(0, 1), title="validation (annotated pixels)")
    right.legend(loc="lower right")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
