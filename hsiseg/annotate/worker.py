"""The background worker of an annotation session: live-model updates and the final model, never blocking the
page.

- :meth:`LiveWorker.request_update` (after an edit, or the page's button) marks the strokes as changed; the
  worker thread waits ``debounce`` seconds for more edits, takes a snapshot of the strokes and updates the
  live model (:class:`~hsiseg.annotate.live_model.LiveModel`). An edit during an update cancels it (a stale
  model is never shown) and a new one starts from the newer strokes.
- :meth:`LiveWorker.map_of` gives the live model's map of any opened sample (predicted once per model).
- :meth:`LiveWorker.train_final` runs ``hsiseg train``'s full default recipe on the saved strokes in its own
  thread and writes a run folder exactly as ``hsiseg train`` does.

:attr:`LiveWorker.status` is what the page polls (:class:`WorkerStatus`).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.annotate.live_model import Cancelled, LiveModel, LiveResult, LiveSettings
from hsiseg.annotate.session import AnnotationSession
from hsiseg.annotate.spec_file import training_spec
from hsiseg.errors import HsisegError
from hsiseg.predict.inference import Prediction


@dataclass
class WorkerStatus:
    """What the page shows about the models (JSON as it is)."""

    state: str = "waiting for strokes"  # waiting for strokes | queued | training | ready | error
    step: int = 0
    steps: int = 0
    model_version: int = 0
    message: str = ""
    held_out: dict[str, float] = field(default_factory=dict)  # leaf accuracy, mean Dice, pixels (none: absent)
    calibrated_on: str = ""
    seconds: float = 0.0
    final_state: str = ""  # "" | training | done | error
    final_message: str = ""
    final_run: str = ""


class LiveWorker:
    """The session's background training (see module docstring)."""

    def __init__(self, session: AnnotationSession, settings: LiveSettings | None = None, debounce: float = 0.4,
                 final_config: Any = None) -> None:  # fmt: skip
        self.session, self.debounce = session, debounce
        self.settings = settings or LiveSettings()
        self.final_config = final_config
        self.status = WorkerStatus()
        self.result: LiveResult | None = None
        self.model: LiveModel | None = None
        self._maps: dict[tuple[int, str], Prediction] = {}
        self._pending = False  # strokes changed since the last snapshot: an update is wanted
        self._condition = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="hsiseg-live-model", daemon=True)
        self._thread.start()
        self._final: threading.Thread | None = None

    def status_dict(self) -> dict[str, Any]:
        return asdict(self.status)

    def request_update(self) -> None:
        """Train on the current strokes soon (see module docstring)."""
        with self._condition:
            self._pending = True
            if self.status.state != "training":
                self.status.state = "queued"
            self._condition.notify_all()

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
        self._thread.join(timeout=10)

    def wait_for_model(self, timeout: float = 120.0) -> WorkerStatus:
        """Block until no update is queued or running (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._condition:
                if not self._pending and self.status.state not in ("queued", "training"):
                    return self.status
            time.sleep(0.02)
        raise TimeoutError("the live model did not finish in time")

    def map_of(self, sample_id: str) -> tuple[int, Prediction] | None:
        """(model version, the live model's map of ``sample_id``), or None before the first model."""
        result = self.result
        if result is None:
            return None
        version = self.status.model_version
        key = (version, sample_id)
        if key not in self._maps:
            prediction = result.predictions.get(sample_id)
            if prediction is None:
                prediction = result.predictor.predict_many([self.session.view(sample_id).prepared])[0]
            self._maps = {k: v for k, v in self._maps.items() if k[0] == version}
            self._maps[key] = prediction
        return version, self._maps[key]

    def suggestions(self, sample_id: str, count: int = 5) -> list[dict[str, object]] | None:
        """Where to draw next on ``sample_id`` (:func:`hsiseg.active.suggest`, the default strategy), from the
        live model's map and the strokes so far; None before the first model."""
        from hsiseg.active import regions, suggest

        found = self.map_of(sample_id)
        if found is None:
            return None
        prediction = found[1]
        view = self.session.view(sample_id)
        if view.superpixels is None:
            view.superpixels = regions(view.prepared.image.numpy(), prediction.invalid)
        scribbles = self.session.merged(sample_id)
        chosen = suggest(prediction, scribbles, self.session.tree, count, superpixels=view.superpixels,
                         declined=view.declined)  # fmt: skip
        view.offered = [suggestion.mask for suggestion in chosen]
        return [suggestion.as_json() for suggestion in chosen]

    def decline(self, sample_id: str, rank: int) -> None:
        """The suggestion of ``rank`` (1 = best) last shown on ``sample_id`` holds no class of the tree: it is not
        suggested again in this session."""
        view = self.session.view(sample_id)
        if not 1 <= rank <= len(view.offered):
            raise HsisegError(f"rank must be one of the {len(view.offered)} suggestions shown, got {rank}")
        declined = np.zeros(view.shape, dtype=bool) if view.declined is None else view.declined
        view.declined = declined | view.offered[rank - 1]

    # --- the thread -------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._stopped:
                    self._condition.wait()
                if self._stopped:
                    return
            time.sleep(self.debounce)  # let a burst of edits settle
            with self._condition:
                self._pending, started_at = False, self.session.changes
            self._update(started_at)

    def _update(self, started_at: int) -> None:
        samples = self.session.live_samples()
        if not samples:
            self.status.state = "waiting for strokes"
            return
        self.status.state, self.status.message = "training", ""
        try:
            if self.model is None:
                bands = int(samples[0].prepared.image.shape[0])
                self.model = LiveModel(self.session.tree, self.session.preprocessing, bands, self.settings)
            result = self.model.update(samples, lambda: self._pending or self._stopped, self._progress)
        except Cancelled:
            return  # the loop starts again from the newer strokes
        except Exception as error:  # noqa: BLE001 - shown on the page; the worker waits for the next strokes
            self.status.state, self.status.message = "error", _one_line(error)
            return
        self.result = result
        self.status.model_version += 1
        self.status.state = "queued" if self._pending else "ready"
        self.status.held_out = {k: float(v) for k, v in result.held_out.items() if math.isfinite(v)}  # JSON: no NaN
        self.status.calibrated_on, self.status.seconds = result.calibrated_on, round(result.seconds, 2)
        self.status.message = f"trained on the strokes of {len(samples)} image(s), edit {started_at}"

    def _progress(self, done: int, total: int) -> None:
        self.status.step, self.status.steps = done, total

    # --- the final model --------------------------------------------------------------------------------------

    def train_final(self, run_dir: Path) -> None:
        """Train the final model (``hsiseg train``'s default recipe on the saved strokes of every image with
        strokes, :func:`~hsiseg.annotate.spec_file.training_spec`, written beside it as ``<run_dir>.spec.yaml``)
        into ``run_dir`` in the background; refuses while one is training."""
        if self._final is not None and self._final.is_alive():
            raise HsisegError("the final model is already training; wait for it to finish")
        self.status.final_state, self.status.final_message, self.status.final_run = "training", "", str(run_dir)
        self._final = threading.Thread(target=self._train_final, args=(run_dir,), name="hsiseg-final", daemon=True)
        self._final.start()

    def _train_final(self, run_dir: Path) -> None:
        from hsiseg.training import train

        try:
            spec = training_spec(self.session.spec, run_dir.with_name(run_dir.name + ".spec.yaml"))
            train(spec, run_dir, self.final_config, reporter=_FinalReporter(self.status))
        except Exception as error:  # noqa: BLE001 - shown on the page; the session goes on
            self.status.final_state, self.status.final_message = "error", _one_line(error)
            return
        self.status.final_state, self.status.final_message = "done", f"model written to {run_dir}"


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class _FinalReporter:
    """Training progress of the final model into the worker's status."""

    def __init__(self, status: WorkerStatus) -> None:
        self.status, self.total = status, 0

    def start(self, total_steps: int, first_step: int) -> None:
        self.total = total_steps

    def step(self, step: int, loss: float, items_per_second: float) -> None:
        self.status.final_message = f"step {step + 1} of {self.total}"

    def round_end(self, row: dict[str, Any]) -> None:
        pass

    def message(self, text: str) -> None:
        self.status.final_message = text
