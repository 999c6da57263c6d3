"""``hsiseg annotate``: scribble in the browser, a live model trained on the strokes, the map in seconds.

Modules, in the order a request meets them: :mod:`~hsiseg.annotate.server` (the web app and its security),
:mod:`~hsiseg.annotate.session` (the spec, the opened images, spectra), :mod:`~hsiseg.annotate.layers`
(strokes, undo / redo, saving), :mod:`~hsiseg.annotate.spec_file` (the spec's new files and values),
:mod:`~hsiseg.annotate.worker` (background training) and :mod:`~hsiseg.annotate.live_model` (the network).
"""

from hsiseg.annotate.layers import Layer, LayerConflict, StrokeEdit
from hsiseg.annotate.live_model import LiveModel, LiveResult, LiveSample, LiveSettings
from hsiseg.annotate.session import AnnotationSession
from hsiseg.annotate.worker import LiveWorker, WorkerStatus

__all__ = [
    "AnnotationSession",
    "Layer",
    "LayerConflict",
    "LiveModel",
    "LiveResult",
    "LiveSample",
    "LiveSettings",
    "LiveWorker",
    "StrokeEdit",
    "WorkerStatus",
]
