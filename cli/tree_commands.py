"""``hsiseg tree`` and ``hsiseg losses``: look at a label tree and at the losses that use it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from hsiseg.losses import LOSSES, loss_options
from hsiseg.tree import LabelTree

from .errors import reports_errors

BUILTIN_TREE = "neurosurgery_tree.yaml"


def load_tree(spec: Path | None) -> LabelTree:
    """The tree of a tree file or data spec, or the built-in demo tree when ``spec`` is None."""
    if spec is not None:
        return LabelTree.from_file(spec)
    with resources.as_file(resources.files("hsiseg.resources") / BUILTIN_TREE) as path:
        return LabelTree.from_file(path)


@reports_errors
def tree(
    spec: Annotated[
        Path | None,
        typer.Argument(help="Label tree (YAML/JSON) or data spec with 'label_tree'. Default: the demo tree."),
    ] = None,
    distances: Annotated[bool, typer.Option("--distances", help="Also print the leaf distance matrix M.")] = False,
) -> None:
    """Print a label tree with leaf indices (output channels), depths and edge weights."""
    label_tree = load_tree(spec)
    console = Console()
    view = Tree(
        f"[bold]{label_tree.name}[/bold]  ({label_tree.num_leaves} leaves, {label_tree.num_nodes} nodes, "
        f"depth {label_tree.depth})"
    )
    branches: dict[int, Tree] = {}
    for node in label_tree.iter_depth_first():
        parent_view = view if node.parent is None else branches[node.parent]
        style = f"[{node.color}]" if node.color else ""
        close = "[/]" if node.color else ""
        name = node.name if node.is_leaf else f"[bold]{node.name}[/bold]"
        kind = "channel" if node.is_leaf else "code"
        details = f"{kind} {node.code}, depth {node.depth}, w={node.weight:g}"
        label = f"{style}{name}{close}  [dim]{details}[/dim]"
        branches[node.code] = parent_view.add(label)
    console.print(view)
    if distances:
        table = Table(title="tree distance M (leaf x leaf)")
        table.add_column("")
        for index in range(label_tree.num_leaves):
            table.add_column(str(index), justify="right")
        for index, (leaf, row) in enumerate(zip(label_tree.leaves, label_tree.distance_matrix(), strict=True)):
            table.add_row(f"{index} {leaf}", *(f"{value:g}" for value in row))
        console.print(table)


def losses() -> None:
    """List the losses ``build_loss`` (and ``hsiseg train --loss``) knows, with their options."""
    table = Table(title="hsiseg losses")
    table.add_column("name")
    table.add_column("what")
    table.add_column("options (default)")
    for name, cls in LOSSES.items():
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        options = ", ".join(f"{key}={value!r}" for key, value in loss_options(name).items())
        table.add_row(name, summary, options)
    Console().print(table)
