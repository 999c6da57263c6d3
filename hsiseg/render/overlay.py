"""Tree-aware colours, label overlays and clinician panels (image | overlay | legend).

Palette: each top-level family gets a hue (its ``color`` from the tree file when given, else evenly spaced
hues); nodes inside a family are shades of that hue (within +-22 degrees), so an overlay reads at every tree
level. The shades are picked one by one as the candidate farthest in CIEDE2000 from every colour already
given (:func:`family_shades`): siblings stay visibly different (at least 14 on the shipped trees, where 2 is
a just-noticeable difference; 7 among 100 leaves). A ``color`` given to any node in the tree file wins.
Legend swatches show what is drawn (:func:`swatch`): the mean overlaid colour of the class in that frame,
not the undiluted palette colour. Unknown pixels (out of distribution) are drawn with black and white
diagonal stripes and invalid pixels (no usable spectrum) with a grey checkerboard, which no class colour
resembles.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

from hsiseg.areas import area_name
from hsiseg.io.atomic import atomic_path
from hsiseg.labels import INVALID, UNKNOWN
from hsiseg.tree import LabelTree


def node_colours(tree: LabelTree) -> np.ndarray:
    """(N, 3) float RGB in [0, 1] for every node code (see module docstring)."""
    from matplotlib.colors import to_rgb

    colours = np.zeros((tree.num_nodes, 3))
    families = tree.top_level
    given = [np.array(to_rgb(n.color)) for n in tree.iter_depth_first() if n.color]
    chosen: list[np.ndarray] = []
    for index, family in enumerate(families):
        top = tree.node(family)
        hue = colorsys.rgb_to_hsv(*to_rgb(top.color))[0] if top.color else index / len(families)
        members = [n for n in tree.iter_depth_first() if tree.path(n.name)[0] == family]
        free = iter(family_shades(hue, sum(not n.color for n in members), given + chosen))
        for node in members:
            colours[node.code] = to_rgb(node.color) if node.color else next(free)
            chosen.append(colours[node.code])
    return colours


def family_shades(hue: float, count: int, taken: list[np.ndarray]) -> list[np.ndarray]:
    """``count`` shades of ``hue`` (hue within +-22 degrees, any saturation and value), chosen one by one as
    the candidate farthest (CIEDE2000) from those already chosen and from ``taken`` (the colours of other
    families): members of a family stay recognisably one hue while every pair stays as distinct as the hues
    allow. The first shade of a family with nothing taken yet is its plain hue."""
    candidates = _shade_candidates(hue)
    lab = _lab(candidates)
    plain = np.array(colorsys.hsv_to_rgb(hue, 0.75, 0.85))
    start = int(np.argmin(np.linalg.norm(candidates - plain, axis=1)))
    distance = np.full(len(candidates), np.inf)
    for colour in taken:
        distance = np.minimum(distance, _delta_e(lab, _lab(colour[None])[0]))
    chosen: list[np.ndarray] = []
    for _ in range(count):
        pick = start if not chosen else int(np.argmax(distance))
        chosen.append(candidates[pick])
        distance = np.minimum(distance, _delta_e(lab, lab[pick]))
    return chosen


def _shade_candidates(hue: float) -> np.ndarray:
    offsets, saturations, values = np.linspace(-0.06, 0.06, 5), np.linspace(0.3, 1.0, 8), np.linspace(0.4, 0.97, 8)
    return np.array([colorsys.hsv_to_rgb((hue + o) % 1, s, v) for o in offsets for s in saturations for v in values])


def _lab(rgb_values: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(rgb_values[None])[0]


def _delta_e(lab: np.ndarray, reference: np.ndarray) -> np.ndarray:
    from skimage.color import deltaE_ciede2000

    return deltaE_ciede2000(lab, np.broadcast_to(reference, lab.shape))


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
    """An indexed-colour PNG of leaf codes: pixel value = code + 1 (0 = unknown/none), palette from ``colours``.

    A palette holds 256 entries: with more than 255 leaves the PNG is 16-bit grey instead (same values).
    """
    from PIL import Image

    if len(colours) > 255:
        wide = np.where(codes >= 0, codes + 1, 0).astype(np.uint16)
        with atomic_path(path) as temporary:
            Image.fromarray(wide).save(temporary, format="PNG")  # mode I;16
        return
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
    opacity: float | None = 0.5,
) -> None:
    """Side-by-side panel PNG: image | overlay | legend of the classes present, with their area shares
    (see :func:`panel`)."""
    canvas = panel(image, overlaid, tree, codes, colours, title, left_title, opacity=opacity)
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
    opacity: float | None = 0.5,
):
    """Image | overlay | legend as a Pillow image; the legend lists ``legend`` (codes, in order; default: the
    codes present, largest first) with each one's share of this frame's pixels.

    Drawn with Pillow (about 10x faster than a matplotlib figure, which matters for recordings of hundreds of
    frames); ``codes`` may hold leaf or internal-node codes, -1 for unknown, -2 for invalid. Images lower than
    ``min_height`` are enlarged (nearest neighbour) to stay readable. With a fixed ``legend`` every frame of a
    recording gets the same canvas size (a video needs that). Swatches show what is drawn (see :func:`swatch`;
    ``opacity`` None: the overlay is opaque or outlines only, so swatches are the plain colours).
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
    original, drawn = image, overlaid
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
        canvas.paste(Image.fromarray(swatch(code, original, drawn, codes, colours, opacity)), box[:2])
        name = area_name(tree, code, legend=True)
        draw.rectangle(box, outline="black")
        draw.text((left + 30, top + 2), f"{name} ({share.get(code, 0) / total:.0%})", fill="black", font=font)
    return canvas


SWATCH = (14, 22)  # legend swatch (height, width) in pixels


def swatch(
    code: int, image: np.ndarray, overlaid: np.ndarray, codes: np.ndarray, colours: np.ndarray, opacity: float | None
) -> np.ndarray:
    """(14, 22, 3) uint8 legend swatch of ``code`` showing what the overlay draws for it: the mean overlaid
    colour of its pixels in this frame (a class colour blended with the tissue under it); for unknown and
    invalid their pattern blended with the mean image under them. A class absent from the frame is blended
    over mid-grey; with ``opacity`` None the plain colour or pattern."""
    mask = codes == code
    if code in (UNKNOWN, INVALID):
        layer = stripes(SWATCH, period=4) if code == UNKNOWN else checkerboard(SWATCH, period=4)
        if opacity is not None:
            under = image[mask].mean(axis=0) / 255 if mask.any() else np.full(3, 0.5)
            layer = (1 - opacity) * under + opacity * layer
        return np.round(layer * 255).astype(np.uint8)
    if opacity is None:
        colour = colours[code] * 255
    elif mask.any():
        colour = overlaid[mask].astype(np.float64).mean(axis=0)
    else:
        colour = ((1 - opacity) * 0.5 + opacity * colours[code]) * 255
    return np.broadcast_to(np.round(colour).astype(np.uint8), (*SWATCH, 3)).copy()
