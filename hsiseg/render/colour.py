"""Images a person can look at, from cubes (H, W, B) with wavelengths (B,) in nm.

RGB reconstruction (``method="cie"``): reflectance x D65 illuminant, integrated against the CIE 1931 2-degree
colour matching functions over the bands the cube has within 380-780 nm (trapezoidal rule), normalised so
that a perfect white reflector has Y = 1, converted XYZ -> linear sRGB (IEC 61966-2-1 matrix), clipped to
[0, 1] and gamma-encoded. Tables: ``hsiseg/resources/cie1931_2deg_d65_5nm.csv`` (CIE 015:2018 data, 5 nm,
exported from colour-science 0.4.7).

A cube that misses much of the visible range (a Tivita camera starts at 500 nm, where the blue matching
function is mostly over) cannot be rendered faithfully: ``method="auto"`` then falls back to a band-window
rendering (``method="window"``): red = mean of 600-700 nm, green = 520-600 nm, blue = the cube's bands below
520 nm (or its bluest band), each stretched between its 1st and 99th percentile, then gamma-encoded.
``method="cie"`` on such a cube renders CIE colours anyway, with a :class:`HsisegWarning`; when fewer than two
bands lie within 380-780 nm (a 900-1700 nm camera) it renders band windows, saying so in the warning.

CIE rendering expects reflectance (about 0-1). Data whose 99th percentile (over the visible bands) is above
:data:`COUNTS_LIMIT` looks like raw counts (e.g. 0-4095 from a 12-bit sensor) or scaled integers (0-10000):
such data would render as a white image, so it is divided by that percentile and one :class:`HsisegWarning`
suggests reading the cube as reflectance (the reader option ``scale``).
"""

from __future__ import annotations

import csv
import warnings
from functools import cache
from importlib import resources

import numpy as np

from hsiseg.errors import HsisegError, HsisegWarning

XYZ_TO_LINEAR_SRGB = np.array(
    [[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560], [0.0556434, -0.2040259, 1.0572252]]
)
RGB_METHODS = ("auto", "cie", "window")
MIN_CIE_COVERAGE = 0.8  # share of the colour-matching weight the cube must cover for "auto" to use CIE
COUNTS_LIMIT = 2.0  # a 99th percentile above this is not reflectance (counts, percent, reflectance x 10000)
COUNTS_SAMPLE = 1_000_000  # values the percentile is estimated from (an evenly strided sample of the cube)
WINDOWS = {"red": (600.0, 700.0), "green": (520.0, 600.0), "blue": (380.0, 520.0)}


@cache
def cie_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(wavelengths (81,), colour matching functions (81, 3), D65 (81,)) from 380 to 780 nm."""
    with resources.files("hsiseg.resources").joinpath("cie1931_2deg_d65_5nm.csv").open() as handle:
        rows = np.array([[float(v) for v in row] for row in list(csv.reader(handle))[1:]])
    return rows[:, 0], rows[:, 1:4], rows[:, 4]


def srgb_gamma(linear: np.ndarray) -> np.ndarray:
    """Linear [0, 1] -> sRGB-encoded [0, 1]."""
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0, 1) * 255).astype(np.uint8)


def cie_coverage(wavelengths: np.ndarray) -> float:
    """Share of the total colour-matching weight (x + y + z, under D65) inside the cube's wavelength range."""
    nm, cmfs, d65 = cie_tables()
    weight = cmfs.sum(1) * d65
    inside = (nm >= wavelengths.min()) & (nm <= wavelengths.max())
    return float(weight[inside].sum() / weight.sum())


def cie_rgb(data: np.ndarray, wavelengths: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 sRGB from reflectance through CIE 1931 + D65 over the bands within 380-780 nm."""
    nm, cmfs, d65 = cie_tables()
    visible = (wavelengths >= nm[0]) & (wavelengths <= nm[-1])
    if visible.sum() < 2:
        raise HsisegError(
            f"RGB rendering: fewer than 2 bands between 380 and 780 nm ({wavelengths.min():g}-{wavelengths.max():g} nm)"
        )
    bands = wavelengths[visible]
    weights = np.stack([np.interp(bands, nm, cmfs[:, k] * d65) for k in range(3)], 1)  # (B', 3)
    step = np.gradient(bands) if len(bands) > 1 else np.ones(1)
    weights *= step[:, None]
    white_y = weights[:, 1].sum()
    xyz = as_reflectance(data[..., visible].astype(np.float64)) @ weights / white_y
    return _to_uint8(srgb_gamma(xyz @ XYZ_TO_LINEAR_SRGB.T))


def as_reflectance(data: np.ndarray) -> np.ndarray:
    """``data`` (H, W, B) as it is when it looks like reflectance; divided by its 99th percentile, with one
    :class:`HsisegWarning`, when that percentile is above :data:`COUNTS_LIMIT` (raw counts). Never modifies
    ``data``."""
    flat = data.reshape(-1)
    sample = flat[:: max(1, flat.size // COUNTS_SAMPLE)]
    sample = sample[np.isfinite(sample)]
    high = float(np.percentile(sample, 99)) if sample.size else 0.0
    if high <= COUNTS_LIMIT:
        return data
    warnings.warn(
        f"RGB rendering: the cube's values (99th percentile above {COUNTS_LIMIT:g}) look like raw counts, not "
        "reflectance in [0, 1]; the image is stretched by that percentile. Read the cube as reflectance with the "
        "reader option 'scale' (values are multiplied by it, e.g. 0.0001 for reflectance x 10000)",
        HsisegWarning,
        stacklevel=3,
    )
    return data / high


def window_rgb(data: np.ndarray, wavelengths: np.ndarray, percentiles: tuple[float, float] = (1, 99)) -> np.ndarray:
    """(H, W, 3) uint8 from band windows (see module docstring)."""
    channels = []
    for low, high in WINDOWS.values():
        inside = (wavelengths >= low) & (wavelengths <= high)
        if not inside.any():
            inside = np.zeros_like(wavelengths, dtype=bool)
            inside[np.argmin(np.abs(wavelengths - (low + high) / 2))] = True
        channels.append(data[..., inside].mean(-1))
    return _to_uint8(srgb_gamma(np.stack([stretch(c, percentiles) for c in channels], -1)))


def stretch(channel: np.ndarray, percentiles: tuple[float, float] = (1, 99)) -> np.ndarray:
    """Linear stretch of finite values between two percentiles to [0, 1]."""
    finite = channel[np.isfinite(channel)]
    if not finite.size:
        return np.zeros_like(channel, dtype=np.float64)
    low, high = np.percentile(finite, percentiles)
    return np.clip((channel - low) / (high - low if high > low else 1.0), 0, 1)


def rgb(data: np.ndarray, wavelengths: np.ndarray, method: str = "auto") -> np.ndarray:
    """(H, W, 3) uint8 RGB image of a cube (H, W, B) with wavelengths (B,) in nm.

    ``method``: ``cie``, ``window`` or ``auto`` (CIE when the cube covers at least :data:`MIN_CIE_COVERAGE` of
    the colour-matching weight, else band windows). ``cie`` on a cube that covers less warns (and renders band
    windows when fewer than two bands are visible); raw counts are stretched with a warning (module docstring).
    """
    if method not in RGB_METHODS:
        raise HsisegError(f"RGB rendering: unknown method {method!r}; choose auto, cie or window")
    coverage = cie_coverage(wavelengths)
    if method == "auto":
        method = "cie" if coverage >= MIN_CIE_COVERAGE else "window"
    elif method == "cie" and coverage < MIN_CIE_COVERAGE:
        method = warn_low_coverage(wavelengths, coverage)
    if method == "cie":
        return cie_rgb(data, wavelengths)
    return window_rgb(data, wavelengths)


def warn_low_coverage(wavelengths: np.ndarray, coverage: float) -> str:
    """Warn that a cube covers too little of the visible range for faithful CIE colours; return the method to
    use: ``cie``, or ``window`` when fewer than two bands lie within 380-780 nm."""
    nm = cie_tables()[0]
    visible = int(((wavelengths >= nm[0]) & (wavelengths <= nm[-1])).sum())
    method = "cie" if visible >= 2 else "window"
    outcome = "its colours are not faithful" if method == "cie" else "it is rendered from band windows instead"
    warnings.warn(
        f"RGB rendering (method 'cie'): the cube ({wavelengths.min():g}-{wavelengths.max():g} nm) covers "
        f"{coverage:.0%} of the visible colour-matching weight (CIE needs {MIN_CIE_COVERAGE:.0%}), so {outcome}; "
        "method 'auto' chooses band windows for such cubes",
        HsisegWarning,
        stacklevel=3,
    )
    return method


def false_colour(
    data: np.ndarray, wavelengths: np.ndarray, bands: tuple[float, float, float] = (800, 650, 550), percentiles=(1, 99)
) -> np.ndarray:
    """(H, W, 3) uint8 composite of the bands nearest three wavelengths (red, green, blue), percentile-stretched."""
    channels = []
    for target in bands:
        index = int(np.argmin(np.abs(wavelengths - target)))
        if abs(wavelengths[index] - target) > 20:
            raise HsisegError(
                f"false colour: no band near {target:g} nm (cube covers {wavelengths.min():g}-{wavelengths.max():g} nm)"
            )
        channels.append(stretch(data[..., index], percentiles))
    return _to_uint8(np.stack(channels, -1))


def band_map(data: np.ndarray, wavelengths: np.ndarray, nm: float) -> np.ndarray:
    """(H, W) values of the band nearest ``nm`` (within 20 nm)."""
    index = int(np.argmin(np.abs(wavelengths - nm)))
    if abs(wavelengths[index] - nm) > 20:
        raise HsisegError(f"no band near {nm:g} nm (cube covers {wavelengths.min():g}-{wavelengths.max():g} nm)")
    return data[..., index].astype(np.float64)


def ratio_map(data: np.ndarray, wavelengths: np.ndarray, numerator: float, denominator: float) -> np.ndarray:
    """(H, W) band ratio, e.g. 560/760 nm; NaN where the denominator is 0."""
    top, bottom = band_map(data, wavelengths, numerator), band_map(data, wavelengths, denominator)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(bottom != 0, top / bottom, np.nan)


def save_scalar_map(path, values: np.ndarray, label: str, colour_map: str = "viridis", percentiles=(1, 99)) -> None:
    """A single-band or ratio map as PNG with a colour bar (percentile-limited colour scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hsiseg.io.atomic import atomic_path

    finite = values[np.isfinite(values)]
    low, high = np.percentile(finite, percentiles) if finite.size else (0, 1)
    figure, axis = plt.subplots(figsize=(7, 5))
    shown = axis.imshow(values, cmap=colour_map, vmin=low, vmax=high)
    axis.axis("off")
    figure.colorbar(shown, ax=axis, label=label, fraction=0.046, pad=0.04)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)
