"""Batch prediction of whole recorded surgeries: many frames in, maps and overlays out.

For every input cube, ``OUT/<frame>/`` receives ``labels.png`` (indexed PNG with the tree palette; value =
leaf code + 1, 0 = unknown or invalid), ``labels.npy`` (int16 raw leaf codes, before the unknown and invalid
masks), ``unknown.png`` and ``invalid.png`` (masks; invalid = no usable spectrum, never tissue, never unknown),
``ood_score.npy`` (float32 map of the unknown-tissue score in use), ``areas.csv`` (pixels, percent and mean
confidence per class, unknown and invalid), ``overlay.png`` and ``panel.png`` (image | overlay | legend),
optionally ``probabilities.h5`` (float16 probabilities and every calibrated OOD score's map under
``scores/<name>``, so any score can be evaluated later), ``labels_level<d>.png`` and ``confident.png``/``.npy``
(hierarchical decoding), and last ``done.json``. ``OUT/args.json`` records the run's arguments (with the OOD
score and threshold in use) and ``OUT/summary.{csv,json}`` every frame's status; a frame with more than
:data:`MOSTLY_INVALID` invalid pixels is flagged there.

Reading and preprocessing the next cube overlap with inference (a prefetch thread) and writing overlaps with
the next frame (a writer thread); at most two frames are in memory, however long the recording.
``resume`` (``--continue``) skips frames whose ``done.json`` exists; ``num_parts``/``part_id`` shard the
sorted frames across machines; a frame that fails is reported and skipped, and the batch goes on.
"""

from __future__ import annotations

import csv
import io
import json
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hsiseg.errors import HsisegError
from hsiseg.io import read_cube
from hsiseg.io.atomic import atomic_path
from hsiseg.io.batch import expand_inputs
from hsiseg.labels import INVALID, UNKNOWN
from hsiseg.predict.inference import Prediction, Predictor, confident_nodes, level_labels
from hsiseg.render import node_colours, overlay, rgb, save_indexed_png, save_panel, save_png

MOSTLY_INVALID = 0.5  # share of invalid pixels above which a frame is flagged in the summary


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
    animation: bool = False  # also write overview.gif: the frames' overlays in order
    overwrite: bool = False
    resume: bool = False
    num_parts: int = 1
    part_id: int = 0
    device: str = "cpu"
    reader_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class FrameResult:
    frame: str
    source: str
    status: str  # done, skipped, failed
    seconds: float = 0.0
    unknown_percent: float = 0.0
    invalid_percent: float = 0.0
    main_class: str = ""
    error: str = ""
    warning: str = ""


def plan_frames(inputs: Iterable[str | Path], output: Path, options: PredictOptions) -> list[tuple[str, Path]]:
    """(frame name, cube path) for this part of the work, sorted; checks the output folder is safe."""
    output = output.resolve()
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
    output = Path(output)
    predictor = Predictor.from_checkpoint(
        model_path, options.device, tile=options.tile, overlap=options.overlap, batch_size=options.batch_size,
        flip_tta=options.flip_tta, ood_score=options.ood_score, ood_threshold=options.ood_threshold,
        all_scores=options.save_probabilities,
    )  # fmt: skip
    if options.level is not None and not 1 <= options.level <= predictor.tree.depth:
        raise HsisegError(f"--level must be in 1..{predictor.tree.depth} for this model's tree, got {options.level}")
    frames = plan_frames(inputs, output, options)
    if not frames:
        raise HsisegError("predict: no cube files among the inputs")
    existing = [name for name, _ in frames if (output / name).exists()]
    if existing and not (options.overwrite or options.resume):
        raise HsisegError(
            f"{output}: outputs exist for {len(existing)} frames (e.g. {existing[0]}); pass --continue or --overwrite"
        )
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / "args.json") as temporary:
        temporary.write_text(
            json.dumps(
                {
                    "model": str(model_path),
                    "inputs": [str(i) for i in inputs],
                    **asdict(options),
                    "ood_score_used": predictor.ood_score,
                    "ood_threshold_used": predictor.ood_threshold,
                    "trained_classes": predictor.card.trained_classes,
                },
                indent=2,
            )
        )

    if on_start is not None:
        on_start(len(frames))
    results: list[FrameResult] = []
    todo = []
    for name, source in frames:
        if options.resume and (output / name / "done.json").is_file():
            result = FrameResult(name, str(source), "skipped")
            results.append(result)
            if on_frame:
                on_frame(result)
        else:
            todo.append((name, source))
    colours = node_colours(predictor.tree)
    with (
        ThreadPoolExecutor(1, thread_name_prefix="hsiseg-read") as reader,
        ThreadPoolExecutor(1, thread_name_prefix="hsiseg-write") as writer,
    ):
        pending_read = reader.submit(_read, todo[0][1], options.reader_options, predictor) if todo else None
        pending_write: tuple[Future, FrameResult] | None = None

        def finish(pending: tuple[Future, FrameResult]) -> None:
            future, result = pending
            error = future.result()
            if error:
                result.status, result.error = "failed", error
            results.append(result)
            if on_frame:
                on_frame(result)

        for position, (name, source) in enumerate(todo):
            started = time.perf_counter()
            cube_or_error = pending_read.result()
            if position + 1 < len(todo):
                pending_read = reader.submit(_read, todo[position + 1][1], options.reader_options, predictor)
            try:
                if isinstance(cube_or_error, Exception):
                    raise cube_or_error
                cube_or_error, prepared = cube_or_error
                prediction = predictor.predict(cube_or_error, prepared)
            except (HsisegError, OSError, ValueError) as error:
                result = FrameResult(
                    name, str(source), "failed", time.perf_counter() - started, error=str(error).splitlines()[0]
                )
                results.append(result)
                if on_frame:
                    on_frame(result)
                continue
            if pending_write is not None:
                finish(pending_write)  # at most one frame waits for writing: memory stays flat
            summary = _summarise(prediction, predictor)
            future = writer.submit(
                _write_frame,
                output / name,
                name,
                source,
                cube_or_error,
                prediction,
                predictor,
                colours,
                options,
                summary,
            )
            pending_write = (future, FrameResult(name, str(source), "done", time.perf_counter() - started, **summary))
        if pending_write is not None:
            finish(pending_write)
    order = {name: position for position, (name, _) in enumerate(frames)}
    results.sort(key=lambda result: order[result.frame])
    _write_summary(output, results)
    if options.animation:
        write_animation(
            output / "overview.gif", [output / r.frame / "overlay.png" for r in results if r.status != "failed"]
        )
    return results


def _read(path: Path, reader_options: dict[str, Any], predictor: Predictor):
    """In the prefetch thread: read and preprocess one cube -> (cube, network input), or the error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cube = read_cube(path, **reader_options)
            return cube, predictor.prepare(cube)
    except (HsisegError, OSError, ValueError) as error:
        return error


def _summarise(prediction: Prediction, predictor: Predictor) -> dict[str, Any]:
    labels = prediction.labels_with_unknown()
    known = labels[labels >= 0]
    main = predictor.tree.leaves[int(np.bincount(known).argmax())] if known.size else ""
    invalid = float(prediction.invalid.mean())
    warning = f"mostly invalid: {invalid:.0%} of pixels have no usable spectrum" if invalid > MOSTLY_INVALID else ""
    return {"unknown_percent": float(100 * prediction.unknown.mean()), "invalid_percent": 100 * invalid,
            "main_class": main, "warning": warning}  # fmt: skip


def _write_frame(
    folder: Path, name, source, cube, prediction: Prediction, predictor: Predictor, colours, options, summary
) -> str:
    """Write one frame's outputs; returns an error message instead of raising (the batch goes on)."""
    try:
        _write_outputs(folder, name, source, cube, prediction, predictor, colours, options, summary)
    except (HsisegError, OSError, ValueError) as error:
        return f"writing {folder}: {error}".splitlines()[0]
    return ""


def _write_outputs(
    folder: Path, name, source, cube, prediction: Prediction, predictor: Predictor, colours, options, summary
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "done.json").unlink(missing_ok=True)
    tree = predictor.tree
    labels = prediction.labels_with_unknown()
    save_indexed_png(folder / "labels.png", labels, colours[: tree.num_leaves])
    with atomic_path(folder / "labels.npy") as temporary, open(temporary, "wb") as handle:
        np.save(handle, prediction.labels.astype(np.int16))  # raw leaf codes; unknown.png says which are unknown
    save_png(folder / "unknown.png", (prediction.unknown * 255).astype(np.uint8))
    save_png(folder / "invalid.png", (prediction.invalid * 255).astype(np.uint8))
    with atomic_path(folder / "ood_score.npy") as temporary, open(temporary, "wb") as handle:
        np.save(handle, prediction.score.astype(np.float32))
    _write_areas(folder / "areas.csv", labels, prediction, tree)
    image = rgb(cube.data, cube.wavelengths, options.rgb_method)
    overlaid = overlay(image, labels, colours, options.opacity, options.contours)
    save_png(folder / "overlay.png", overlaid)
    save_panel(folder / "panel.png", image, overlaid, tree, labels, colours, title=name)
    if options.level is not None:
        level = level_labels(labels, tree, options.level)
        save_png(folder / f"labels_level{options.level}.png", overlay(image, level, colours, 1.0))
        level_overlay = overlay(image, level, colours, options.opacity, options.contours)
        save_panel(
            folder / f"panel_level{options.level}.png",
            image,
            level_overlay,
            tree,
            level,
            colours,
            f"{name}, level {options.level}",
        )
    if options.confidence is not None:
        confident = confident_nodes(prediction.probabilities, tree, options.confidence)
        confident = np.where(prediction.unknown, UNKNOWN, confident)
        confident = np.where(prediction.invalid, INVALID, confident)
        with atomic_path(folder / "confident.npy") as temporary, open(temporary, "wb") as handle:
            np.save(handle, confident.astype(np.int16))
        save_png(folder / "confident.png", overlay(image, confident, colours, options.opacity))
    if options.save_probabilities:
        import h5py

        with atomic_path(folder / "probabilities.h5") as temporary, h5py.File(temporary, "w") as handle:
            handle.create_dataset("probabilities", data=prediction.probabilities.astype(np.float16), compression="gzip")
            for score_name, values in prediction.scores.items():
                handle.create_dataset(f"scores/{score_name}", data=values.astype(np.float32), compression="gzip")
            handle.attrs["classes"] = json.dumps(list(tree.leaves))
    with atomic_path(folder / "done.json") as temporary:  # last: marks the frame complete for --continue
        temporary.write_text(json.dumps({"frame": name, "source": str(source), **summary}))


def _write_areas(path: Path, labels: np.ndarray, prediction: Prediction, tree) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["class", "pixels", "percent", "mean_confidence"])
    total = labels.size
    bins = (labels - INVALID).ravel()  # 0 = invalid, 1 = unknown, code + 2 otherwise: one pass for all classes
    counts = np.bincount(bins, minlength=tree.num_leaves + 2)
    confidence_sums = np.bincount(bins, weights=prediction.confidence.ravel(), minlength=tree.num_leaves + 2)
    for index, count in enumerate(counts):
        if count:
            name = ("invalid", "unknown")[index] if index < 2 else tree.leaves[index - 2]
            writer.writerow([name, int(count), f"{100 * count / total:.3f}", f"{confidence_sums[index] / count:.4f}"])
    with atomic_path(path) as temporary:
        temporary.write_text(buffer.getvalue())


def _write_summary(output: Path, results: list[FrameResult]) -> None:
    rows = [asdict(r) for r in results]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(FrameResult("", "", ""))))
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(output / "summary.csv") as temporary:
        temporary.write_text(buffer.getvalue())
    with atomic_path(output / "summary.json") as temporary:
        temporary.write_text(json.dumps(rows, indent=2))


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
