"""`vmhost ex-start ...`: see what an extended start command becomes without sending it."""

import json
from pathlib import Path
from typing import Annotated

import typer

from vmhost.spec import SpecError
from vmhost_ex_start.command import extended_start_spec

CommandFile = Annotated[Path, typer.Option("-f", "--file", help="An extended start command (JSON).")]


def convert(file: CommandFile) -> None:
    """Print the vmhost spec document an extended start command becomes."""
    try:
        document = extended_start_spec(json.loads(file.read_text()))
    except SpecError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1) from None
    except (OSError, ValueError) as exc:
        typer.echo(f"error: cannot read {file}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(document, indent=2))


def commands() -> typer.Typer:
    group = typer.Typer(no_args_is_help=True)
    group.command("convert")(convert)
    return group
