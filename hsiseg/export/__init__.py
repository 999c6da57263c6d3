"""Exporters: what a streaming run (:mod:`hsiseg.predict.stream`) turns its ``maps.h5`` into.

One module per output, registered by name with :func:`register`; ``export(name, maps, output)`` runs one.
Each reads the maps frame by frame (memory flat in the number of frames) and writes atomically:

=========  ==============================================================================================
``areas``  ``areas.csv`` (percent of each class, unknown and invalid per frame, with time stamps) and
           ``areas.png`` (the shares over time)
``mp4``    ``overlay.mp4``: image | overlay side by side, legend, frame index and time stamp (H.264, ``av``)
``html``   ``report.html``: one self-contained file (model, frame strip, per-frame overlay with class
           toggle and opacity, legend, areas over time, failures and warnings); opens offline
=========  ==============================================================================================
"""

from __future__ import annotations

from hsiseg.export import areas, html, video  # noqa: F401 - registering is importing
from hsiseg.export.base import DEFAULT_EXPORTS, EXPORTERS, Exporter, check_exports, export, export_all, exported_files
from hsiseg.export.maps import StreamMaps, frame_label

__all__ = ["DEFAULT_EXPORTS", "EXPORTERS", "Exporter", "StreamMaps", "check_exports", "export", "export_all",
           "exported_files", "frame_label"]
