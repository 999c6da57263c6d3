"""Warnings per frame: what a reader or the preprocessing warned about while one frame was handled.

Batch prediction reads frames in a prefetch thread while the main thread predicts the previous one, and
:func:`warnings.catch_warnings` is process-wide, so it cannot tell the frames apart. Instead, for the whole
batch, :func:`routed_warnings` sends every warning to the list of the thread that raised it when that
thread is collecting (:func:`collect`); other warnings are shown as usual. Every occurrence is collected
(filter ``always``), so the second frame with the same problem is recorded too; deprecation notices of
libraries are not frame problems and stay hidden.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()
NOT_FRAME_PROBLEMS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, ResourceWarning)


@contextmanager
def routed_warnings() -> Iterator[None]:
    """For the duration of a batch: route warnings to the collecting thread's list (see module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        for category in NOT_FRAME_PROBLEMS:
            warnings.simplefilter("ignore", category)
        show = warnings.showwarning

        def route(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
            sink = getattr(_local, "sink", None)
            if sink is None:
                show(message, category, filename, lineno, file, line)
            elif str(message) not in sink:
                sink.append(str(message))

        warnings.showwarning = route
        yield


@contextmanager
def collect() -> Iterator[list[str]]:
    """The warnings this thread raises inside the block, once each, in order (under :func:`routed_warnings`)."""
    previous = getattr(_local, "sink", None)
    sink: list[str] = []
    _local.sink = sink
    try:
        yield sink
    finally:
        _local.sink = previous
