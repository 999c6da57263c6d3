"""One optimiser step and one round of steps: AdamW with warm-up and cosine decay, AMP, clipping, DDP."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from hsiseg.dataset.pixel_batches import PixelBatches
from hsiseg.errors import HsisegError
from hsiseg.losses import build_loss
from hsiseg.training.config import TrainConfig
from hsiseg.training.data import TrainingData
from hsiseg.training.devices import Distributed
from hsiseg.training.reporting import Reporter


def warmup_cosine(total_steps: int, warmup_steps: int):
    """Learning-rate factor: linear warm-up to 1, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def wrap_distributed(network: nn.Module, world: Distributed, device: torch.device) -> nn.Module:
    if world.world_size <= 1:
        return network
    return nn.parallel.DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)


@dataclass
class TrainingStep:
    """One optimiser step (forward under autocast, loss, backward with scaling and clipping), run for a round."""

    network: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    device: torch.device
    autocast_dtype: torch.dtype | None
    config: TrainConfig
    data: TrainingData
    loader: DataLoader
    sampler: DistributedSampler | None

    @classmethod
    def create(
        cls, model: nn.Module, data: TrainingData, config: TrainConfig, device: torch.device, world: Distributed
    ) -> TrainingStep:
        """Loss, optimiser (AdamW), warm-up + cosine schedule over ``config.steps``, AMP, DDP and the loader."""
        loss_fn = build_loss(config.loss, data.train_set.spec.tree, **config.loss_options).to(device)
        model.to(device)
        if device.type == "cuda" and config.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack it
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        warmup = max(1, int(config.warmup * config.steps))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.steps, warmup))
        compiled = cast(nn.Module, torch.compile(model)) if config.compile else model
        network = wrap_distributed(compiled, world, device)
        autocast_dtype = _autocast_dtype(device, config.amp, config.amp_dtype)
        scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)
        distributed = world.world_size > 1
        sampler: DistributedSampler | None = (
            DistributedSampler(data.steps, world.world_size, world.rank, shuffle=False) if distributed else None
        )
        loader = DataLoader(
            data.steps,
            batch_size=1 if isinstance(data.steps, PixelBatches) else config.batch_size,
            sampler=sampler,
            num_workers=config.workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,  # workers must see set_epoch: each round gets fresh ones
        )
        return cls(
            network, loss_fn, optimizer, scheduler, scaler, device, autocast_dtype, config, data, loader, sampler
        )

    def run_round(self, round_index: int, reporter: Reporter) -> float:
        """Run this round's steps; the mean training loss per item."""
        self.data.steps.set_epoch(round_index)
        if self.sampler is not None:
            self.sampler.set_epoch(round_index)
        self.network.train()
        tally = _Tally(time.perf_counter())
        first = round_index * self.config.validate_every
        pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (step, loss on the device, batch indices)
        for offset, batch in zip(range(self.config.steps_in_round(round_index)), self.loader, strict=False):
            pending.append((first + offset, self(batch, first + offset), batch["index"]))
            if len(pending) == SYNC_EVERY:
                self._flush(pending, tally, reporter)
        self._flush(pending, tally, reporter)
        return tally.total / max(1, tally.count)

    def _flush(self, pending: list[tuple[int, torch.Tensor, torch.Tensor]], tally: _Tally, reporter: Reporter) -> None:
        """The pending steps' losses to the host in one transfer: checked, summed and reported."""
        if not pending:
            return
        values = torch.stack([loss for _, loss, _ in pending]).float().cpu().tolist()
        for (step, _, index), value in zip(pending, values, strict=True):
            if not math.isfinite(value):
                names = sorted({self.data.train_set.sample_ids[int(i)] for i in index.flatten().unique()})
                raise HsisegError(
                    f"non-finite loss ({value}) at step {step}, data from {names}; training stopped, "
                    "the last good checkpoint is kept (try a lower learning rate)"
                )
            items = len(index.flatten())
            tally.total, tally.count = tally.total + value * items, tally.count + items
            reporter.step(step, value, tally.count / max(1e-9, time.perf_counter() - tally.started))
        pending.clear()

    def __call__(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """One optimiser step; the loss stays on the device (no host sync: :meth:`run_round` batches them)."""
        self.optimizer.zero_grad(set_to_none=True)
        try:  # the batch's copy to the device can run out of memory too
            images = batch["image"].to(self.device, non_blocking=True)
            if self.device.type == "cuda" and self.config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            target = batch["target"].to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                loss = self.loss_fn(self.network(images), target)
            self.scaler.scale(loss).backward()
            if self.config.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.network.parameters(), self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        except torch.OutOfMemoryError:
            raise HsisegError(
                f"out of memory with batch_size {self.config.batch_size}, patch_size {self.config.patch_size} and "
                f"pixels_per_step {self.config.pixels_per_step}; halve the one your model uses"
            ) from None
        self.scheduler.step()
        return loss.detach()


AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
SYNC_EVERY = 16  # steps between host syncs (losses to the CPU and their check): a GPU never waits every step


@dataclass
class _Tally:
    """A round's running loss sum, item count and start time."""

    started: float
    total: float = 0.0
    count: int = 0


def _autocast_dtype(device: torch.device, amp: bool, amp_dtype: str = "auto") -> torch.dtype | None:
    """The autocast type of a run: ``auto`` is bfloat16 on CUDA where supported, else float16, and off on a
    CPU (measured slower there); ``bfloat16`` / ``float16`` force it on any device."""
    if not amp:
        return None
    if amp_dtype != "auto":
        return AMP_DTYPES[amp_dtype]
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
