"""The contract every segmentation network follows, with defaults for the optional capabilities.

A network maps (N, B, H, W) spectra to (N, C, H, W) logits. What else it can do is declared here, not found
by probing attributes at call sites: subclass :class:`Network` and override what the network supports.

=========================  =========================================================  ======================
capability                 meaning                                                    default
=========================  =========================================================  ======================
``input_multiple``         H and W must be multiples of this (:class:`AnySize` pads)  1
``pixelwise_training``     receptive field of one pixel while training: trained on    False
                           batches of annotated pixels instead of image crops
``has_features``           :meth:`forward_features` returns penultimate features      False
                           (feature-space unknown-tissue scores need them)
``fit_input_statistics``   learns an input standardisation from training spectra      no-op
``has_context``            has a parameter-free spatial context: ``forward_pixels``   False
                           gives the outputs before it, ``apply_context`` applies it
                           (to logits and other maps at once), ``smooth_maps`` to
                           other per-pixel maps (unknown-tissue scores)
=========================  =========================================================  ======================

A network from elsewhere (``smp-*``) is not a :class:`Network`; :func:`network_of` gives it the defaults.
"""

from __future__ import annotations

import torch
from torch import nn

from hsiseg.registry import Registry


class Network(nn.Module):
    """Base class of hsiseg's networks (see module docstring); subclasses implement :meth:`forward`."""

    input_multiple: int = 1
    pixelwise_training: bool = False
    has_features: bool = False
    has_context: bool = False

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, C, H, W) and penultimate features (N, F, H, W); only when ``has_features``."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its penultimate features")

    def fit_input_statistics(self, spectra: torch.Tensor) -> None:
        """Learn the input standardisation from training spectra (P, B); networks without one ignore it."""

    def forward_pixels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (N, C, H, W) before the parameter-free context, and features (N, F, H, W) or None; with
        :meth:`apply_context` the same as :meth:`forward_features` in eval mode. Default: no context."""
        if self.has_features:
            return self.forward_features(x)
        return self(x), None

    def apply_context(
        self, logits: torch.Tensor, maps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The parameter-free context on per-pixel logits (N, C, H, W) and, with the same weights, on other
        per-pixel ``maps`` (N, K, H, W); unchanged for networks without one."""
        return logits, maps

    def smooth_maps(self, maps: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Per-pixel maps (N, K, H, W) averaged by the network's parameter-free spatial context, guided by
        its ``features`` (N, F, H, W); unchanged for networks without one."""
        return maps


# hsiseg's networks by name (``@MODELS.register("name")`` on the class); ``smp-<arch>`` is resolved apart.
MODELS: Registry[type[Network]] = Registry("model", skip=("in_channels", "classes"))


class ForeignNetwork(Network):
    """A view of a network that does not know the contract (e.g. segmentation_models_pytorch): the defaults.
    It is built on demand and not part of any model (its weights stay the foreign network's)."""

    def __init__(self, network: nn.Module, input_multiple: int = 1) -> None:
        super().__init__()
        self.foreign = network
        self.input_multiple = input_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.foreign(x)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside DDP, ``torch.compile`` and :class:`AnySize` wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None) or getattr(model, "network", None)
        if inner is None or not isinstance(inner, nn.Module):
            return model
        model = inner


def network_of(model: nn.Module) -> Network:
    """The network inside any wrappers, as a :class:`Network` (a foreign one with the defaults)."""
    inner = unwrap(model)
    return inner if isinstance(inner, Network) else ForeignNetwork(inner)
