"""The label tree file format as pydantic models, so every validation error can name its node and key.

The format itself is described in :mod:`hsiseg.tree`; :mod:`hsiseg.tree.files` validates input against these
models and :mod:`hsiseg.tree.nodes` numbers the validated nodes. The model names (``_NodeSpec`` in particular)
appear in pydantic's error locations, which :mod:`hsiseg.tree.files` reads: keep them.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

__all__ = ["WeightScheme", "as_node"]


class _ConstantScheme(BaseModel):
    """Every edge without an explicit weight weighs ``value``."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["constant"]
    value: float = Field(1.0, ge=0)

    def weight(self, depth: int) -> float:
        """Weight of an edge from a node at ``depth`` to its parent."""
        return self.value


class _ExponentialScheme(BaseModel):
    """w = exp(-gamma * depth): deep (fine) distinctions cost less than top-level ones for gamma > 0."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["exponential"]
    gamma: float

    def weight(self, depth: int) -> float:
        """Weight of an edge from a node at ``depth`` to its parent."""
        return math.exp(-self.gamma * depth)


class _PerDepthScheme(BaseModel):
    """Explicit weights per depth, top level first; deeper nodes reuse the last value."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["per-depth"]
    weights: list[Annotated[float, Field(ge=0)]] = Field(min_length=1)

    def weight(self, depth: int) -> float:
        """Weight of an edge from a node at ``depth`` to its parent."""
        return self.weights[min(depth, len(self.weights)) - 1]


WeightScheme = _ConstantScheme | _ExponentialScheme | _PerDepthScheme
"""Any of the weight schemes; each gives an edge weight from a node's depth."""

_WeightSchemeField = Annotated[WeightScheme, Field(discriminator="type")]


class _NodeSpec(BaseModel):
    """One non-root node as written in the file."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    weight: float | None = Field(None, ge=0, allow_inf_nan=False)
    color: str | None = Field(None, validation_alias=AliasChoices("color", "colour"))
    description: str | None = None
    children: list[_NodeSpec | str] = Field(default_factory=list)

    @field_validator("color")
    @classmethod
    def _valid_color(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from matplotlib.colors import is_color_like, to_hex

        if not is_color_like(value):
            raise ValueError(f"{value!r} is not a colour (use '#rrggbb' or a matplotlib colour name)")
        return to_hex(value)


class _TreeSpec(BaseModel):
    """The root as written in the file: its name, description, weight scheme and children."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("root", min_length=1)
    description: str | None = None
    weight_scheme: _WeightSchemeField | None = None
    children: list[_NodeSpec | str]


def as_node(child: _NodeSpec | str) -> _NodeSpec:
    """A child in node form: the terse form (a bare string) is a leaf of that name."""
    return _NodeSpec(name=child) if isinstance(child, str) else child
