"""Spectral operations on (H, W, B) float32 cubes: calibration, normalisation, band operations, and the
serialisable :class:`Preprocessing` a model carries."""

from hsiseg.spectral.bands import bin_bands, drop_bands, resample, select_range
from hsiseg.spectral.calibration import calibrate
from hsiseg.spectral.normalization import METHODS, BandStatistics, normalize, valid_pixels, zscore
from hsiseg.spectral.preprocessing import Preprocessing

__all__ = [
    "METHODS",
    "BandStatistics",
    "Preprocessing",
    "bin_bands",
    "calibrate",
    "drop_bands",
    "normalize",
    "resample",
    "select_range",
    "valid_pixels",
    "zscore",
]
