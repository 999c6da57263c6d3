"""Options shared by several commands (typer annotations) and the parsing of ``KEY=VALUE`` options."""

from __future__ import annotations

from typing import Annotated, Any

import typer
import yaml

from hsiseg.errors import HsisegError

ReaderOptions = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-O",
        help=(
            "Reader option KEY=VALUE (YAML value), e.g. -O wavelength_preset=tivita-vendor -O 'wavelengths=[...]', "
            "-O wavelengths=@bands.txt (a file of band centres in nm), -O scale=0.0001 -O offset=0 "
            "(values become value * scale + offset)."
        ),
    ),
]
MaxCubeGB = Annotated[
    float | None,
    typer.Option(
        "--max-cube-gb",
        help="Refuse (before reading) a cube that needs more than this many GB (10^9 bytes) of memory; "
        "default: half of this machine's memory.",
    ),
]
MAX_CUBE_HINT = " (--max-cube-gb sets the limit)"


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` -> {key: YAML-parsed value}."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise HsisegError(f"--option {pair!r}: expected KEY=VALUE")
        if value.strip().startswith("@"):  # a file reference (e.g. wavelengths=@bands.txt); not YAML
            options[key.strip().replace("-", "_")] = value.strip()
            continue
        try:
            options[key.strip().replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise HsisegError(f"--option {pair!r}: the value is not valid YAML") from None
    return options


def reader_options_with_limit(pairs: list[str] | None, max_cube_gb: float | None) -> dict[str, Any]:
    """``--option`` pairs plus ``--max-cube-gb`` as the library's ``max_bytes``."""
    options = parse_options(pairs)
    if max_cube_gb is not None:
        if not max_cube_gb > 0:
            raise HsisegError(f"--max-cube-gb must be greater than 0, got {max_cube_gb:g}")
        options["max_bytes"] = max(1, int(max_cube_gb * 1e9))
    return options


def refuse_flags(given: dict[str, bool], applies_to: str, command: str = "predict") -> None:
    """One error naming every flag of ``given`` that was set (value True) in a run it does not apply to,
    e.g. ``refuse_flags({"--level": level is not None}, "folders of cubes, not to a recording")``."""
    asked = [flag for flag, was_given in given.items() if was_given]
    if asked:
        verb, pronoun = ("applies", "it") if len(asked) == 1 else ("apply", "them")
        raise HsisegError(f"{command}: {', '.join(asked)} {verb} to {applies_to}; drop {pronoun}")
