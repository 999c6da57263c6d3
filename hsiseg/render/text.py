"""Names are data: class names drawn by matplotlib as the characters they are, never as mathtext."""

from __future__ import annotations


def plot_text(name: str) -> str:
    """``name`` for a matplotlib label: ``$`` escaped, so ``$x^2$`` is drawn as typed and ``$`` alone cannot
    make matplotlib raise (a class called ``$5 gauze`` is a name, not a formula)."""
    return name.replace("$", r"\$")
