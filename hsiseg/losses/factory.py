"""Losses built by name and options, as a data spec or the command line gives them."""

from __future__ import annotations

from typing import Any

from hsiseg.losses.base import DEFAULT_IGNORE_INDEX, LOSSES, TreeLoss
from hsiseg.losses.option_values import check_option_values
from hsiseg.tree import LabelTree


def loss_options(name: str) -> dict[str, Any]:
    """The options a loss accepts beyond the tree, with their defaults."""
    return {"ignore_index": DEFAULT_IGNORE_INDEX, "reduction": "mean", **LOSSES.options(LOSSES.check(name))}


def check_loss(name: str, options: dict[str, Any]) -> str:
    """Validate a loss name, its options (dashes or underscores) and their values without building it (what
    needs the tree, such as one weight per level, is checked when it is built); returns the registered name."""
    options = _underscored(options)
    registered = LOSSES.check(name, options)
    check_option_values(registered, options)
    return registered


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
    cls = LOSSES.lookup(check_loss(name, options))
    return cls(tree, ignore_index=ignore_index, reduction=reduction, **options)


def _underscored(options: dict[str, Any]) -> dict[str, Any]:
    return {key.replace("-", "_"): value for key, value in options.items()}
