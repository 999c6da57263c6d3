"""Batch prediction of whole recorded surgeries: many frames in, maps and overlays out.

For every input cube, ``OUT/<frame>/`` receives the files of the per-frame writers the options ask for
(:mod:`hsiseg.predict.frame_outputs`: the label, unknown and invalid maps, the OOD score map, ``areas.csv``,
overlay and panel; optionally the tree-level map, the confident-node map and ``probabilities.h5``) and
last ``done.json``: the frame's :class:`FrameResult` (areas summary, warnings,
the model's SHA-256 and the output-shaping options), the source of truth for everything built on top. A
frame that fails gets ``failed.json`` instead (its one-line error); any exception counts (a reader's
``MemoryError`` or a network's ``RuntimeError`` as well as bad input), and the batch goes on.
``OUT/args.json`` records the run's arguments (with the OOD score and threshold in use, the model's SHA-256)
and ``OUT/summary.{csv,json}`` lists every frame of the folder, built from the frames' ``done.json`` /
``failed.json`` (so runs in parts and continued runs give one complete summary); a frame with more than
:data:`~hsiseg.ood.trust.MOSTLY_INVALID` invalid pixels is flagged there (recordings flag it too), and
every warning a reader or the preprocessing raised for a frame (repaired NaNs, extrapolated wavelengths,
...) is recorded with it.

Reading and preprocessing the next cube overlap with inference (a prefetch thread) and writing overlaps with
the next frame (a writer thread); at most two frames are in memory, however long the recording.
``resume`` (``--continue``) skips frames whose ``done.json`` was written by the same model with the same
output options; frames of another model or other options are refused, or redone with ``overwrite``.
``num_parts``/``part_id`` shard the sorted frames across machines; runs sharing a folder at the same time
never compute the same frame twice (a claim per frame, :mod:`hsiseg.predict.claims`). Interrupted
(Ctrl-C), a run still writes the summary of the frames finished so far.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.io.atomic import atomic_path, check_output_folder
from hsiseg.io.batch import expand_inputs
from hsiseg.models.checkpoint import model_fingerprint
from hsiseg.ood.trust import frame_warnings, invalid_warnings
from hsiseg.predict.claims import Claim, try_claim
from hsiseg.predict.frame_outputs import FrameOutput, write_frame_outputs
from hsiseg.predict.frame_warnings import routed_warnings
from hsiseg.predict.inference import Prediction, Predictor
from hsiseg.predict.options import PredictOptions, RunOptions
from hsiseg.predict.pipeline import Failed, FrameId, Predicted, run_pipeline
from hsiseg.predict.sources import CubeFiles
from hsiseg.render import node_colours

DONE, FAILED = "done.json", "failed.json"
CLAIM = ".lock"
# what changes a frame's outputs (not batch_size, device, parts, resume: they do not)
SHAPING_OPTIONS = "tile overlap flip_tta level confidence save_probabilities opacity contours rgb_method reader_options"


@dataclass
class FrameResult:
    """One frame's outcome: what ``done.json``/``failed.json`` hold and the summary lists.

    ``status``: ``done``; ``skipped`` (done by an earlier run with the same model and options; the figures
    are that run's); ``busy`` (another run sharing the folder is computing it); ``failed`` (``error``).
    ``model``: SHA-256 of the checkpoint (card + weights); ``options``: the output-shaping options, with the
    OOD score and threshold in use.
    """

    frame: str
    source: str
    status: str
    seconds: float = 0.0
    unknown_percent: float | None = None  # None (blank in summary.csv) unless the frame was predicted
    invalid_percent: float | None = None
    main_class: str = ""
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    model: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path) -> FrameResult | None:
        """The record in a frame's ``done.json``/``failed.json``; ``None`` when unreadable (e.g. hsiseg 0.1's)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
            return cls(**known)
        except (OSError, ValueError, TypeError):
            return None


def plan_frames(inputs: Iterable[str | Path], output: Path, options: PredictOptions) -> list[tuple[str, Path]]:
    """(frame name, cube path) for this part of the work, sorted; checks the output folder is safe."""
    output = check_output_folder(output).resolve()
    frames: dict[str, Path] = {}
    for entry in map(Path, inputs):
        if entry.is_dir() and output.is_relative_to(entry.resolve()):
            raise HsisegError(f"output folder {output} is inside the input folder {entry}; choose a folder outside it")
    for source, root in expand_inputs(inputs):
        relative = (
            source.resolve().relative_to(root.resolve())
            if source.resolve().is_relative_to(root.resolve())
            else Path(source.name)
        )
        name = str(relative.with_suffix("")).replace("/", "__")
        if name in frames:
            raise HsisegError(f"two inputs map to the frame name {name!r} ({frames[name]}, {source})")
        frames[name] = source
    if not frames:
        raise HsisegError("predict: no cube files among the inputs")
    if not 0 <= options.part_id < options.num_parts:
        raise HsisegError(f"--part-id must be in 0..{options.num_parts - 1}, got {options.part_id}")
    ordered = sorted(frames.items())
    return ordered[options.part_id :: options.num_parts]  # may be empty: more parts than frames


def predict_batch(
    model_path: str | Path,
    inputs: Iterable[str | Path],
    output: str | Path,
    options: PredictOptions | None = None,
    on_frame: Callable[[FrameResult], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> list[FrameResult]:
    """Predict every input frame into ``output`` (see module docstring); returns one result per frame."""
    options = options or PredictOptions()
    options.check()
    output, inputs = Path(output), list(inputs)
    predictor = Predictor.from_options(model_path, options, all_scores=options.save_probabilities)
    if options.level is not None and not 1 <= options.level <= predictor.tree.depth:
        raise HsisegError(f"level must be in 1..{predictor.tree.depth} for this model's tree, got {options.level}")
    # cubes are read as the model's training cubes were (its card's scale/offset) unless the caller says otherwise
    trained_scaling = predictor.card.input_scaling.reader_options()
    options = replace(options, reader_options={**trained_scaling, **options.reader_options})
    frames = plan_frames(inputs, output, options)
    identity = FrameResult("", "", "", model=model_fingerprint(model_path), options=output_options(options, predictor))
    skipped, todo, replacing = _check_existing(frames, output, options, identity)
    _refuse_foreign_run_files(output)
    output.mkdir(parents=True, exist_ok=True)
    _write_args(output, model_path, inputs, options, predictor, identity)
    if on_start is not None:
        on_start(len(frames))
    results: list[FrameResult] = []
    for result in skipped:
        _report(result, results, on_frame)
    try:
        sink = FrameFolders(output, predictor, options, identity, replacing,
                            lambda result: _report(result, results, on_frame))  # fmt: skip
        with routed_warnings():
            run_pipeline(CubeFiles.frames(todo), CubeFiles(options.reader_options), predictor, sink,
                         options.rgb_method, workers=options.pipeline_workers())  # fmt: skip
    finally:  # also when interrupted: the summary lists every frame finished so far
        write_summary(output)
        if options.animation:
            finished = [output / r.frame / "panel.png" for r in _sorted(results, frames) if r.status != "failed"]
            write_animation(output / "overview.gif", finished)
            write_video(output / "overview.mp4", finished)
    return _sorted(results, frames)


def output_options(options: RunOptions, predictor: Predictor, names: str = SHAPING_OPTIONS) -> dict[str, Any]:
    """The options that change a frame's outputs (``--continue`` compares them), with the OOD score in use."""
    shaping = {name: getattr(options, name) for name in names.split()}
    identity = {**shaping, "ood_score": predictor.ood_score, "ood_threshold": predictor.ood_threshold}
    return json.loads(json.dumps(identity, default=str))  # as done.json will hold them (tuples become lists)


class ExistingFrames(NamedTuple):
    """What an output folder holds when a run starts, observed once (runs sharing the folder finish frames
    meanwhile: a frame finished by another run after this observation is skipped, not replaced)."""

    skipped: list[FrameResult]  # finished earlier with this model and options (--continue)
    todo: list[tuple[str, Path]]  # (frame name, cube file) to predict
    replacing: set[str]  # frames of ``todo`` finished before this run began, to be redone (--overwrite)


def _check_existing(
    frames: list[tuple[str, Path]], output: Path, options: PredictOptions, identity: FrameResult
) -> ExistingFrames:
    """Sort the frames by what the folder holds; refuses to mix models or options without --overwrite."""
    existing = [name for name, _ in frames if _has_outputs(output / name)]
    if existing and not (options.overwrite or options.resume):
        raise HsisegError(
            f"{output}: outputs exist for {len(existing)} frames (e.g. {existing[0]}); pass --continue or --overwrite"
        )
    skipped, todo, mismatched, replacing = [], [], [], set()
    for name, source in frames:
        record = FrameResult.from_file(output / name / DONE) if options.resume else None
        if record is None:
            todo.append((name, source))
            if (output / name / DONE).is_file():
                replacing.add(name)
        elif _differences(record, identity):
            mismatched.append((name, _differences(record, identity)))
            todo.append((name, source))
            replacing.add(name)
        else:
            skipped.append(FrameResult(**{**asdict(record), "status": "skipped", "source": str(source)}))
    if mismatched and not options.overwrite:
        name, differences = mismatched[0]
        raise HsisegError(
            f"{output}: {len(mismatched)} finished frames were predicted with {' and '.join(differences)} "
            f"(e.g. {name}); pass --overwrite with --continue to redo them, or choose another output folder"
        )
    return ExistingFrames(skipped, todo, replacing)


RUN_FILES = ("args.json", "summary.csv", "summary.json", "overview.gif", "overview.mp4")  # besides frame folders


def _refuse_foreign_run_files(output: Path) -> None:
    """Refuses to replace a run-level file (:data:`RUN_FILES`) in a folder whose ``args.json`` hsiseg predict did
    not write (a folder of someone else's files), whatever --overwrite says."""
    present = [name for name in RUN_FILES if (output / name).exists()]
    if present and not _written_by_predict(output / "args.json"):
        raise HsisegError(f"{output / present[0]} exists and {output} holds no prediction run of hsiseg (no "
                          "args.json of one): move the file, or choose another output folder")  # fmt: skip


def _written_by_predict(path: Path) -> bool:
    try:
        arguments = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(arguments, dict) and {"model_sha256", "inputs"} <= set(arguments)


def _has_outputs(folder: Path) -> bool:
    return folder.is_dir() and any(path.name != CLAIM for path in folder.iterdir())


def _differences(record: FrameResult, identity: FrameResult) -> list[str]:
    """What differs between a finished frame and this run: "another model" and/or "other options (names)"."""
    found = ["another model"] if record.model != identity.model else []
    names = sorted(set(record.options) | set(identity.options))
    changed = [n for n in names if record.options.get(n) != identity.options.get(n)]
    return found + ([f"other options ({', '.join(changed)})"] if changed else [])


def _write_args(output: Path, model_path, inputs, options: PredictOptions, predictor: Predictor, identity) -> None:
    arguments = {
        "model": str(model_path), "model_sha256": identity.model, "inputs": [str(i) for i in inputs],
        **asdict(options), "ood_score_used": predictor.ood_score, "ood_threshold_used": predictor.ood_threshold,
        "ood_promise": predictor.promise, "trained_classes": predictor.card.trained_classes,
    }  # fmt: skip
    with atomic_path(output / "args.json") as temporary:
        temporary.write_text(json.dumps(arguments, indent=2))


def recorded_promise(output: Path) -> str:
    """What the unknown-tissue maps of a prediction folder promise (``args.json``; "" when not recorded)."""
    try:
        return str(json.loads((Path(output) / "args.json").read_text(encoding="utf-8")).get("ood_promise", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def _report(result: FrameResult, results: list[FrameResult], on_frame) -> None:
    results.append(result)
    if on_frame:
        on_frame(result)


def _sorted(results: list[FrameResult], frames: list[tuple[str, Path]]) -> list[FrameResult]:
    order = {name: position for position, (name, _) in enumerate(frames)}
    return sorted(results, key=lambda result: order[result.frame])


class FrameFolders:
    """The batch sink of the pipeline (:mod:`hsiseg.predict.pipeline`): one folder per frame, claimed while it is
    computed so that runs sharing the output folder never compute a frame twice; each frame's
    :class:`FrameResult` goes to ``report`` when it is written, failed, busy or skipped."""

    def __init__(self, output: Path, predictor: Predictor, options: PredictOptions, identity: FrameResult,
                 replacing: set[str], report: Callable[[FrameResult], None]) -> None:  # fmt: skip
        self.output, self.predictor, self.options, self.identity = output, predictor, options, identity
        self.replacing, self.report = replacing, report  # replacing: finished before this run began, to be redone
        self.colours = node_colours(predictor.tree)
        self.claims: dict[str, Claim] = {}
        self.results: dict[str, FrameResult] = {}

    def begin(self, frame: FrameId) -> bool:
        folder = self.output / frame.name
        result = FrameResult(frame.name, frame.source, "done", model=self.identity.model, options=self.identity.options)
        claim = try_claim(folder / CLAIM)
        if claim is None or (frame.name not in self.replacing and _finished_elsewhere(folder, self.identity)):
            self.report(_busy_or_skipped(folder, result, claim))
            return False
        self.claims[frame.name], self.results[frame.name] = claim, result
        return True

    def predicted(self, item: Predicted) -> None:
        result = self.results[item.frame.name]
        result.seconds = item.seconds
        result.warnings.extend(item.warnings)
        _summarise(item.prediction, self.predictor, result)

    def write(self, item: Predicted) -> None:
        """The frame's files (:mod:`hsiseg.predict.frame_outputs`, as the options ask), then ``done.json``."""
        folder, result = self.output / item.frame.name, self.results[item.frame.name]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / DONE).unlink(missing_ok=True)
        (folder / FAILED).unlink(missing_ok=True)
        output = FrameOutput(folder, item.frame.name, item.prediction, self.predictor.tree, self.colours,
                             self.options, item.image)  # fmt: skip
        write_frame_outputs(output)
        with atomic_path(folder / DONE) as temporary:  # last: marks the frame complete for --continue
            temporary.write_text(json.dumps(asdict(result), indent=2))

    def finished(self, item: Predicted) -> None:
        self._end(item.frame)

    def failed(self, item: Failed) -> None:
        result = self.results[item.frame.name]
        result.status = "failed"
        if item.stage == "write":
            result.error = f"writing {self.output / item.frame.name}: {one_line(item.error)}"
        else:
            result.error = one_line(item.error)
            result.warnings.extend(w for w in item.warnings if w not in result.warnings)
        _record_failure(self.output / item.frame.name, result)
        self._end(item.frame)

    def close(self) -> None:
        """(Ctrl-C) frames not finished are released: another run may take them."""
        for claim in self.claims.values():
            claim.release()
        self.claims.clear()

    def _end(self, frame: FrameId) -> None:
        self.claims.pop(frame.name).release()
        self.report(self.results.pop(frame.name))


def _finished_elsewhere(folder: Path, identity: FrameResult) -> bool:
    """Whether another run sharing the folder finished this frame (same model and options) meanwhile."""
    record = FrameResult.from_file(folder / DONE)
    return record is not None and not _differences(record, identity)


def _busy_or_skipped(folder: Path, result: FrameResult, claim: Claim | None) -> FrameResult:
    if claim is None:
        result.status, result.error = "busy", "another run sharing this output folder is predicting it"
        return result
    claim.release()
    record = FrameResult.from_file(folder / DONE) or result  # (readable: it was just compared)
    return FrameResult(**{**asdict(record), "status": "skipped", "source": result.source})


def one_line(error: BaseException) -> str:
    """An error as one line; errors that are not hsiseg's own name their type (MemoryError: ...)."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    text = (str(error).strip().splitlines() or [""])[0]
    if isinstance(error, (HsisegError, OSError)):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _record_failure(folder: Path, result: FrameResult) -> None:
    try:
        (folder / DONE).unlink(missing_ok=True)
        with atomic_path(folder / FAILED) as temporary:
            temporary.write_text(json.dumps(asdict(result), indent=2))
    except OSError:
        pass  # e.g. a full disk: the failure is still reported and listed in this run's output


def _summarise(prediction: Prediction, predictor: Predictor, result: FrameResult) -> None:
    """Fill in the frame's unknown and invalid shares, main class and the mostly-invalid warning."""
    labels = prediction.labels_with_unknown()
    known = labels[labels >= 0]
    result.main_class = predictor.tree.leaves[int(np.bincount(known).argmax())] if known.size else ""
    invalid = float(prediction.invalid.mean())
    result.warnings.extend(invalid_warnings(prediction.invalid))
    result.warnings.extend(frame_warnings(prediction.score, prediction.unknown, prediction.invalid,
                                          predictor.calibration))  # fmt: skip
    result.unknown_percent, result.invalid_percent = float(100 * prediction.unknown.mean()), 100 * invalid


def write_summary(output: Path) -> list[FrameResult]:
    """``summary.{csv,json}`` of every frame in ``output``, from the frames' ``done.json``/``failed.json``
    (a frame done after it failed counts as done); written under a lock, so runs sharing the folder (parts)
    never interleave their summaries and the last to finish lists everything. Returns the rows."""
    claim = try_claim(output / ".summary.lock", wait=True)
    try:
        rows = [r for r in map(_frame_record, sorted(p for p in output.iterdir() if p.is_dir())) if r is not None]
        buffer = io.StringIO()
        columns = [name for name in FrameResult.__dataclass_fields__ if name != "options"]
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**asdict(row), "warnings": " | ".join(row.warnings)} for row in rows)
        with atomic_path(output / "summary.csv") as temporary:
            temporary.write_text(buffer.getvalue())
        with atomic_path(output / "summary.json") as temporary:
            temporary.write_text(json.dumps([asdict(row) for row in rows], indent=2))
    finally:
        if claim is not None:
            claim.release()
    return rows


def _frame_record(folder: Path) -> FrameResult | None:
    for name in (DONE, FAILED):
        if (folder / name).is_file():
            return FrameResult.from_file(folder / name)
    return None


def write_video(path: Path, frames: list[Path], frames_per_second: float = 2.0) -> None:
    """An H.264 MP4 of panel PNGs (padded to the largest), read one at a time."""
    import imageio.v3 as imageio

    from hsiseg.export.video import encode

    existing = [frame for frame in frames if frame.is_file()]
    if not existing:
        return
    shapes = [imageio.improps(frame).shape for frame in existing]
    height, width = max(shape[0] for shape in shapes), max(shape[1] for shape in shapes)

    def padded():
        for frame in existing:
            image = imageio.imread(frame)[..., :3]
            yield np.pad(image, ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0)),
                         constant_values=255)  # fmt: skip

    encode(path, padded(), frames_per_second)


def write_animation(path: Path, frames: list[Path], seconds_per_frame: float = 0.5) -> None:
    """An animated GIF of overlay PNGs (frames of different sizes are padded to the largest)."""
    import imageio.v3 as imageio

    images = [imageio.imread(frame)[..., :3] for frame in frames if frame.is_file()]
    if not images:
        return
    height = max(image.shape[0] for image in images)
    width = max(image.shape[1] for image in images)
    padded = [np.pad(image, ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0))) for image in images]
    with atomic_path(path) as temporary:
        imageio.imwrite(temporary, np.stack(padded), extension=".gif", duration=int(seconds_per_frame * 1000), loop=0)
