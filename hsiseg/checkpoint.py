"""Checkpoints without pickle: weights in safetensors, everything else in a JSON model card.

A model checkpoint is two files, ``NAME.safetensors`` (weights) and ``NAME.json`` (the model card: label
tree, network config, the preprocessing with the wavelength grid the network expects, training arguments,
validation metrics, the calibrated unknown-tissue threshold, library versions). Loading reads JSON and
safetensors only, so a checkpoint received from someone else cannot run code.

A training state (for ``--resume``) adds ``NAME.state.safetensors`` (optimizer tensors, torch RNG) and
``NAME.state.json`` (optimizer hyper-parameters, scheduler, round, numpy/python RNG). All files are written
atomically, the card last, so an interrupted save leaves the previous checkpoint readable.
"""

from __future__ import annotations

import json
import platform
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hsiseg.errors import HsisegError
from hsiseg.io.atomic import atomic_path
from hsiseg.models import build_model, unwrap
from hsiseg.tree import LabelTree

CARD_FORMAT = 1


def versions() -> dict[str, str]:
    from hsiseg import __version__

    return {
        "hsiseg": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    network = unwrap(model)  # DDP, torch.compile and the AnySize wrapper add no keys to the checkpoint
    return {key: value.detach().cpu().contiguous() for key, value in network.state_dict().items()}


def save_model(path_stem: Path, model: nn.Module, card: dict[str, Any]) -> None:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically (weights first, card last)."""
    with atomic_path(path_stem.with_suffix(".safetensors")) as temporary:
        save_file(_state_dict(model), str(temporary))
    full_card = {"format": CARD_FORMAT, "versions": versions(), **card}
    with atomic_path(path_stem.with_suffix(".json")) as temporary:
        temporary.write_text(json.dumps(full_card, indent=2, default=_json_default))


def read_card(path: str | Path) -> dict[str, Any]:
    """The model card of a checkpoint (``.json``, or the ``.safetensors`` beside it)."""
    path = Path(path)
    card_path = path.with_suffix(".json")
    if not card_path.is_file():
        raise HsisegError(f"{card_path}: model card not found (a checkpoint is NAME.json + NAME.safetensors)")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise HsisegError(f"{card_path}: line {error.lineno}: not a valid model card ({error.msg})") from None
    if not isinstance(card, dict) or "model" not in card or "label_tree" not in card:
        raise HsisegError(f"{card_path}: not an hsiseg model card (no 'model' or 'label_tree')")
    if int(card.get("format", 0)) > CARD_FORMAT:
        made_by = card.get("versions", {}).get("hsiseg", "a newer hsiseg")
        raise HsisegError(
            f"{card_path}: model card format {card['format']} was written by hsiseg {made_by}; upgrade hsiseg"
        )
    return card


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network from its card and load its weights (safetensors, never pickle)."""
    path = Path(path)
    card = read_card(path)
    config = card["model"]
    model = build_model(config["name"], config["in_channels"], config["classes"], **config.get("options", {}))
    weights_path = path.with_suffix(".safetensors")
    if not weights_path.is_file():
        raise HsisegError(f"{weights_path}: weights not found beside the model card")
    try:
        weights = load_file(str(weights_path), device=str(device))
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise HsisegError(f"{weights_path}: unreadable weights ({error})") from None
    missing, unexpected = unwrap(model).load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise HsisegError(
            f"{weights_path}: weights do not match the card's network "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.to(device), card


def card_tree(card: dict[str, Any]) -> LabelTree:
    return LabelTree.from_dict(card["label_tree"], source="model card")


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
    numpy_state = np.random.get_state()  # noqa: NPY002 - the global state third-party code draws from
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
