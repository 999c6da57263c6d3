"""Training a segmentation network on a data-spec split with any hsiseg loss (background-free: the loss sees
annotated pixels only).

``train(spec, run_dir, TrainConfig(...))`` (:mod:`hsiseg.training.entry`) runs a budget of ``steps``
optimiser steps, validating and checkpointing every ``validate_every`` steps (a *round*), and writes into ``run_dir``:

- ``spec.yaml`` (a copy of the data spec) and ``args.json`` (the full configuration);
- ``metrics.csv`` (one row per round) and ``curves.png``;
- ``validation_strokes.json`` and ``validation_strokes/<sample>.png`` when the training and validation splits
  share images: the scribble strokes held out for validation (:mod:`hsiseg.dataset.strokes`);
- ``checkpoints/best.{json,safetensors}`` (best validation mean Dice, held-out pixels only; after the last
  round its unknown-tissue scores are fitted on the training pixels and calibrated on the held-out ones, or
  cross-fitted on every stroke where those are strokes of the training images,
  :func:`calibrate_best`, :mod:`hsiseg.ood.calibration`, :mod:`hsiseg.training.unknown_tissue`) and
  ``checkpoints/last/`` (the last round's ``model.*`` with its training state for ``resume=True``:
  optimizer, scheduler, round, RNG; saved as one unit with a manifest, see :mod:`hsiseg.models.checkpoint`);
- ``checkpoints/final.*`` (``refit``, when there were validation pixels): a fresh network trained on *all*
  scribbles of the training and validation images for the best validated number of steps (annotations are
  scarce: at 3% scribbles on Indian Pines, training without the held-out strokes costs ~0.1 leaf Dice; on
  the demo, the third surgery's scribbles raise dense leaf accuracy from 0.970 to 0.985). Its card carries
  the held-out validation metrics; its unknown-tissue scores are refitted on all scribbles and their
  thresholds transferred from the validated network (:func:`hsiseg.ood.calibration.transfer`).
  :func:`final_checkpoint` names the checkpoint to predict with.

What a step sees: networks that see one pixel at a time while training (``pixel``, ``spectral-spatial``,
see :func:`hsiseg.models.pixelwise_training`) get ``pixels_per_step`` annotated pixels
(:class:`~hsiseg.dataset.pixel_batches.PixelBatches`); others get ``batch_size`` crops of ``patch_size`` centred on
annotated pixels. Both draw annotated pixels with class-balanced weights (``class_balance``) and augment
spectrally (crops also geometrically).

GPU path: CUDA when available (``device="auto"``), automatic mixed precision (bfloat16 where supported,
else float16 with a gradient scaler), channels-last, pinned memory and non-blocking copies, optional
``torch.compile``. Multi-GPU/multi-node: launch the same command with ``torchrun``; DDP is set up from the
environment (NCCL on CUDA, gloo on CPU), each rank runs every step on its own share of the data, rank 0
validates and writes. AdamW with linear warm-up and cosine decay, gradient clipping, seeded everything.

Modules, in the order a run uses them: :mod:`~hsiseg.training.config`, :mod:`~hsiseg.training.devices`,
:mod:`~hsiseg.training.data`, :mod:`~hsiseg.training.step`, :mod:`~hsiseg.training.loop`,
:mod:`~hsiseg.training.calibration`, :mod:`~hsiseg.training.refit`, :mod:`~hsiseg.training.auto` (``model="auto"``),
:mod:`~hsiseg.training.run_folder` (files of the run), :mod:`~hsiseg.training.reporting`.
"""

from __future__ import annotations

from hsiseg.training.config import TrainConfig
from hsiseg.training.data import TrainingData, build_training_data
from hsiseg.training.devices import resolve_device, seed_everything
from hsiseg.training.entry import train
from hsiseg.training.reporting import Reporter, SilentReporter
from hsiseg.training.run_folder import check_resume_options, final_checkpoint
from hsiseg.training.step import warmup_cosine

__all__ = [
    "Reporter",
    "SilentReporter",
    "TrainConfig",
    "TrainingData",
    "build_training_data",
    "check_resume_options",
    "final_checkpoint",
    "resolve_device",
    "seed_everything",
    "train",
    "warmup_cosine",
]
