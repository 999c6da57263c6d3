"""``hsiseg tree`` and ``hsiseg losses``: look at a label tree and at the losses that use it."""

from __future__ import annotations

import csv
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
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
    heading = Text(_printable(label_tree.name), style="bold")  # names are data, never rich markup
    heading.append(f"  ({label_tree.num_leaves} leaves, {label_tree.num_nodes} nodes, depth {label_tree.depth})")
    view = Tree(heading)
    branches: dict[int, Tree] = {}
    for node in label_tree.iter_depth_first():
        parent_view = view if node.parent is None else branches[node.parent]
        kind = "channel" if node.is_leaf else "code"
        label = Text(_printable(node.name), style=" ".join(filter(None, (node.color, "" if node.is_leaf else "bold"))))
        label.append(f"  {kind} {node.code}, depth {node.depth}, w={node.weight:g}", style="dim")
        branches[node.code] = parent_view.add(label)
    console.print(view)
    if distances:
        _print_distances(label_tree, console)


def _printable(name: str) -> str:
    """A name as text a terminal shows: control characters (an escape sequence) written as escapes."""
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in name)


MAX_TABLE_LEAVES = 40  # wider than a terminal beyond this: the matrix is streamed as CSV rows instead


def _print_distances(label_tree: LabelTree, console: Console) -> None:
    """The leaf distance matrix M as a table; for large trees as CSV on stdout, one row at a time (a
    10,000-leaf tree's M would take 800 MB at once)."""
    leaves = range(label_tree.num_leaves)
    if label_tree.num_leaves > MAX_TABLE_LEAVES:
        typer.echo(f"tree distance M ({label_tree.num_leaves} x {label_tree.num_leaves}) as CSV rows:", err=True)
        writer = csv.writer(sys.stdout)
        writer.writerow(["leaf", *label_tree.leaves])
        for index in leaves:
            writer.writerow([label_tree.leaves[index], *(f"{value:g}" for value in label_tree.distance_row(index))])
        return
    table = Table(title="tree distance M (leaf x leaf)")
    table.add_column("")
    for index in leaves:
        table.add_column(str(index), justify="right")
    for index in leaves:
        row = label_tree.distance_row(index)
        table.add_row(Text(f"{index} {_printable(label_tree.leaves[index])}"), *(f"{value:g}" for value in row))
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
