"""Inference for one cube: preprocessing from the model card, sliding-window prediction with smooth blending,
unknown-tissue scores and hierarchical decoding.

- The model card's :class:`~hsiseg.spectral.Preprocessing` is reapplied, including resampling onto the
  wavelength grid the network was trained on (a cube from another camera is resampled; a cube whose bands
  cannot be matched at all is an error).
- Sliding windows of ``tile`` pixels overlapping by ``overlap``, batched; each window's probabilities are
  weighted by a separable cosine ramp (1 in the middle, small at the borders) before averaging, so window
  seams do not show. Optional flip test-time augmentation averages 4 flips.
- Unknown tissue: per-pixel OOD score from the logits (``max_softmax``, ``max_logit`` or ``energy`` =
  -logsumexp(z)); a pixel is unknown when it is less confident than the threshold calibrated at training
  time (stored in the card) or given by the user.
- Hierarchical decoding (METHOD.md section 5): ``level=d`` reports each pixel's depth-d ancestor;
  ``confidence=T`` descends from the root to the most probable child while that child's marginal
  probability stays >= T and reports the deepest such node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hsiseg.errors import HsisegError
from hsiseg.io import Cube
from hsiseg.spectral import Preprocessing
from hsiseg.tree import LabelTree

OOD_SCORES = ("max_softmax", "max_logit", "energy")


@dataclass
class Prediction:
    """Per-pixel results for one cube (H, W)."""

    probabilities: np.ndarray  # (C, H, W) float32
    labels: np.ndarray  # (H, W) int32 leaf codes
    score: np.ndarray  # (H, W) float32 OOD score, higher = more like a trained class
    unknown: np.ndarray  # (H, W) bool
    confidence: np.ndarray  # (H, W) float32 probability of the predicted leaf

    def labels_with_unknown(self) -> np.ndarray:
        return np.where(self.unknown, -1, self.labels).astype(np.int32)


class Predictor:
    """A loaded network and its model card, ready to predict cubes."""

    def __init__(
        self,
        model: nn.Module,
        card: dict[str, Any],
        device: str | torch.device = "cpu",
        tile: int = 256,
        overlap: float = 0.25,
        batch_size: int = 4,
        flip_tta: bool = False,
        ood_score: str | None = None,
        ood_threshold: float | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.card = card
        self.device = torch.device(device)
        self.tree = LabelTree.from_dict(card["label_tree"], source="model card")
        self.preprocessing = Preprocessing.model_validate(card["preprocessing"])
        self.in_channels = int(card["model"]["in_channels"])
        if not 0 <= overlap < 1 or tile < 16:
            raise HsisegError(f"prediction: need tile >= 16 and 0 <= overlap < 1, got {tile}, {overlap}")
        self.tile, self.overlap, self.batch_size, self.flip_tta = tile, overlap, batch_size, flip_tta
        calibrated = card.get("ood", {})
        self.ood_score = ood_score or calibrated.get("score", "max_softmax")
        if self.ood_score not in OOD_SCORES:
            raise HsisegError(f"prediction: unknown OOD score {self.ood_score!r}; choose one of {OOD_SCORES}")
        if ood_threshold is None and self.ood_score == calibrated.get("score"):
            ood_threshold = calibrated.get("threshold")
        self.ood_threshold = ood_threshold  # None: no pixel is declared unknown

    def prepare(self, cube: Cube) -> torch.Tensor:
        """(B', H, W) float32 network input from a cube, with the card's preprocessing."""
        grid = self.preprocessing.wavelengths
        if grid is not None:
            low, high = cube.wavelengths.min(), cube.wavelengths.max()
            overlap = np.mean((np.asarray(grid) >= low - 5) & (np.asarray(grid) <= high + 5))
            if overlap < 0.5:
                source = cube.meta.get("source", "cube")
                raise HsisegError(
                    f"{source}: its bands ({low:g}-{high:g} nm) cover only {overlap:.0%} of the model's wavelength "
                    f"grid ({min(grid):g}-{max(grid):g} nm); this model cannot read it"
                )
        data, _ = self.preprocessing.apply(cube.data, cube.wavelengths)
        if data.shape[-1] != self.in_channels:
            source = cube.meta.get("source", "cube")
            raise HsisegError(
                f"{source}: {data.shape[-1]} bands after preprocessing, the model takes {self.in_channels}"
            )
        # (B, H, W) view of the (H, W, B) array: channels-last strides, which convolutions take without a copy
        return torch.from_numpy(np.ascontiguousarray(data)).permute(2, 0, 1)

    @torch.no_grad()
    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """(C, H, W) float32 logits of a (B, H, W) image by blended sliding windows (see module docstring)."""
        _, height, width = image.shape
        if height <= self.tile and width <= self.tile:
            return self._forward(image[None].to(self.device))[0].float().cpu()
        starts_y = _starts(height, self.tile, self.overlap)
        starts_x = _starts(width, self.tile, self.overlap)
        tile_h, tile_w = min(self.tile, height), min(self.tile, width)
        ramp = torch.from_numpy(np.outer(_ramp(tile_h), _ramp(tile_w))).float()
        total = torch.zeros((self.tree.num_leaves, height, width))
        weight = torch.zeros((height, width))
        windows = [(y, x) for y in starts_y for x in starts_x]
        for first in range(0, len(windows), self.batch_size):
            batch = windows[first : first + self.batch_size]
            crops = torch.stack([image[:, y : y + tile_h, x : x + tile_w] for y, x in batch]).to(self.device)
            outputs = self._forward(crops).float().cpu()
            for (y, x), output in zip(batch, outputs, strict=True):
                total[:, y : y + tile_h, x : x + tile_w] += output * ramp
                weight[y : y + tile_h, x : x + tile_w] += ramp
        return total / weight

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        if not self.flip_tta:
            return self.model(batch)
        outputs = [self.model(batch), self.model(batch.flip(-1)).flip(-1)]
        outputs += [self.model(batch.flip(-2)).flip(-2), self.model(batch.flip(-1, -2)).flip(-1, -2)]
        return torch.stack(outputs).mean(0)

    def predict(self, cube: Cube, prepared: torch.Tensor | None = None) -> Prediction:
        """Leaf map, probabilities, OOD score and unknown mask of one cube (``prepared``: its network input,
        when :meth:`prepare` already ran, e.g. in a prefetch thread)."""
        logits = self.logits(self.prepare(cube) if prepared is None else prepared)
        probabilities = torch.softmax(logits, 0)
        confidence, labels = probabilities.max(0)
        if self.ood_score == "max_softmax":
            score = confidence
        elif self.ood_score == "max_logit":
            score = logits.max(0).values
        else:
            score = torch.logsumexp(logits, 0)  # negative energy: higher = more in-distribution
        unknown = (
            score < self.ood_threshold if self.ood_threshold is not None else torch.zeros_like(labels, dtype=torch.bool)
        )
        return Prediction(
            probabilities.numpy(), labels.numpy().astype(np.int32), score.numpy(), unknown.numpy(), confidence.numpy()
        )


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
