"""Checkpoints without pickle: weights in safetensors, everything else in a typed JSON model card.

A model checkpoint is two files, ``NAME.safetensors`` (the network's weights and the fitted unknown-tissue
scores as ``ood.<score>.<tensor>``; metadata: the label tree's hash) and ``NAME.json`` (the
:class:`~hsiseg.models.card.ModelCard`). Loading reads JSON and safetensors only, so a checkpoint received from
someone else cannot run code, and checks the card against the weights (tree hash, every tensor's shape):
a mismatch is one clear error naming the file and the field, never a "size mismatch" traceback.

A training state (for ``--resume``) adds ``NAME.state.safetensors`` (optimizer tensors, torch RNG) and
``NAME.state.json`` (optimizer hyper-parameters, scheduler, round, numpy/python RNG). All files are written
atomically, the card last, so an interrupted save leaves the previous checkpoint readable.

A *resume point* (:func:`save_resume_point`) is a folder holding one round's weights, card and training state
with a ``manifest.json`` (round; size and SHA-256 of every file), committed as one unit
(:func:`hsiseg.io.atomic.atomic_folder`): a crash while saving leaves the previous round's complete set, and
:func:`check_resume_point` refuses a set whose files do not match their manifest, so weights of one round
are never resumed with another round's optimizer state.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from hsiseg.errors import HsisegError
from hsiseg.io.atomic import atomic_folder, atomic_path, recover_folder
from hsiseg.models import build_model, unwrap
from hsiseg.models.card import ModelCard
from hsiseg.ood import OodScore, build_score

OOD_PREFIX = "ood."
RESUME_STEM = "model"  # a resume point holds model.{safetensors,json}, model.state.{safetensors,json}
MANIFEST = "manifest.json"


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    network = unwrap(model)  # DDP, torch.compile and the AnySize wrapper add no keys to the checkpoint
    return {key: value.detach().cpu().contiguous() for key, value in network.state_dict().items()}


def save_model(
    path_stem: Path, model: nn.Module, card: ModelCard, ood_scores: dict[str, OodScore] | None = None
) -> None:
    """Write ``<stem>.safetensors`` (weights + fitted OOD scores) and ``<stem>.json`` atomically, card last."""
    tensors = _state_dict(model)
    for name, score in (ood_scores or {}).items():
        tensors |= {f"{OOD_PREFIX}{name}.{key}": value.contiguous() for key, value in score.state_dict().items()}
    with atomic_path(path_stem.with_suffix(".safetensors")) as temporary:
        save_file(tensors, str(temporary), metadata={"tree_hash": card.tree_hash})
    with atomic_path(path_stem.with_suffix(".json")) as temporary:
        temporary.write_text(card.to_json())


def read_card(path: str | Path) -> ModelCard:
    """The model card of a checkpoint (``.json``, or the ``.safetensors`` beside it), validated."""
    card_path = Path(path).with_suffix(".json")
    if not card_path.is_file():
        raise HsisegError(f"{card_path}: model card not found (a checkpoint is NAME.json + NAME.safetensors)")
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise HsisegError(f"{card_path}: not a model card (not UTF-8 text)") from None
    except json.JSONDecodeError as error:
        raise HsisegError(f"{card_path}: line {error.lineno}: not a valid model card ({error.msg})") from None
    return ModelCard.parse(data, str(card_path))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild the network from its card and load its weights (safetensors, never pickle), after checking
    that they belong together."""
    path = Path(path)
    card = read_card(path)
    weights_path = path.with_suffix(".safetensors")
    weights = {k: v for k, v in _read_weights(weights_path, card).items() if not k.startswith(OOD_PREFIX)}
    with torch.device("meta"):  # shapes only, nothing allocated: a card claiming 10^9 channels costs nothing
        skeleton = _build_from_card(path, card)
    _check_shapes(weights_path, unwrap(skeleton).state_dict(), weights)
    model = _build_from_card(path, card)
    unwrap(model).load_state_dict(weights)
    return model.to(device), card


def _build_from_card(path: Path, card: ModelCard) -> nn.Module:
    config = card.model
    try:
        return build_model(config.name, config.in_channels, config.classes, **config.options)
    except HsisegError as error:
        raise HsisegError(f"{path.with_suffix('.json')}: field 'model': {error}") from None


def load_ood_scores(path: str | Path, card: ModelCard) -> dict[str, OodScore]:
    """The calibrated unknown-tissue scores of a checkpoint, with what the feature scores learnt."""
    weights_path = Path(path).with_suffix(".safetensors")
    tensors = _read_weights(weights_path, card)
    scores = {}
    for name, calibration in card.ood.scores.items():
        score = build_score(name, **calibration.options)
        prefix = f"{OOD_PREFIX}{name}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if set(state) != set(score.state_dict()):
            raise HsisegError(f"{weights_path}: OOD score {name!r} is calibrated in the card but its fitted "
                              f"tensors are missing (have {sorted(state)}); retrain the model")  # fmt: skip
        score.load_state_dict(state)
        scores[name] = score
    return scores


def _read_weights(weights_path: Path, card: ModelCard) -> dict[str, torch.Tensor]:
    if not weights_path.is_file():
        raise HsisegError(f"{weights_path}: weights not found beside the model card")
    try:
        with safe_open(str(weights_path), "pt") as handle:
            stored_hash = (handle.metadata() or {}).get("tree_hash")
        weights = load_file(str(weights_path))
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise HsisegError(f"{weights_path}: unreadable weights ({error})") from None
    if stored_hash is not None and stored_hash != card.tree_hash:
        raise HsisegError(f"{weights_path}: trained with another label tree than its model card's "
                          "(field 'tree_hash' differs); pair the card with its own weights")  # fmt: skip
    return weights


def _check_shapes(weights_path: Path, expected: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> None:
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise HsisegError(f"{weights_path}: weights do not match the card's network (field 'model'): "
                          f"missing {missing[:3]}, unexpected {unexpected[:3]}")  # fmt: skip
    for key, value in expected.items():
        if tuple(weights[key].shape) != tuple(value.shape):
            raise HsisegError(
                f"{weights_path}: tensor {key} has shape {tuple(weights[key].shape)}, the card's network (field "
                f"'model': in_channels, classes, options) expects {tuple(value.shape)}"
            )


# --- training state ------------------------------------------------------------------------------------------


def save_training_state(
    path_stem: Path, optimizer: torch.optim.Optimizer, scheduler: Any, extra: dict[str, Any]
) -> None:
    """Optimizer tensors + torch RNG in safetensors; hyper-parameters, scheduler, round, numpy/python RNG in JSON."""
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    optimizer_state = optimizer.state_dict()
    state_meta: dict[str, dict[str, Any]] = {}
    for index, values in optimizer_state["state"].items():
        state_meta[str(index)] = {}
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                state_meta[str(index)][name] = value
    scheduler_state = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    numpy_state: tuple[Any, ...] = np.random.get_state()  # type: ignore[assignment]  # noqa: NPY002 - the legacy tuple
    meta = {
        "optimizer": {"param_groups": optimizer_state["param_groups"], "scalars": state_meta},
        "scheduler": scheduler_state,
        "rng": {
            "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
            "python": _python_rng_to_json(random.getstate()),
        },
        **extra,
    }
    with atomic_path(path_stem.with_suffix(".state.safetensors")) as temporary:
        save_file(tensors, str(temporary))
    with atomic_path(path_stem.with_suffix(".state.json")) as temporary:
        temporary.write_text(json.dumps(meta, default=_json_default))


def load_training_state(path_stem: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    """Restore optimizer, scheduler and RNG states; returns the extra fields (round, best metric, ...)."""
    meta_path = path_stem.with_suffix(".state.json")
    if not meta_path.is_file():
        raise HsisegError(f"{meta_path}: no training state to resume from")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    tensors = load_file(str(path_stem.with_suffix(".state.safetensors")))
    state: dict[int, dict[str, Any]] = {}
    for index, scalars in meta["optimizer"]["scalars"].items():
        state[int(index)] = dict(scalars)
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    scheduler.load_state_dict({**scheduler.state_dict(), **meta["scheduler"]})
    torch.set_rng_state(tensors["rng.torch"])
    numpy_state = meta["rng"]["numpy"]
    np.random.set_state((numpy_state[0], np.array(numpy_state[1], dtype=np.uint32), *numpy_state[2:]))  # noqa: NPY002
    random.setstate(_python_rng_from_json(meta["rng"]["python"]))
    return {k: v for k, v in meta.items() if k not in ("optimizer", "scheduler", "rng")}


def save_resume_point(
    folder: Path, model: nn.Module, card: ModelCard, optimizer: torch.optim.Optimizer, scheduler: Any,
    extra: dict[str, Any],
) -> None:  # fmt: skip
    """Write weights, card, training state and manifest into a new folder that replaces ``folder`` only once
    all are complete (see module docstring)."""
    with atomic_folder(folder) as temporary:
        save_model(temporary / RESUME_STEM, model, card)
        save_training_state(temporary / RESUME_STEM, optimizer, scheduler, extra)
        files = {path.name: _digest(path) for path in sorted(temporary.iterdir())}
        (temporary / MANIFEST).write_text(json.dumps({"round": card.round, "files": files}, indent=2))


def check_resume_point(folder: Path) -> Path:
    """The checkpoint stem (``FOLDER/model``) of a complete resume point whose files all match its manifest;
    a missing manifest or any mismatch is an :class:`HsisegError` naming the file."""
    recover_folder(folder)  # a crash between the two renames of the last save
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files, round_index = dict(manifest["files"]), int(manifest["round"])
    except (OSError, ValueError, KeyError, TypeError):
        raise HsisegError(f"{manifest_path}: missing or unreadable, so the checkpoint set cannot be trusted; "
                          "start the run again without resume") from None  # fmt: skip
    for name, expected in files.items():
        path = folder / name
        if not path.is_file() or _digest(path) != expected:
            raise HsisegError(
                f"{path}: does not match the manifest of round {round_index} (missing, changed, or from another "
                "round): the checkpoint set is inconsistent and resuming would mix rounds; restore the folder "
                "from a copy, or start the run again without resume"
            )
    return folder / RESUME_STEM


def _digest(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": files_sha256(path)}


def files_sha256(*paths: Path) -> str:
    """SHA-256 of the files' bytes, one after the other, read in 1 MiB blocks."""
    hasher = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
    return hasher.hexdigest()


def model_fingerprint(path: str | Path) -> str:
    """SHA-256 of a checkpoint's card and weights: which model predicted something."""
    return files_sha256(Path(path).with_suffix(".json"), Path(path).with_suffix(".safetensors"))


def _python_rng_to_json(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def _python_rng_from_json(state: list) -> tuple:
    return (state[0], tuple(state[1]), state[2])


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
