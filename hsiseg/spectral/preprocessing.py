"""The preprocessing a model depends on, as a small serialisable description.

A trained model stores its :class:`Preprocessing` (JSON, in the model card) and reapplies exactly the same
steps to new cubes, in this order: resample to ``wavelengths`` (a cube from another camera), keep
``band_range``, ``binning``, then ``normalization`` (with the dataset ``mean``/``std`` for ``zscore``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hsiseg.errors import HsisegError
from hsiseg.spectral.bands import bin_bands, resample, select_range
from hsiseg.spectral.normalization import BandStatistics, normalize, zscore


class Preprocessing(BaseModel):
    """Resampling, band selection, binning and normalisation, reapplicable bit for bit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    wavelengths: list[float] | None = Field(None, description="target band centres in nm (resample first)")
    band_range: tuple[float, float] | None = Field(None, description="keep bands with low <= nm <= high")
    binning: int = Field(1, ge=1, description="average groups of this many neighbouring bands")
    normalization: Literal["none", "l1", "l2", "snv", "minmax", "zscore"] = "l1"
    mean: list[float] | None = Field(None, description="per-band mean after binning (zscore)")
    std: list[float] | None = Field(None, description="per-band standard deviation after binning (zscore)")

    @model_validator(mode="after")
    def _consistent(self) -> Preprocessing:
        if self.band_range is not None and self.band_range[0] >= self.band_range[1]:
            raise ValueError(f"band_range must be (low, high) with low < high, got {self.band_range}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std go together")
        return self

    @classmethod
    def from_dict(cls, data: dict, source: str = "preprocessing") -> Preprocessing:
        """Validate a mapping (e.g. from a model card or data spec); errors name the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'preprocessing'}: {e['msg']}" for e in error.errors()
            )
            raise HsisegError(f"{source}: {problems}") from None

    def bands(self, data: np.ndarray, wavelengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Resampling, band range and binning of (H, W, B) data; returns (data, wavelengths)."""
        if self.wavelengths is not None:
            data, wavelengths = resample(data, wavelengths, np.asarray(self.wavelengths))
        if self.band_range is not None:
            data, wavelengths = select_range(data, wavelengths, *self.band_range)
        return bin_bands(data, wavelengths, self.binning)

    def apply(self, data: np.ndarray, wavelengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All steps on one cube's (H, W, B) data; returns float32 (H, W, B') and the (B',) wavelengths."""
        data, wavelengths = self.bands(data, wavelengths)
        if self.normalization == "zscore":
            if self.mean is None or self.std is None:
                raise HsisegError("preprocessing: zscore needs dataset statistics; call fit_statistics first")
            return zscore(data, np.asarray(self.mean), np.asarray(self.std)), wavelengths
        return normalize(np.asarray(data, dtype=np.float32), self.normalization), wavelengths

    def fit_statistics(self, cubes: Iterable[tuple[np.ndarray, np.ndarray]]) -> Preprocessing:
        """A copy with per-band ``mean``/``std`` from (data, wavelengths) pairs, one cube in memory at a time."""
        statistics = BandStatistics.from_cubes(self.bands(data, wavelengths)[0] for data, wavelengths in cubes)
        if statistics.mean is None or statistics.std is None:
            raise HsisegError("preprocessing: no valid pixel to fit the band statistics on")
        return self.model_copy(update={"mean": statistics.mean.tolist(), "std": statistics.std.tolist()})
