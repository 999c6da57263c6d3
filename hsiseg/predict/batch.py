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
:data:`MOSTLY_INVALID` invalid pixels is flagged there, and every warning a reader or the preprocessing
raised for a frame (repaired NaNs, extrapolated wavelengths, ...) is recorded with it.

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
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.checkpoint import model_fingerprint
from hsiseg.errors import HsisegError
from hsiseg.io import read_cube
from hsiseg.io.atomic import atomic_path, check_output_folder
from hsiseg.io.batch import expand_inputs
from hsiseg.ood.trust import frame_warnings
from hsiseg.predict.claims import Claim, try_claim
from hsiseg.predict.frame_outputs import FrameOutput, write_frame_outputs
from hsiseg.predict.frame_warnings import collect, routed_warnings
from hsiseg.predict.inference import Prediction, Predictor
from hsiseg.render import node_colours, rgb

MOSTLY_INVALID = 0.5  # share of invalid pixels above which a frame is flagged in the summary
DONE, FAILED = "done.json", "failed.json"
CLAIM = ".lock"
# what changes a frame's outputs (not batch_size, device, parts, resume: they do not)
SHAPING_OPTIONS = "tile overlap flip_tta level confidence save_probabilities opacity contours rgb_method reader_options"


@dataclass
class PredictOptions:
    """Everything that shapes a prediction run (saved as ``args.json``)."""

    tile: int = 256
    overlap: float = 0.25
    batch_size: int = 4
    flip_tta: bool = False
    ood_score: str | None = None
    ood_threshold: float | None = None
    level: int | None = None
    confidence: float | None = None
    save_probabilities: bool = False
    opacity: float = 0.5
    contours: bool = False
    rgb_method: str = "auto"
    animation: bool = False  # also write overview.gif and overview.mp4: the frames' panels in order
    overwrite: bool = False
    resume: bool = False
    num_parts: int = 1
    part_id: int = 0
    device: str = "cpu"
    reader_options: dict[str, Any] = field(default_factory=dict)


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
    if not 0 <= options.part_id < options.num_parts:
        raise HsisegError(f"--part-id must be in 0..{options.num_parts - 1}, got {options.part_id}")
    ordered = sorted(frames.items())
    return ordered[options.part_id :: options.num_parts]


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
    output, inputs = Path(output), list(inputs)
    predictor = Predictor.from_checkpoint(
        model_path, options.device, tile=options.tile, overlap=options.overlap, batch_size=options.batch_size,
        flip_tta=options.flip_tta, ood_score=options.ood_score, ood_threshold=options.ood_threshold,
        all_scores=options.save_probabilities,
    )  # fmt: skip
    if options.level is not None and not 1 <= options.level <= predictor.tree.depth:
        raise HsisegError(f"--level must be in 1..{predictor.tree.depth} for this model's tree, got {options.level}")
    # cubes are read as the model's training cubes were (its card's scale/offset) unless the caller says otherwise
    trained_scaling = predictor.card.input_scaling.reader_options()
    options = replace(options, reader_options={**trained_scaling, **options.reader_options})
    frames = plan_frames(inputs, output, options)
    if not frames:
        raise HsisegError("predict: no cube files among the inputs")
    identity = FrameResult("", "", "", model=model_fingerprint(model_path), options=output_options(options, predictor))
    skipped, todo = _check_existing(frames, output, options, identity)
    output.mkdir(parents=True, exist_ok=True)
    _write_args(output, model_path, inputs, options, predictor, identity)
    if on_start is not None:
        on_start(len(frames))
    results: list[FrameResult] = []
    for result in skipped:
        _report(result, results, on_frame)
    try:
        with routed_warnings():
            _run(todo, output, predictor, options, identity, lambda result: _report(result, results, on_frame))
    finally:  # also when interrupted: the summary lists every frame finished so far
        write_summary(output)
        if options.animation:
            finished = [output / r.frame / "panel.png" for r in _sorted(results, frames) if r.status != "failed"]
            write_animation(output / "overview.gif", finished)
            write_video(output / "overview.mp4", finished)
    return _sorted(results, frames)


def output_options(options: PredictOptions, predictor: Predictor) -> dict[str, Any]:
    """The options that change a frame's outputs (``--continue`` compares them), with the OOD score in use."""
    shaping = {name: getattr(options, name) for name in SHAPING_OPTIONS.split()}
    identity = {**shaping, "ood_score": predictor.ood_score, "ood_threshold": predictor.ood_threshold}
    return json.loads(json.dumps(identity, default=str))  # as done.json will hold them (tuples become lists)


def _check_existing(
    frames: list[tuple[str, Path]], output: Path, options: PredictOptions, identity: FrameResult
) -> tuple[list[FrameResult], list[tuple[str, Path]]]:
    """(frames an earlier run finished with this model and options, frames to predict); refuses to mix."""
    existing = [name for name, _ in frames if _has_outputs(output / name)]
    if existing and not (options.overwrite or options.resume):
        raise HsisegError(
            f"{output}: outputs exist for {len(existing)} frames (e.g. {existing[0]}); pass --continue or --overwrite"
        )
    skipped, todo, mismatched = [], [], []
    for name, source in frames:
        record = FrameResult.from_file(output / name / DONE) if options.resume else None
        if record is None:
            todo.append((name, source))
        elif _differences(record, identity):
            mismatched.append((name, _differences(record, identity)))
            todo.append((name, source))
        else:
            skipped.append(FrameResult(**{**asdict(record), "status": "skipped", "source": str(source)}))
    if mismatched and not options.overwrite:
        name, differences = mismatched[0]
        raise HsisegError(
            f"{output}: {len(mismatched)} finished frames were predicted with {' and '.join(differences)} "
            f"(e.g. {name}); pass --overwrite with --continue to redo them, or choose another output folder"
        )
    return skipped, todo


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


def _run(
    todo: list[tuple[str, Path]],
    output: Path,
    predictor: Predictor,
    options: PredictOptions,
    identity: FrameResult,
    report: Callable[[FrameResult], None],
) -> None:
    """The pipeline: read ahead (thread), claim and predict (here), write behind (thread)."""
    replacing = {name for name, _ in todo if (output / name / DONE).is_file()}
    colours = node_colours(predictor.tree)
    with (
        ThreadPoolExecutor(1, thread_name_prefix="hsiseg-read") as reader,
        ThreadPoolExecutor(1, thread_name_prefix="hsiseg-write") as writer,
    ):
        pending_read = reader.submit(_read, todo[0][1], options.reader_options, predictor) if todo else None
        pending_write: tuple[Future, FrameResult, Claim] | None = None
        try:
            for position, (name, source) in enumerate(todo):
                started = time.perf_counter()
                read = pending_read.result()
                if position + 1 < len(todo):
                    pending_read = reader.submit(_read, todo[position + 1][1], options.reader_options, predictor)
                result = FrameResult(name, str(source), "done", model=identity.model, options=identity.options)
                claim = try_claim(output / name / CLAIM)
                redo = name in replacing  # finished before this run began, to be replaced
                if claim is None or (not redo and _finished_elsewhere(output / name, identity)):
                    report(_busy_or_skipped(output / name, result, claim))
                    continue
                try:
                    prediction = _predict(read, predictor, result)
                    result.seconds = time.perf_counter() - started
                    if prediction is None:
                        _record_failure(output / name, result)
                        claim.release()
                        report(result)
                        continue
                    if pending_write is not None:
                        _finish_write(pending_write, report)  # one frame waits for writing: memory stays flat
                        pending_write = None
                    _summarise(prediction, predictor, result)
                    future = writer.submit(_write_frame, output / name, name, source, read[0], prediction, predictor,
                                           colours, options, result)  # fmt: skip
                except BaseException:
                    claim.release()  # (Ctrl-C) the frame is not finished: another run may take it
                    raise
                pending_write = (future, result, claim)
        finally:
            if pending_write is not None:
                _finish_write(pending_write, report)


def _finished_elsewhere(folder: Path, identity: FrameResult) -> bool:
    """Whether another run sharing the folder finished this frame (same model and options) meanwhile."""
    record = FrameResult.from_file(folder / DONE)
    return record is not None and not _differences(record, identity)


def _busy_or_skipped(folder: Path, result: FrameResult, claim: Claim | None) -> FrameResult:
    if claim is None:
        result.status, result.error = "busy", "another run sharing this output folder is predicting it"
        return result
    claim.release()
    record = FrameResult.from_file(folder / DONE)
    return FrameResult(**{**asdict(record), "status": "skipped", "source": result.source})


def _finish_write(pending: tuple[Future, FrameResult, Claim], report: Callable[[FrameResult], None]) -> None:
    future, result, claim = pending
    error = future.result()
    claim.release()
    if error:
        result.status, result.error = "failed", error
    report(result)


def _read(path: Path, reader_options: dict[str, Any], predictor: Predictor):
    """In the prefetch thread: read and preprocess one cube -> (cube, network input, warnings), or
    (the error, warnings). Any exception is the frame's failure, never the batch's."""
    with collect() as raised:
        try:
            cube = read_cube(path, **reader_options)
            return cube, predictor.prepare(cube), raised
        except Exception as error:  # noqa: BLE001 - a MemoryError or a library's bug fails this frame only
            return error, raised


def _predict(read: tuple, predictor: Predictor, result: FrameResult) -> Prediction | None:
    """The frame's prediction; on any failure ``None`` with ``result`` marked failed. Warnings are recorded."""
    result.warnings.extend(read[-1])
    if isinstance(read[0], Exception):
        result.status, result.error = "failed", one_line(read[0])
        return None
    cube, prepared, _ = read
    with collect() as raised:
        try:
            prediction = predictor.predict(cube, prepared)
        except Exception as error:  # noqa: BLE001 - see _read
            result.status, result.error = "failed", one_line(error)
            prediction = None
    result.warnings.extend(w for w in raised if w not in result.warnings)
    return prediction


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
    if invalid > MOSTLY_INVALID:
        result.warnings.append(f"mostly invalid: {invalid:.0%} of pixels have no usable spectrum")
    result.warnings.extend(frame_warnings(prediction.score, prediction.unknown, prediction.invalid,
                                          predictor.calibration))  # fmt: skip
    result.unknown_percent, result.invalid_percent = float(100 * prediction.unknown.mean()), 100 * invalid


def _write_frame(
    folder: Path, name, source, cube, prediction: Prediction, predictor: Predictor, colours, options, result
) -> str:
    """Write one frame's outputs; returns an error message instead of raising (the batch goes on)."""
    try:
        _write_outputs(folder, name, cube, prediction, predictor, colours, options, result)
    except Exception as error:  # noqa: BLE001 - a full disk or a renderer's bug fails this frame only
        result.status, result.error = "failed", f"writing {folder}: {one_line(error)}"
        _record_failure(folder, result)
        return result.error
    return ""


def _write_outputs(
    folder: Path, name, cube, prediction: Prediction, predictor: Predictor, colours, options, result: FrameResult
) -> None:
    """The frame's files (:mod:`hsiseg.predict.frame_outputs`, as the options ask), then ``done.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DONE).unlink(missing_ok=True)
    (folder / FAILED).unlink(missing_ok=True)
    image = rgb(cube.data, cube.wavelengths, options.rgb_method)
    write_frame_outputs(FrameOutput(folder, name, prediction, predictor.tree, colours, options, image))
    with atomic_path(folder / DONE) as temporary:  # last: marks the frame complete for --continue
        temporary.write_text(json.dumps(asdict(result), indent=2))


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
