"""A fused forward/backward for per-pixel losses, with an exact autograd fallback for hard pixels.

The tree losses are defined by their plain autograd implementations (``exact_pixel_loss``), which are
short and mirror the formulas. Autograd over those formulas materialises several (B, C, S) tensors per
step, so the losses also provide a *fast path*: a forward that saves only what the analytic gradient
needs and a backward that writes the gradient with in-place operations. The fast path may decline
pixels (a marginal probability that underflows in float32, a partial label it does not handle): those
pixels are recomputed with the exact implementation, both value and gradient. Tests compare both paths
against brute-force references and finite differences.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch.autograd.function import once_differentiable


class FastPath(Protocol):
    """What a loss module provides to :class:`FusedPixelLoss`."""

    def fast_forward(
        self, logits: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[Any, ...]]:
        """(per-pixel loss (B, S), pixels needing the exact path (B, S) bool, state for the backward)."""

    def fast_backward(self, state: tuple[Any, ...], grad_pixels: torch.Tensor) -> torch.Tensor:
        """Gradient (B, C, S) w.r.t. the logits, given d(total)/d(pixel loss) (B, S) (0 at invalid pixels)."""

    def exact_pixel_loss(self, logits: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The defining autograd implementation, per pixel (B, S)."""


class FusedPixelLoss(torch.autograd.Function):
    """Per-pixel loss (B, S) from logits (B, C, S) through a module's fast path (see module docstring)."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor, module: FastPath):
        with torch.no_grad():
            values, hard, state = module.fast_forward(logits, codes, valid)
            hard = hard & valid
            hard_index = hard.nonzero(as_tuple=True)
            hard_logits = logits[hard_index[0], :, hard_index[1]].unsqueeze(-1)  # (K, C, 1)
            hard_codes = codes[hard_index].unsqueeze(-1)  # (K, 1)
            if len(hard_codes):
                exact = module.exact_pixel_loss(hard_logits, hard_codes, torch.ones_like(hard_codes, dtype=torch.bool))
                values = values.index_put(hard_index, exact.squeeze(-1))
        ctx.module = module
        ctx.state = state
        ctx.hard = (hard_index, hard_logits, hard_codes)
        ctx.mark_non_differentiable(codes, valid)
        return values

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_values: torch.Tensor):
        if ctx.state is None:
            raise RuntimeError("hsiseg fused losses free their buffers after one backward; do not retain_graph")
        hard_index, hard_logits, hard_codes = ctx.hard
        hard_grad_values = grad_values[hard_index]
        grad_values = grad_values.index_put(hard_index, torch.zeros((), dtype=grad_values.dtype))
        grad = ctx.module.fast_backward(ctx.state, grad_values)  # 0 at hard pixels, whose weight is 0
        ctx.state = None
        if len(hard_codes):
            with torch.enable_grad():
                pixels = hard_logits.detach().requires_grad_()
                ones = torch.ones_like(hard_codes, dtype=torch.bool)
                exact = ctx.module.exact_pixel_loss(pixels, hard_codes, ones)
                (exact_grad,) = torch.autograd.grad(exact, pixels, hard_grad_values.unsqueeze(-1))
            grad[hard_index[0], :, hard_index[1]] = exact_grad.squeeze(-1)
        return grad, None, None, None
