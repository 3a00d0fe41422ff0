"""`vmhost explain PATH`: the spec's field reference in the terminal (the same models as docs/spec.md)."""

from collections.abc import Callable
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from vmhost.spec.reference import UnknownField, explain


def register(app: typer.Typer, out: Console, fail: Callable[..., NoReturn]) -> None:
    @app.command("explain")
    def explain_field(
        path: Annotated[str, typer.Argument(help="A field path such as nics, disks.source or cpu.topology.")] = "",
    ) -> None:
        """Fields, types, defaults and an example of a spec block, e.g. `vmhost explain nics`."""
        try:
            text = explain(path)
        except UnknownField as exc:
            fail(str(exc), code=2)
        out.print(text, markup=False, highlight=False, end="")
