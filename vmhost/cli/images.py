"""`vmhost image import|list|get|delete`: the image store, from the local engine or an agent alike.

Bad input (a checksum mismatch, a file that is no disk image, a bad name) exits 2 with one `field: problem`
line per problem; a host or network failure (an unreachable URL) exits 1.
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from vmhost.cli import listing, registry
from vmhost.cli.backend import Backend
from vmhost.cli.output import print_json
from vmhost.spec import SpecError

JsonOption = Annotated[bool, typer.Option("--json", "-j", help="Machine-readable JSON output.")]
NameArg = Annotated[str, typer.Argument(help="Image name or UUID.")]
COLUMNS = ["name", "uuid", "kind", "format", "virtual_size_human", "source"]


def register(app: typer.Typer, backend: Callable[[], AbstractContextManager[Backend]], out: Console) -> None:
    """Add the `image` group to the main app (vmhost/cli/main.py)."""
    group = typer.Typer(help="The image store: disk images VM disks start from.", no_args_is_help=True)
    err = Console(stderr=True, soft_wrap=True, emoji=False)

    @contextmanager
    def connection() -> Iterator[Backend]:
        """The backend, with validation problems as `field: problem` lines and exit 2."""
        with backend() as connected:
            try:
                yield connected
            except SpecError as exc:
                for problem in exc.problems:
                    err.print(f"error: {problem}", markup=False, highlight=False)
                raise typer.Exit(2) from None

    @group.command("import")
    def import_image(
        source: Annotated[str, typer.Argument(help="A file under allowed_paths (copied), or an http(s) URL.")],
        name: Annotated[str, typer.Option("--name", help="The image's name in the store.")],
        sha256: Annotated[
            str | None, typer.Option("--sha256", help="Expected sha256; a mismatch keeps nothing.")
        ] = None,
        fmt: Annotated[str, typer.Option("--format", help="auto (qemu-img probes it, once), qcow2 or raw.")] = "auto",
        uuid: Annotated[str | None, typer.Option("--uuid", help="UUID to record (vmadm's image_uuid).")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Copy a file or download a URL into the image store, verify it and record its format and size."""
        request = {"source": source, "name": name, "sha256": sha256, "format": fmt, "uuid": uuid}
        with connection() as connected, _progress_bar(err, name) as progress:
            image = connected.import_image(request, progress)
        if as_json:
            print_json(out, image)
        else:
            out.print(
                f"imported {image['name']} ({image['uuid']}): {image['format']}, {image['virtual_size_human']}",
                markup=False,
                highlight=False,
            )

    @group.command("list")
    def list_images(as_json: JsonOption = False) -> None:
        """Every image in the store."""
        with connection() as connected:
            rows = connected.list_images()
        if as_json:
            print_json(out, rows)
            return
        listing.render(rows, COLUMNS, as_json=False, parsable=False, header=True, console=out)

    @group.command("get")
    def get_image(name: NameArg) -> None:
        """One image's record, as JSON."""
        with connection() as connected:
            image = connected.get_image(name)
        print_json(out, image)

    @group.command("delete")
    def delete_image(name: NameArg) -> None:
        """Remove an image and its file; refused while any VM uses it."""
        with connection() as connected:
            connected.delete_image(name)
        out.print(f"deleted image {name}", markup=False, highlight=False)

    registry.register(group, connection, out, err)  # `image pull` (helper oci)
    app.add_typer(group, name="image")


@contextmanager
def _progress_bar(err: Console, name: str) -> Iterator[Callable[[int, int | None], None]]:
    """A transfer bar on a terminal; nothing otherwise (scripts read stdout)."""
    if not err.is_terminal:
        yield _ignore
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True), TransferSpeedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(f"importing {name}", total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _ignore(_done: int, _total: int | None) -> None:
    """No terminal: no bar."""


def lookup(backend: Backend) -> Callable[[str], dict[str, Any] | None]:
    """An image by UUID, from one listing made the first time it is asked (the vmadm dialect's image_uuid)."""
    listed: list[list[dict[str, Any]]] = []

    def find(uuid: str) -> dict[str, Any] | None:
        if not listed:
            listed.append(backend.list_images())
        return next((image for image in listed[0] if image["uuid"] == uuid.lower()), None)

    return find
