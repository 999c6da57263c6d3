"""Tree-aware colours, label overlays and clinician panels (image | overlay | legend).

Palette: each top-level family gets a hue (its ``color`` from the tree file when given, else evenly spaced
hues); nodes inside a family are shades of that hue, so an overlay reads at every tree level. A ``color``
given to any node in the tree file wins. Unknown pixels (out of distribution) are drawn with black and white
diagonal stripes and invalid pixels (no usable spectrum) with a grey checkerboard, which no class colour
resembles.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

from hsiseg.io.atomic import atomic_path
from hsiseg.labels import INVALID, UNKNOWN
from hsiseg.tree import LabelTree

UNKNOWN_NAME = "unknown"
INVALID_NAME = "invalid (no usable spectrum)"


def node_colours(tree: LabelTree) -> np.ndarray:
    """(N, 3) float RGB in [0, 1] for every node code."""
    from matplotlib.colors import to_rgb

    colours = np.zeros((tree.num_nodes, 3))
    families = tree.top_level
    for index, family in enumerate(families):
        top = tree.node(family)
        hue = colorsys.rgb_to_hsv(*to_rgb(top.color))[0] if top.color else index / len(families)
        members = [n for n in tree.iter_depth_first() if tree.path(n.name)[0] == family]
        for rank, node in enumerate(members):
            if node.color:
                colours[node.code] = to_rgb(node.color)
                continue
            shade = rank / max(1, len(members) - 1)
            value = 0.95 - 0.45 * shade if len(members) > 1 else 0.8
            saturation = 0.45 + 0.5 * ((rank * 0.618) % 1)
            colours[node.code] = colorsys.hsv_to_rgb(hue, saturation, value)
    return colours


def stripes(shape: tuple[int, int], period: int = 6) -> np.ndarray:
    """(H, W, 3) float black-and-white diagonal stripes."""
    rows, columns = np.mgrid[: shape[0], : shape[1]]
    return np.repeat((((rows + columns) // (period // 2)) % 2).astype(float)[..., None], 3, axis=2)


def checkerboard(shape: tuple[int, int], period: int = 4) -> np.ndarray:
    """(H, W, 3) float grey checkerboard (0.35 / 0.65)."""
    rows, columns = np.mgrid[: shape[0], : shape[1]]
    squares = ((rows // period + columns // period) % 2).astype(float)
    return np.repeat((0.35 + 0.3 * squares)[..., None], 3, axis=2)


def overlay(
    image: np.ndarray, codes: np.ndarray, colours: np.ndarray, opacity: float = 0.5, contours: bool = False
) -> np.ndarray:
    """Label map ``codes`` (H, W; -1 = unknown, -2 = invalid, -100 = nothing) over ``image`` (H, W, 3) uint8 -> uint8.

    ``contours=True`` draws only region outlines (2 px), leaving the tissue visible.
    """
    base = image.astype(np.float64) / 255
    layer = np.zeros_like(base)
    valid = codes >= 0
    layer[valid] = colours[codes[valid]]
    unknown = codes == UNKNOWN
    layer[unknown] = stripes(codes.shape)[unknown]
    invalid = codes == INVALID
    layer[invalid] = checkerboard(codes.shape)[invalid]
    painted = valid | unknown | invalid
    if contours:
        from skimage.segmentation import find_boundaries

        painted &= find_boundaries(codes, mode="thick")
        blend = np.where(painted[..., None], layer, base)
    else:
        blend = np.where(painted[..., None], (1 - opacity) * base + opacity * layer, base)
    return np.round(blend * 255).astype(np.uint8)


def save_png(path: Path, image: np.ndarray) -> None:
    """Write an (H, W) or (H, W, 3) uint8 image as PNG, atomically."""
    import imageio.v3 as imageio

    with atomic_path(path) as temporary:
        imageio.imwrite(temporary, image, extension=".png")


def save_indexed_png(path: Path, codes: np.ndarray, colours: np.ndarray) -> None:
    """An indexed-colour PNG of leaf codes: pixel value = code + 1 (0 = unknown/none), palette from ``colours``."""
    from PIL import Image

    values = np.where(codes >= 0, codes + 1, 0).astype(np.uint8)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[1 : len(colours) + 1] = np.round(colours * 255).astype(np.uint8)
    image = Image.fromarray(values)  # mode "L"; putpalette turns it into an indexed ("P") image
    image.putpalette(palette.ravel().tolist())
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG")


def save_panel(
    path: Path,
    image: np.ndarray,
    overlaid: np.ndarray,
    tree: LabelTree,
    codes: np.ndarray,
    colours: np.ndarray,
    title: str = "",
    left_title: str = "image",
) -> None:
    """Side-by-side panel PNG: image | overlay | legend of the classes present, with their area shares
    (see :func:`panel`)."""
    canvas = panel(image, overlaid, tree, codes, colours, title, left_title)
    with atomic_path(path) as temporary:
        canvas.save(temporary, format="PNG")


def panel(
    image: np.ndarray,
    overlaid: np.ndarray,
    tree: LabelTree,
    codes: np.ndarray,
    colours: np.ndarray,
    title: str = "",
    left_title: str = "image",
    legend: list[int] | None = None,
    min_height: int = 320,
):
    """Image | overlay | legend as a Pillow image; the legend lists ``legend`` (codes, in order; default: the
    codes present, largest first) with each one's share of this frame's pixels.

    Drawn with Pillow (about 10x faster than a matplotlib figure, which matters for recordings of hundreds of
    frames); ``codes`` may hold leaf or internal-node codes, -1 for unknown, -2 for invalid. Images lower than
    ``min_height`` are enlarged (nearest neighbour) to stay readable. With a fixed ``legend`` every frame of a
    recording gets the same canvas size (a video needs that).
    """
    from PIL import Image, ImageDraw, ImageFont

    present, counts = np.unique(codes[codes != -100], return_counts=True)
    share = dict(zip(present.tolist(), counts.tolist(), strict=True))
    total = max(1, int(counts.sum()))
    entries = legend if legend is not None else sorted(share, key=lambda code: -share[code])
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: the bitmap font
        font = ImageFont.load_default()
    scale = max(1, -(-min_height // image.shape[0]))
    if scale > 1:
        image, overlaid = (np.repeat(np.repeat(x, scale, 0), scale, 1) for x in (image, overlaid))
    height, width = image.shape[:2]
    margin, title_height, row = 10, 24, 20
    legend_width = 280
    canvas_height = max(height, row * len(entries)) + title_height + 2 * margin
    canvas = Image.new("RGB", (2 * width + legend_width + 4 * margin, canvas_height), "white")
    canvas.paste(Image.fromarray(image), (margin, margin + title_height))
    canvas.paste(Image.fromarray(overlaid), (2 * margin + width, margin + title_height))
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, margin), left_title, fill="black", font=font)
    draw.text((2 * margin + width, margin), title or "tissue map", fill="black", font=font)
    left = 3 * margin + 2 * width
    for index, code in enumerate(entries):
        top = margin + title_height + index * row
        box = (left, top + 3, left + 22, top + 17)
        if code in (UNKNOWN, INVALID):
            pattern = stripes((14, 22), period=4) if code == UNKNOWN else checkerboard((14, 22), period=4)
            canvas.paste(Image.fromarray((pattern * 255).astype(np.uint8)), box[:2])
            name = UNKNOWN_NAME if code == UNKNOWN else INVALID_NAME
        else:
            draw.rectangle(box, fill=tuple(int(round(255 * c)) for c in colours[code]))
            name = tree.node(code).name
        draw.rectangle(box, outline="black")
        draw.text((left + 30, top + 2), f"{name} ({share.get(code, 0) / total:.0%})", fill="black", font=font)
    return canvas
