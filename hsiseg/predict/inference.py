"""Inference for one cube: preprocessing from the model card, sliding-window prediction with smooth blending,
unknown-tissue scores, invalid pixels and hierarchical decoding.

- The model card's :class:`~hsiseg.spectral.Preprocessing` is reapplied, including resampling onto the
  wavelength grid the network was trained on (a cube from another camera is resampled; a cube whose bands
  cannot be matched at all is an error).
- Sliding windows of ``tile`` pixels overlapping by ``overlap``, batched; each window's logits (and features,
  when a feature-space score needs them) are weighted by a separable cosine ramp (1 in the middle, small at the
  borders) before averaging, so window seams do not show. Optional flip test-time augmentation averages 4 flips.
- A per-pixel network with a parameter-free context (the default ``spectral-spatial``, ``guided``) needs no
  windows: its per-pixel part runs in bands of rows, and the context runs once over the whole image, for the
  class probabilities and the unknown-tissue score maps in the same pass (the weights are computed once; as in
  calibration, which sees whole images). Not when a score reads the logits (they must have the context first).
- Invalid pixels (:func:`~hsiseg.io.invalid_pixels`: non-finite, all-zero or saturated spectra) are never
  tissue and never unknown: their network input is set to 0 and they get their own mask.
- Unknown tissue: the per-pixel score ``ood_score`` (:mod:`hsiseg.ood`; default: the card's) below its
  threshold calibrated at training time (stored in the card), or below ``ood_threshold`` when given. A score
  the model has no calibration for is an error (unless a threshold is given for a logit score).
  ``all_scores=True`` also computes every other calibrated score's map (saved with the probabilities).
- Hierarchical decoding (METHOD.md section 5): ``level=d`` reports each pixel's depth-d ancestor;
  ``confidence=T`` descends from the root to the most probable child while that child's marginal
  probability stays >= T and reports the deepest such node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hsiseg.errors import HsisegError
from hsiseg.io import Cube, invalid_pixels
from hsiseg.labels import INVALID, UNKNOWN
from hsiseg.models import network_of
from hsiseg.models.card import ModelCard, OodCalibration
from hsiseg.models.checkpoint import load_model, load_ood_scores
from hsiseg.ood import OodScore, build_score
from hsiseg.ood.maps import masked, network_outputs, per_pixel_maps, pixel_outputs, score_maps, unmask
from hsiseg.ood.trust import promise
from hsiseg.predict.options import InferenceOptions
from hsiseg.spectral import Preprocessing
from hsiseg.tree import LabelTree

# Pixels per band of a per-pixel network on a CPU. Activations of 16384 pixels (8 MiB at 128 features) are
# reused from the allocator's heap and stay near the cache; bands of 262144 pixels (134 MiB) were mapped fresh
# from the kernel on every band (a page fault per 4 KiB: 0.35 s of a 1.9 s frame) and missed the cache.
# Measured in docs/prediction.md ("Bands a CPU can hold").
CPU_BAND_PIXELS = 16384


@dataclass
class Prepared:
    """A cube ready for the network."""

    image: torch.Tensor  # (B', H, W) float32 network input (invalid pixels 0)
    invalid: np.ndarray  # (H, W) bool: no usable spectrum (hsiseg.io.invalid_pixels)


@dataclass
class Prediction:
    """Per-pixel results for one cube (H, W)."""

    probabilities: np.ndarray  # (C, H, W) float32
    labels: np.ndarray  # (H, W) int32 leaf codes (of every pixel, before the unknown and invalid masks)
    score: np.ndarray  # (H, W) float32 OOD score in use, higher = more like a trained class
    unknown: np.ndarray  # (H, W) bool: valid pixels scoring below the threshold
    invalid: np.ndarray  # (H, W) bool: no usable spectrum
    confidence: np.ndarray  # (H, W) float32 probability of the predicted leaf
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # every computed score's (H, W) map

    def labels_with_unknown(self) -> np.ndarray:
        """(H, W) int32: leaf codes, :data:`UNKNOWN` (-1) and :data:`INVALID` (-2)."""
        labels = np.where(self.unknown, UNKNOWN, self.labels)
        return np.where(self.invalid, INVALID, labels).astype(np.int32)


def prepare_cube(cube: Cube, preprocessing: Preprocessing, in_channels: int | None = None) -> Prepared:
    """The network input of a cube with ``preprocessing`` and its invalid pixels (input 0); ``in_channels``: the
    band count the network takes (checked when given)."""
    grid = preprocessing.wavelengths
    if grid is not None:
        low, high = cube.wavelengths.min(), cube.wavelengths.max()
        overlap = np.mean((np.asarray(grid) >= low - 5) & (np.asarray(grid) <= high + 5))
        if overlap < 0.5:
            source = cube.meta.get("source", "cube")
            raise HsisegError(
                f"{source}: its bands ({low:g}-{high:g} nm) cover only {overlap:.0%} of the model's wavelength "
                f"grid ({min(grid):g}-{max(grid):g} nm); this model cannot read it"
            )
    invalid = invalid_pixels(cube)
    raw = np.where(invalid[..., None], np.float32(0), cube.data) if invalid.any() else cube.data
    data, _ = preprocessing.apply(raw, cube.wavelengths)
    if in_channels is not None and data.shape[-1] != in_channels:
        source = cube.meta.get("source", "cube")
        raise HsisegError(f"{source}: {data.shape[-1]} bands after preprocessing, the model takes {in_channels}")
    data[invalid] = 0.0
    # (B, H, W) view of the (H, W, B) array: channels-last strides, which convolutions take without a copy
    return Prepared(torch.from_numpy(np.ascontiguousarray(data)).permute(2, 0, 1), invalid)


class Predictor:
    """A loaded network, its model card and its fitted unknown-tissue scores, ready to predict cubes."""

    def __init__(
        self,
        model: nn.Module,
        card: ModelCard,
        device: str | torch.device = "cpu",
        tile: int = 256,
        overlap: float = 0.25,
        batch_size: int = 4,
        flip_tta: bool = False,
        ood_score: str | None = None,
        ood_threshold: float | None = None,
        scores: dict[str, OodScore] | None = None,
        all_scores: bool = False,
    ) -> None:
        self.model = model.to(device).eval()
        self.card = card
        self.device = torch.device(device)
        self.tree = card.tree
        self.preprocessing = card.preprocessing
        self.in_channels = card.model.in_channels
        InferenceOptions(tile=tile, overlap=overlap, batch_size=batch_size).check_inference()
        self.tile, self.overlap, self.batch_size, self.flip_tta = tile, overlap, batch_size, flip_tta
        self.scores = dict(scores or {})
        self.ood_score, self.ood_threshold = self._choose_score(ood_score, ood_threshold)
        self.computed = list(self.scores) if all_scores else [self.ood_score] if self.ood_score else []
        spaces = {space for name in self.computed for space in self.scores[name].spaces}
        network = network_of(self.model)
        guided = bool(self.computed) and network.has_context  # maps take the context
        self.needs_features = network.has_features and ("features" in spaces or guided)
        self.needs_inputs = "inputs" in spaces
        # A per-pixel network with a parameter-free context, and scores that do not read its logits: the per-pixel
        # part runs in row bands (it needs no windows), the context once over the whole image, for the logits and
        # the score maps in the same pass (module docstring).
        self.context_once = network.has_context and network.pixelwise_training and "logits" not in spaces
        self.needs_pixel_features = network.has_features and "features" in spaces
        self.device_scores = {name: self.scores[name].to(self.device) for name in self.computed}  # maps on device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", **options: Any) -> Predictor:
        """A predictor for the checkpoint ``path`` (its network, card and fitted OOD scores); ``options`` are
        the constructor's."""
        model, card = load_model(path, device)
        return cls(model, card, device, scores=load_ood_scores(path, card), **options)

    @classmethod
    def from_options(cls, path: str | Path, options: InferenceOptions, all_scores: bool = False) -> Predictor:
        """A predictor for the checkpoint ``path`` run as ``options`` say."""
        return cls.from_checkpoint(
            path, options.device, tile=options.tile, overlap=options.overlap, batch_size=options.batch_size,
            flip_tta=options.flip_tta, ood_score=options.ood_score, ood_threshold=options.ood_threshold,
            all_scores=all_scores,
        )  # fmt: skip

    @property
    def calibration(self) -> OodCalibration | None:
        """The card's calibration of the score in use (None when no score is used)."""
        return self.card.ood.scores.get(self.ood_score) if self.ood_score else None

    @property
    def promise(self) -> str:
        """One line: what the unknown-tissue map promises (:func:`hsiseg.ood.trust.promise`)."""
        return promise(self.ood_score, self.ood_threshold, self.calibration)

    def _choose_score(self, name: str | None, threshold: float | None) -> tuple[str | None, float | None]:
        """The score in use and its threshold (see module docstring); None, None: no pixel is unknown."""
        name = name or self.card.ood.default
        if name is None:
            if threshold is not None:
                raise HsisegError("prediction: this model has no calibrated OOD score; name one with ood_score")
            return None, None
        calibration = self.card.ood.scores.get(name)
        if name not in self.scores:
            score = build_score(name, **(calibration.options if calibration else {}))  # unknown names: an error
            if score.fitted and calibration is not None:
                raise HsisegError(f"prediction: OOD score {name!r} needs what it learnt in training; load the "
                                  "model with Predictor.from_checkpoint")  # fmt: skip
            self.scores[name] = score
        if calibration is None and (threshold is None or self.scores[name].fitted):
            raise HsisegError(
                f"prediction: OOD score {name!r} is not calibrated for this model (calibrated: "
                f"{sorted(self.card.ood.scores) or 'none'}); choose one of those, or give ood_threshold "
                "for a logit score"
            )
        if threshold is None:
            assert calibration is not None  # (checked above)
            return name, calibration.threshold
        return name, threshold

    def prepare(self, cube: Cube) -> Prepared:
        """The network input of a cube, with the card's preprocessing, and its invalid pixels (input 0)."""
        return prepare_cube(cube, self.preprocessing, self.in_channels)

    @torch.no_grad()
    def outputs(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(C, H, W) logits and, when a computed score needs them, (F, H, W) penultimate features of a
        (B, H, W) image, by blended sliding windows or, for a per-pixel network with a context, in row bands
        with the context applied once (see module docstring)."""
        if self.context_once:
            logits, features, _ = self._pixel_outputs(image, keep_features=self.needs_pixel_features)
            return network_of(self.model).apply_context(logits[None])[0][0].cpu(), features
        _, height, width = image.shape
        if height <= self.tile and width <= self.tile:
            logits, features = self._forward(image[None].to(self.device))
            return logits[0].float().cpu(), features[0].float().cpu() if features is not None else None
        starts_y = _starts(height, self.tile, self.overlap)
        starts_x = _starts(width, self.tile, self.overlap)
        tile_h, tile_w = min(self.tile, height), min(self.tile, width)
        ramp = torch.from_numpy(np.outer(_ramp(tile_h), _ramp(tile_w))).float()
        totals: list[torch.Tensor | None] = [None, None]
        weight = torch.zeros((height, width))
        windows = [(y, x) for y in starts_y for x in starts_x]
        for first in range(0, len(windows), self.batch_size):
            batch = windows[first : first + self.batch_size]
            crops = torch.stack([image[:, y : y + tile_h, x : x + tile_w] for y, x in batch]).to(self.device)
            for index, output in enumerate(self._forward(crops)):
                if output is None:
                    continue
                output = output.float().cpu()
                total = totals[index]
                if total is None:
                    total = torch.zeros((output.shape[1], height, width))
                    totals[index] = total
                for (y, x), window in zip(batch, output, strict=True):
                    total[:, y : y + tile_h, x : x + tile_w] += window * ramp
            for y, x in batch:
                weight[y : y + tile_h, x : x + tile_w] += ramp
        summed_logits, summed_features = totals
        assert summed_logits is not None  # every window gives logits
        return summed_logits / weight, summed_features / weight if summed_features is not None else None

    @torch.no_grad()
    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """(C, H, W) float32 logits of a (B, H, W) image (see :meth:`outputs`)."""
        if self.context_once:  # no features kept: the network alone
            return network_of(self.model).apply_context(self._pixel_outputs(image)[0][None])[0][0].cpu()
        return self.outputs(image)[0]

    def _pixel_outputs(
        self, image: torch.Tensor, keep_features: bool = False, with_maps: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(C, H, W) logits before the context of a per-pixel network, its (F, H, W) features when
        ``keep_features``, and the (K, H, W) per-pixel maps of the computed scores when ``with_maps``; computed in
        bands of rows of about :meth:`_band_pixels` pixels, each band's scores while its features are at hand
        (the whole image's features are never gathered). Logits and maps stay on the device (the context
        runs there next); the features come back to the CPU."""
        network = network_of(self.model)
        _, height, width = image.shape
        rows = max(1, self._band_pixels() // max(1, width))
        image = self._on_device(image)
        logits, features, maps = [], [], []
        for top in range(0, height, rows):
            band = image[:, top : top + rows]
            band_logits, band_features = network.forward_pixels(band[None])
            band_logits = band_logits[0].float()
            band_features = None if band_features is None else band_features[0].float()
            logits.append(band_logits)
            if keep_features and band_features is not None:
                features.append(band_features.cpu())
            if with_maps and self.device_scores:
                pixels = pixel_outputs(band_logits, band_features if self.needs_pixel_features else None,
                                       band if self.needs_inputs else None)  # fmt: skip
                maps.append(per_pixel_maps(self.device_scores, pixels, (int(band.shape[1]), width))[0])
        return (torch.cat(logits, 1), torch.cat(features, 1) if features else None,
                torch.cat(maps, 1) if maps else None)  # fmt: skip

    def _band_pixels(self) -> int:
        """Pixels per band of the per-pixel network: :data:`CPU_BAND_PIXELS` on a CPU, ``batch_size`` windows'
        worth on an accelerator (which wants large batches)."""
        return CPU_BAND_PIXELS if self.device.type == "cpu" else self.tile * self.tile * self.batch_size

    def _on_device(self, image: torch.Tensor) -> torch.Tensor:
        """A (B, H, W) image on the prediction's device. A prepared image is a view of (H, W, B) memory: that
        memory is copied as it is (one plain copy; a copy of the (B, H, W) view would first transpose it on
        the CPU) and viewed as (B, H, W) there, the channels-last layout the per-pixel network reads."""
        if image.device == self.device:
            return image
        pixels_major = image.permute(1, 2, 0)
        if pixels_major.is_contiguous():
            return pixels_major.to(self.device).permute(2, 0, 1)
        return image.to(self.device)

    def _run(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return network_outputs(self.model, batch) if self.needs_features else (self.model(batch), None)

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and features of a batch; with ``flip_tta``, the mean over 4 flips (each flipped back)."""
        if not self.flip_tta:
            return self._run(batch)
        logits, features = self._run(batch)
        all_logits, all_features = [logits], [] if features is None else [features]
        for dims in [(-1,), (-2,), (-1, -2)]:
            flipped_logits, flipped_features = self._run(batch.flip(dims))
            all_logits.append(flipped_logits.flip(dims))
            if flipped_features is not None:
                all_features.append(flipped_features.flip(dims))
        mean_features = torch.stack(all_features).mean(0) if all_features else None
        return torch.stack(all_logits).mean(0), mean_features

    @torch.no_grad()
    def predict(self, cube: Cube, prepared: Prepared | None = None) -> Prediction:
        """Leaf map, probabilities, OOD scores, unknown and invalid masks of one cube (``prepared``: its network
        input, when :meth:`prepare` already ran, e.g. in a prefetch thread)."""
        prepared = self.prepare(cube) if prepared is None else prepared
        if self.context_once:
            return self._finish_in_context(prepared, *self._logits_and_maps(prepared.image))
        return self._finish(prepared, *self.outputs(prepared.image))

    @torch.no_grad()
    def predict_many(self, prepared: list[Prepared]) -> list[Prediction]:
        """Several frames at once: one forward pass when they have one size that fits a window (frames of a
        video on a GPU), else one by one. The same predictions as :meth:`predict` on each."""
        if self.context_once:  # per-pixel: batching frames adds nothing on a CPU; each frame's context is its own
            return [self._finish_in_context(item, *self._logits_and_maps(item.image)) for item in prepared]
        shapes = {tuple(item.image.shape) for item in prepared}
        _, height, width = prepared[0].image.shape
        if len(prepared) == 1 or len(shapes) > 1 or height > self.tile or width > self.tile:
            return [self._finish(item, *self.outputs(item.image)) for item in prepared]
        logits, features = self._forward(torch.stack([item.image for item in prepared]).to(self.device))
        return [
            self._finish(item, logits[k].float().cpu(), None if features is None else features[k].float().cpu())
            for k, item in enumerate(prepared)
        ]

    def _logits_and_maps(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits, _, maps = self._pixel_outputs(image, with_maps=True)
        return logits, maps

    def _finish_in_context(self, prepared: Prepared, logits: torch.Tensor, maps: torch.Tensor | None) -> Prediction:
        """:meth:`_finish` from per-pixel (C, H, W) logits and (K, H, W) score maps (of the computed scores):
        the context applied once to the logits and the maps together (invalid pixels take no part in the maps'
        averages)."""
        invalid = torch.from_numpy(prepared.invalid).to(logits.device)
        context, averaged = network_of(self.model).apply_context(logits[None], None if maps is None else
                                                                 masked(maps[None], invalid))  # fmt: skip
        smoothed = {} if maps is None or averaged is None else dict(zip(self.computed, unmask(averaged, maps[None],
                                                                        invalid)[0], strict=True))  # fmt: skip
        return self._finish(prepared, context[0], None, smoothed)

    def _finish(
        self, prepared: Prepared, logits: torch.Tensor, features: torch.Tensor | None,
        computed_maps: dict[str, torch.Tensor] | None = None,
    ) -> Prediction:  # fmt: skip
        """Probabilities, leaf map, OOD score maps and masks from one frame's (C, H, W) logits and features
        (``computed_maps``: the score maps, when already computed)."""
        image, invalid = prepared.image, prepared.invalid
        probabilities = torch.softmax(logits / self.card.temperature, 0)  # temperature-scaled (the card's)
        confidence, labels = probabilities.max(0)
        if computed_maps is None:
            computed = {name: self.scores[name] for name in self.computed}
            pixels = pixel_outputs(logits, features, image if self.needs_inputs else None)
            shape = (int(labels.shape[0]), int(labels.shape[1]))
            computed_maps = score_maps(self.model, computed, pixels, features, shape, torch.from_numpy(invalid))
        maps = {name: values.cpu().numpy() for name, values in computed_maps.items()}
        confidences = confidence.cpu().numpy()
        if self.ood_score is None or self.ood_threshold is None:
            score, unknown = confidences, np.zeros(invalid.shape, dtype=bool)
        else:
            score = maps[self.ood_score]
            unknown = (score < self.ood_threshold) & ~invalid
        return Prediction(probabilities.cpu().numpy(), labels.cpu().numpy().astype(np.int32), score, unknown,
                          invalid, confidences, maps)  # fmt: skip


def level_labels(labels: np.ndarray, tree: LabelTree, depth: int) -> np.ndarray:
    """Leaf codes (H, W) -> codes of their depth-``depth`` ancestors (negative values kept)."""
    table = tree.level_map()[depth - 1]
    return np.where(labels >= 0, table[np.clip(labels, 0, None)], labels)


def confident_nodes(probabilities: np.ndarray, tree: LabelTree, threshold: float) -> np.ndarray:
    """(H, W) node codes: the deepest node on the greedy most-probable path whose marginal is >= ``threshold``;
    -1 where even the most probable top-level node is below it."""
    flat = probabilities.reshape(tree.num_leaves, -1)
    marginals = tree.ancestor_matrix() @ flat  # (N, P)
    result = np.full(flat.shape[1], -1, dtype=np.int64)
    candidates = np.array([tree.index(name) for name in tree.top_level])
    current = candidates[np.argmax(marginals[candidates], axis=0)]
    active = marginals[current, np.arange(flat.shape[1])] >= threshold
    result[active] = current[active]
    children_of = {node.code: np.array(node.children) for node in tree.nodes if node.children}
    for _ in range(tree.depth - 1):
        for parent, children in children_of.items():
            here = active & (current == parent)
            if not here.any():
                continue
            pixels = np.flatnonzero(here)
            best = children[np.argmax(marginals[children][:, pixels], axis=0)]
            keep = marginals[best, pixels] >= threshold
            current[pixels[keep]] = best[keep]
            result[pixels[keep]] = best[keep]
            active[pixels[~keep]] = False
    return result.reshape(probabilities.shape[1:])


def _starts(size: int, tile: int, overlap: float) -> list[int]:
    if size <= tile:
        return [0]
    step = max(1, int(tile * (1 - overlap)))
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]


def _ramp(size: int) -> np.ndarray:
    """A cosine ramp (size,) rising from a small positive value at the borders to 1 in the middle."""
    position = (np.arange(size) + 0.5) / size
    return np.clip(np.sin(np.pi * position), 1e-3, None)
