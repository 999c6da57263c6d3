"""Reading and writing hyperspectral cubes: ``read_cube(path, **options) -> Cube`` and ``write_cube``.

==============  ===================================  =============================================
format          files                                options
==============  ===================================  =============================================
``tivita``      ``*_SpecCube.dat``                   ``wavelengths``, ``wavelength_preset``
``envi``        ``.hdr`` + data (BIL/BIP/BSQ)        ``wavelengths``, ``drop_bad_bands``
``hdf5``        ``.h5``, ``.hdf5``, ``.hdf``         ``dataset``, ``wavelengths``, ``wavelengths_path``, ``axes``
``npy``         ``.npy``                             ``wavelengths`` (required), ``axes``, ``image_shape``
``npz``         ``.npz``                             ``variable``, ``wavelengths``, ``axes``, ``image_shape``
``mat``         ``.mat`` (v5 and v7.3)               ``variable``, ``wavelengths``, ``axes``, ``image_shape``
==============  ===================================  =============================================

The format is taken from the extension, then from the file's magic bytes; ``format=...`` overrides both.
Every format also takes these options, applied once by :func:`read_cube` (see
:mod:`hsiseg.io.reader_options` and :mod:`hsiseg.io.limits`):

- ``nonfinite``: ``"zero"`` (default: NaN/Inf values are set to 0 with a :class:`HsisegWarning` that counts
  them; zero pixels count as invalid downstream), ``"error"`` or ``"keep"``;
- ``wavelengths="@bands.txt"``: band centres (nm) from a text, one-column ``.csv`` or ``.npy`` file;
- ``scale``, ``offset``: values become ``value * scale + offset`` (e.g. counts -> reflectance) after the
  reader's own conversion (ENVI divides by its ``reflectance scale factor`` first); all-zero pixels stay 0;
  recorded in ``meta["scale"]`` and ``meta["offset"]``;
- ``max_bytes``: refuse, before allocating, a cube whose declared shape needs more memory than this (float32
  cube plus any raw copy held while reading); default: half of the machine's physical memory.

Inputs are only ever opened for reading.
"""

from __future__ import annotations

from hsiseg.io import arrays, envi, hdf5, tivita  # noqa: F401 - registering is importing
from hsiseg.io.atomic import atomic_path
from hsiseg.io.cube import Cube, NoWavelengthsError, check_wavelengths, invalid_pixels
from hsiseg.io.formats import READERS, detect_format, find_cubes
from hsiseg.io.limits import CubeTooLargeError
from hsiseg.io.reading import SHARED_OPTIONS, WRITERS, read_cube, write_cube
from hsiseg.io.tivita import read_tivita_rgb

__all__ = [
    "READERS",
    "SHARED_OPTIONS",
    "WRITERS",
    "Cube",
    "CubeTooLargeError",
    "NoWavelengthsError",
    "invalid_pixels",
    "atomic_path",
    "check_wavelengths",
    "detect_format",
    "find_cubes",
    "read_cube",
    "read_tivita_rgb",
    "write_cube",
]
