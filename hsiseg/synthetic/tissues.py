"""Physically grounded reflectance spectra of the demo scene's tissues and materials.

Tissue absorption (1/cm) from real chromophore tables (``hsiseg/resources/chromophores_tivita_grid.csv``:
Prahl's haemoglobin extinction as whole blood at 150 g/L, water from SIMPA/Hale & Querry, fat from
van Veen et al. 2004; reduced scattering from the Jacques 2013 power-law fits; see
``hsiseg/resources/CHROMOPHORES.md`` for the sources)::

    mu_a = B (S mu_a,HbO2 + (1 - S) mu_a,Hb) + W mu_a,water + F mu_a,fat
    mu_s' = k * mu_s',Jacques(type)
    R = exp(-A sqrt(mu_a / (3 (mu_a + mu_s'))))        A = 7.5 (diffuse reflectance, semi-infinite medium)

with blood volume fraction B, oxygen saturation S, water fraction W, fat fraction F, a scattering type and a
scattering scale k per tissue (:data:`TISSUES`; our choices, documented there). Instruments are not tissue:
metal is flat and bright with a slight slope, plastic a smooth coloured curve, a cotton patty bright white
with water bands, partly soaked with blood.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

DIFFUSION_A = 7.5


@dataclass(frozen=True)
class Tissue:
    """Optical parameters of one tissue: fractions of blood (B), oxygen saturation (S), water (W), fat (F),
    the Jacques 2013 scattering type and a scale on it."""

    blood: float
    saturation: float
    water: float
    fat: float
    scattering: str = "background"
    scattering_scale: float = 1.0


# Our choices (not measured values). Spectrally close siblings on purpose: artery/vein differ in S only,
# grey/white matter in blood, fat and scattering, tumour core/infiltration by a few percent in B, S and W.
TISSUES: dict[str, Tissue] = {
    "grey matter": Tissue(blood=0.045, saturation=0.80, water=0.80, fat=0.05, scattering_scale=0.9),
    "white matter": Tissue(blood=0.025, saturation=0.76, water=0.70, fat=0.15, scattering_scale=1.7),
    "tumour core": Tissue(blood=0.070, saturation=0.58, water=0.85, fat=0.03, scattering_scale=1.1),
    "tumour infiltration": Tissue(blood=0.058, saturation=0.66, water=0.83, fat=0.04, scattering_scale=1.0),
    "necrosis": Tissue(blood=0.020, saturation=0.35, water=0.90, fat=0.02, scattering_scale=0.6),
    "dura mater": Tissue(blood=0.020, saturation=0.82, water=0.65, fat=0.02, scattering="muscle", scattering_scale=1.6),
    "bone": Tissue(blood=0.010, saturation=0.80, water=0.30, fat=0.10, scattering="bone", scattering_scale=2.0),
    "artery": Tissue(blood=0.35, saturation=0.97, water=0.55, fat=0.01, scattering="blood", scattering_scale=0.15),
    "vein": Tissue(blood=0.35, saturation=0.62, water=0.55, fat=0.01, scattering="blood", scattering_scale=0.15),
    "pooled blood": Tissue(blood=0.90, saturation=0.80, water=0.10, fat=0.0, scattering="blood", scattering_scale=0.2),
}
MATERIALS = ("metal instrument", "suction tube", "plastic", "cotton patty")


@cache
def chromophores() -> dict[str, np.ndarray]:
    """The packaged chromophore table on the 100 Tivita bands: column name -> (100,) array."""
    with resources.files("hsiseg.resources").joinpath("chromophores_tivita_grid.csv").open() as handle:
        rows = list(csv.reader(handle))
    values = np.array([[float(x) for x in row] for row in rows[1:]])
    return {name: values[:, i] for i, name in enumerate(rows[0])}


def wavelengths() -> np.ndarray:
    """(100,) band centres in nm: linspace(500, 1000, 100), the Tivita grid."""
    return chromophores()["wavelength_nm"]


def absorption(blood, saturation, water, fat) -> np.ndarray:
    """mu_a in 1/cm, (..., 100) for parameters broadcastable to (...)."""
    table = chromophores()
    parameters = [np.asarray(p, dtype=np.float64)[..., None] for p in (blood, saturation, water, fat)]
    blood, saturation, water, fat = parameters
    haemoglobin = saturation * table["mua_HbO2_blood150gL_cm-1"] + (1 - saturation) * table["mua_Hb_blood150gL_cm-1"]
    return blood * haemoglobin + water * table["mua_water_simpa_cm-1"] + fat * table["mua_fat_vanveen_simpa_cm-1"]


def diffuse_reflectance(mu_a: np.ndarray, mu_s_prime: np.ndarray) -> np.ndarray:
    """R = exp(-A sqrt(mu_a / (3 (mu_a + mu_s'))))."""
    return np.exp(-DIFFUSION_A * np.sqrt(mu_a / (3 * (mu_a + mu_s_prime))))


def tissue_reflectance(name: str, blood_scale=1.0, saturation_shift=0.0) -> np.ndarray:
    """Reflectance (..., 100) of a tissue, with optional per-pixel blood scaling and saturation shift."""
    tissue = TISSUES[name]
    saturation = np.clip(tissue.saturation + np.asarray(saturation_shift), 0.0, 1.0)
    mu_a = absorption(tissue.blood * np.asarray(blood_scale), saturation, tissue.water, tissue.fat)
    scattering = chromophores()[f"musp_jacques2013_{tissue.scattering}_cm-1"] * tissue.scattering_scale
    return diffuse_reflectance(mu_a, scattering)


def material_reflectance(name: str) -> np.ndarray:
    """Reflectance (100,) of a surgical material."""
    nm = wavelengths()
    x = (nm - 500) / 500
    if name == "metal instrument":
        return 0.55 + 0.08 * x
    if name == "suction tube":
        return 0.48 + 0.12 * x  # a slightly different alloy / finish: close to the instrument
    if name == "plastic":
        return 0.12 + 0.55 / (1 + np.exp(-(nm - 620) / 18))  # an orange-red plastic
    if name == "cotton patty":
        water = chromophores()["mua_water_simpa_cm-1"]
        return 0.88 * np.exp(-0.25 * water)  # wet cotton: bright, with water bands
    raise KeyError(name)
