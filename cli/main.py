"""Entry point of the ``hsiseg`` console script."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hsiseg import __version__

from . import (
    annotate_command,
    cube_commands,
    data_commands,
    demo_command,
    evaluate_command,
    predict_commands,
    suggest_command,
    train_command,
    tree_commands,
)

app = typer.Typer(
    name="hsiseg",
    help="Hyperspectral surgical scene segmentation with label-tree semantic losses.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("tree")(tree_commands.tree)
app.command("losses")(tree_commands.losses)
app.command("info")(cube_commands.info)
app.command("convert")(cube_commands.convert)
app.command("demo-data")(data_commands.demo_data)
app.command("check")(data_commands.check)
app.command("indian-pines")(data_commands.indian_pines)
app.command("real-scene")(data_commands.real_scene)
app.command("scribbles")(data_commands.scribbles)
app.command("train")(train_command.train_command)
app.command("predict")(predict_commands.predict)
app.command("render")(predict_commands.render)
app.command("demo")(demo_command.demo)
app.command("evaluate")(evaluate_command.evaluate)
app.command("annotate")(annotate_command.annotate)
app.command("suggest")(suggest_command.suggest)


def usage_error_types() -> tuple[type[Any], type[Any], type[BaseException]]:
    """The exceptions of the click that typer runs on (its own copy since typer 0.2x, the click package before):
    (UsageError, ClickException, Abort). typer exports ``BadParameter``, a ``UsageError``."""
    usage_error = typer.BadParameter.__mro__[1]
    return usage_error, usage_error.__mro__[1], typer.Abort


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"hsiseg {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Hyperspectral surgical scene segmentation with label-tree semantic losses."""


if __name__ == "__main__":
    app()
