"""The unknown-tissue score contract: what a network gives per pixel, the score base class, the registry."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from hsiseg.errors import HsisegError
from hsiseg.registry import Registry

Space = Literal["logits", "features", "inputs"]


@dataclass
class PixelOutputs:
    """What a network gives for P pixels (pixel-major)."""

    logits: torch.Tensor  # (P, C) float32
    features: torch.Tensor | None  # (P, F) penultimate features; None for networks without them
    inputs: torch.Tensor | None  # (P, B) network input spectra
    targets: torch.Tensor | None = None  # (P,) int64 target codes, where known (training pixels)

    @property
    def labels(self) -> torch.Tensor:
        """(P,) the target codes; an error where they are not known (outputs of unannotated pixels)."""
        if self.targets is None:
            raise ValueError("these pixel outputs carry no target codes")
        return self.targets

    def leaf_pixels(self, num_leaves: int) -> PixelOutputs:
        """The pixels whose target is a leaf (partial labels left out)."""
        return self.select(self.labels < num_leaves)

    def select(self, keep: torch.Tensor) -> PixelOutputs:
        """The pixels where ``keep`` (P,) bool is set."""
        targets = None if self.targets is None else self.targets[keep]
        features = None if self.features is None else self.features[keep]
        inputs = None if self.inputs is None else self.inputs[keep]
        return PixelOutputs(self.logits[keep], features, inputs, targets)

    @staticmethod
    def concatenate(parts: list[PixelOutputs]) -> PixelOutputs:
        """The pixels of every part, in order (a space is kept when the first part has it)."""

        def joined(name: str) -> torch.Tensor | None:
            values = [getattr(part, name) for part in parts]
            return None if values[0] is None else torch.cat(values)

        logits = joined("logits")
        assert logits is not None  # every part has logits
        return PixelOutputs(logits, joined("features"), joined("inputs"), joined("targets"))

    def space(self, name: Space, score: str) -> torch.Tensor:
        """(P, D) float32 values of one space; a clear error when the network does not provide it."""
        values = getattr(self, name)
        if values is None:
            raise HsisegError(f"OOD score {score!r} needs the network's {name}; this network has none")
        return values.float()


class OodScore:
    """One unknown-tissue score (see module docstring). Options are constructor keyword arguments."""

    name: ClassVar[str]
    space: ClassVar[Space] = "logits"

    @property
    def spaces(self) -> tuple[Space, ...]:
        """Every space the score reads (one for most; ``combined`` reads two)."""
        return (self.space,)

    @property
    def fitted(self) -> bool:
        """Whether the score learns from training pixels (then it needs :meth:`fit` or a loaded state)."""
        return bool(self.state_dict())

    def options(self) -> dict[str, Any]:
        """The constructor options, as stored in the model card."""
        return {}

    def fit(self, training: PixelOutputs) -> None:
        """Learn from the leaf-labelled training pixels (``training.targets``: their leaf codes)."""

    def __call__(self, outputs: PixelOutputs) -> torch.Tensor:
        """(P,) scores; higher = more in-distribution."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What :meth:`fit` learnt, as named tensors."""
        return {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`fit` learnt."""

    def to(self, device: torch.device) -> OodScore:
        """This score with what it learnt on ``device`` (itself when already there), to score outputs there."""
        state = self.state_dict()
        if all(tensor.device == device for tensor in state.values()):
            return self
        moved = copy.deepcopy(self)
        moved.load_state_dict({name: tensor.to(device) for name, tensor in state.items()})
        return moved


# Every score registers here by its ``name`` (``@OOD_SCORES.register()`` on the class).
OOD_SCORES: Registry[type[OodScore]] = Registry("OOD score")


def build_score(name: str, **options: Any) -> OodScore:
    """The score ``name`` with ``options``; unknown names or options raise :class:`HsisegError`."""
    cls = OOD_SCORES.lookup(name)
    try:
        return cls(**options)
    except (TypeError, ValueError) as error:
        raise HsisegError(f"OOD score {name!r}: {error}") from None


