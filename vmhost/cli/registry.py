"""`vmhost image pull`: an OCI image from a registry into the image store (skopeo), from the local engine or an
agent alike; registered on the `image` group of vmhost/cli/images.py."""

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Annotated

import typer
from rich.console import Console

from vmhost.cli.backend import Backend
from vmhost.cli.output import print_json

JsonOption = Annotated[bool, typer.Option("--json", "-j", help="Machine-readable JSON output.")]


def register(
    group: typer.Typer, connection: Callable[[], AbstractContextManager[Backend]], out: Console, err: Console
) -> None:
    @group.command("pull")
    def pull_image(
        reference: Annotated[
            str,
            typer.Argument(
                help="registry[:port]/repository[:tag][@sha256:digest], e.g. 127.0.0.1:5000/library/busybox:1.36"
            ),
        ],
        name: Annotated[
            str | None,
            typer.Option("--name", help="The image's name in the store; default: the repository's last part."),
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Pull an OCI image (skopeo; blobs verified, the manifest digest recorded) for `container.image: NAME`.
        TLS is verified except for literal loopback addresses and the config's insecure_registries."""

        def progress(line: str) -> None:
            err.print(line, markup=False, highlight=False)

        with connection() as connected:
            image = connected.pull_image(reference, name, progress)
        if as_json:
            print_json(out, image)
        else:
            out.print(f"pulled {image['source']} as {image['name']} ({image['uuid']})", markup=False, highlight=False)
