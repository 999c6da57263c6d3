"""Rendering: RGB and false-colour images of cubes, tree-aware palettes, overlays and clinician panels."""

from hsiseg.render.colour import cie_coverage, cie_rgb, false_colour, rgb, window_rgb
from hsiseg.render.overlay import UNKNOWN, node_colours, overlay, save_indexed_png, save_panel, save_png

__all__ = [
    "UNKNOWN",
    "cie_coverage",
    "cie_rgb",
    "false_colour",
    "node_colours",
    "overlay",
    "rgb",
    "save_indexed_png",
    "save_panel",
    "save_png",
    "window_rgb",
]
