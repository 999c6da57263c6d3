"""hsiseg: hyperspectral surgical scene segmentation with label-tree semantic losses.

The public entry points: :class:`LabelTree` (the clinical label tree), :func:`build_loss` (the losses)
and :class:`HsisegError` (every error a user can cause).
"""

from hsiseg.errors import HsisegError, HsisegWarning
from hsiseg.losses import build_loss
from hsiseg.tree import LabelTree

__version__ = "0.1.0"

__all__ = ["HsisegError", "HsisegWarning", "LabelTree", "__version__", "build_loss"]
