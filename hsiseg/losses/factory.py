"""Losses built by name and options, as a data spec or the command line gives them."""

from __future__ import annotations

from typing import Any

from hsiseg.losses.base import DEFAULT_IGNORE_INDEX, LOSSES, TreeLoss
from hsiseg.tree import LabelTree


def loss_options(name: str) -> dict[str, Any]:
    """The options a loss accepts beyond the tree, with their defaults."""
    return {"ignore_index": DEFAULT_IGNORE_INDEX, "reduction": "mean", **LOSSES.options(LOSSES.check(name))}


def check_loss(name: str, options: dict[str, Any]) -> None:
    """Validate a loss name and its options (dashes or underscores) without building it."""
    LOSSES.check(name, _underscored(options))


def build_loss(
    name: str,
    tree: LabelTree,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
    **options: Any,
) -> TreeLoss:
    """Build a loss from its name and options.

    Options are keyword arguments with underscores (``top_level_weight``); dashes are accepted too
    (``top-level-weight``). Unknown names and options raise :class:`HsisegError` with the closest valid one.
    """
    options = _underscored(options)
    cls = LOSSES.lookup(LOSSES.check(name, options))
    return cls(tree, ignore_index=ignore_index, reduction=reduction, **options)


def _underscored(options: dict[str, Any]) -> dict[str, Any]:
    return {key.replace("-", "_"): value for key, value in options.items()}
