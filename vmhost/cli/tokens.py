"""`vmhost token ...`: the agent's tokens, managed locally (as root, on the agent's host) in its data directory.

A running agent notices every change at its next request: no restart.
"""

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from vmhost.config import load_config
from vmhost.errors import VmhostError
from vmhost.host import tokens as store

app = typer.Typer(help="Agent tokens: rotate the admin token; create, list and revoke further tokens.")


def _data_dir(ctx: typer.Context) -> Path:
    """The data directory of the config given to `vmhost --config` (or the default one)."""
    return load_config(ctx.find_root().params.get("config")).data_dir


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except VmhostError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


@app.command()
def rotate(ctx: typer.Context) -> None:
    """Replace the admin token (data_dir/api-token); the old one is refused from the agent's next request on."""
    with _errors():
        path = store.rotate_admin_token(_data_dir(ctx))
    typer.echo(f"rotated the admin token in {path}", err=True)


@app.command()
def create(
    ctx: typer.Context,
    read_only: Annotated[bool, typer.Option("--read-only", help="May only read (GET): no action, no console.")] = False,
    name: Annotated[str | None, typer.Option("--name", help="Its name for `list` and `revoke`.")] = None,
) -> None:
    """Make a token and print it on stdout, this once: only its SHA-256 is stored."""
    name = name or f"token-{secrets.token_hex(3)}"
    with _errors():
        token = store.create_token(_data_dir(ctx), name, read_only)
    typer.echo(f"created {'read-only' if read_only else 'admin'} token {name}; it is shown only now", err=True)
    typer.echo(token)


@app.command("list")
def list_tokens(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", "-j", help="JSON output.")] = False
) -> None:
    """Names, scopes and creation times (the admin token's: when its file last changed); never the tokens."""
    with _errors():
        rows = store.list_tokens(_data_dir(ctx))
    if as_json:
        typer.echo(json.dumps(rows))
        return
    typer.echo(f"{'NAME':<24} {'SCOPE':<10} CREATED")
    for row in rows:
        typer.echo(f"{row['name']:<24} {row['scope']:<10} {row['created']}")


@app.command()
def revoke(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Remove a token; the agent refuses it from its next request on."""
    with _errors():
        store.revoke_token(_data_dir(ctx), name)
    typer.echo(f"revoked {name}", err=True)
