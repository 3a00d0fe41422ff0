"""The image store's files: fetching an image into the store (a local copy or an HTTP(S) download), hashing it
on the way, and deciding once, with qemu-img, whether it is a disk image vmhost will hand to QEMU.

An image is written to a temporary file in the store directory and renamed into place only once it is accepted;
whatever refuses it removes the temporary file, so a refusal leaves nothing.
"""

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import httpx

from vmhost.errors import HostResourceError
from vmhost.host import files
from vmhost.storage import qemu_img, registry

CHUNK = 1 << 20
DiskFormat = Literal["qcow2", "raw"]
Progress = Callable[[int, int | None], None]
"""(bytes so far, total bytes when known)."""
TEXT_PROBE = 4096
"""A raw image found by probing must not look like text in its first bytes (disk images hold NUL bytes there)."""


class NotAnImage(Exception):
    """The file is no disk image vmhost takes, or too big; the message says why (bad input, not a host fault)."""


@dataclass(frozen=True)
class Fetched:
    """A temporary file in the store directory holding the image's bytes, with their size and sha256."""

    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class Probed:
    format: DiskFormat
    virtual_size: int


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def url_host(url: str) -> str:
    """`host` or `host:port` as a URL names it (the form of allowed_image_hosts entries)."""
    parsed = httpx.URL(url)
    return f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host


def fetch(
    source: str,
    store: Path,
    max_bytes: int,
    timeout: float,
    progress: Progress,
    *,
    allowed_hosts: Sequence[str] | None = None,
) -> Fetched:
    """Copy a local file (never move it) or download a URL into a temporary file in `store`."""
    descriptor, name = tempfile.mkstemp(dir=store, prefix=".import-", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as out:
            os.fchmod(out.fileno(), files.PRIVATE_FILE)
            sink = _Sink(out, max_bytes, progress, source)
            if is_url(source):
                _download(source, sink, timeout, allowed_hosts)
            else:
                _copy(Path(source), sink)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return Fetched(temporary, sink.done, sink.digest.hexdigest())


class _Sink:
    """Writes chunks to the temporary file, hashing and counting them, and stops at the size bound."""

    def __init__(self, out: IO[bytes], max_bytes: int, progress: Progress, what: str):
        self.out, self.max_bytes, self.progress, self.what = out, max_bytes, progress, what
        self.digest = hashlib.sha256()
        self.done = 0

    def check_total(self, total: int | None) -> None:
        if total is not None and total > self.max_bytes:
            raise NotAnImage(f"{self.what} is {total} bytes, more than image_max_bytes ({self.max_bytes})")

    def pump(self, chunks: Iterator[bytes], total: int | None) -> None:
        self.progress(0, total)
        for chunk in chunks:
            self.done += len(chunk)
            if self.done > self.max_bytes:
                raise NotAnImage(f"{self.what} is more than image_max_bytes ({self.max_bytes}) bytes")
            self.digest.update(chunk)
            self.out.write(chunk)
            self.progress(self.done, total)


def _copy(source: Path, sink: _Sink) -> None:
    try:
        stream = source.open("rb")
    except OSError as exc:
        raise HostResourceError(f"cannot read {source}: {exc.strerror}") from None
    with stream:
        total = os.fstat(stream.fileno()).st_size
        sink.check_total(total)
        sink.pump(iter(lambda: stream.read(CHUNK), b""), total)


def _download(url: str, sink: _Sink, timeout: float, allowed_hosts: Sequence[str] | None) -> None:
    """Stream the body: a Content-Length above the bound is refused before reading, a body that grows past it
    is cut off there. Every request, redirects included, must go to an allowed host."""

    def allowed(request: httpx.Request) -> None:
        host = url_host(str(request.url))
        if allowed_hosts is not None and not registry.listed(host, allowed_hosts):
            raise HostResourceError(f"cannot download {url}: it leads to {host}, which is not in allowed_image_hosts")

    hooks = {"request": [allowed]}
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=True, event_hooks=hooks) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise HostResourceError(f"cannot download {url}: the server answered {response.status_code}")
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
            sink.check_total(total)
            sink.pump(response.iter_bytes(CHUNK), total)
    except httpx.HTTPError as exc:
        raise HostResourceError(f"cannot download {url}: {_reason(exc)}") from None


def _reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out (config image_download_timeout)"
    return str(exc) or type(exc).__name__


def probe(path: Path, fmt: Literal["auto", "qcow2", "raw"], size: int) -> Probed:
    """The image's format and virtual size, read once. Refused: an empty file; anything qemu-img cannot open as
    `fmt`; formats other than qcow2 and raw; a qcow2 naming a backing file or an external data file (it would
    point outside the store); and, when probing, a "raw" image that is no whole number of 512-byte sectors or
    whose first 4 KiB look like text (pass --format raw for a raw image that really is one)."""
    if size == 0:
        raise NotAnImage("the file is empty, not a disk image")
    try:
        info = qemu_img.image_info(path, None if fmt == "auto" else fmt)
    except HostResourceError as exc:
        raise NotAnImage(f"qemu-img cannot open it as {fmt}: {exc.detail or exc.message}") from None
    if info.format not in ("qcow2", "raw"):
        raise NotAnImage(f"it is a {info.format} image; the image store takes qcow2 and raw (qemu-img convert it)")
    if info.backing_file is not None:
        raise NotAnImage(
            f"it names backing file {info.backing_file}; the image store takes self-contained images only "
            "(qemu-img convert -O qcow2 flattens it)"
        )
    if info.data_file is not None:
        raise NotAnImage(f"it keeps its data in the external file {info.data_file}; the store takes none")
    if fmt == "auto" and info.format == "raw":
        _looks_raw(path, size)
    return Probed(format="qcow2" if info.format == "qcow2" else "raw", virtual_size=info.virtual_size)


def _looks_raw(path: Path, size: int) -> None:
    if size % 512:
        raise NotAnImage(
            f"it is no known image format and its {size} bytes are not whole 512-byte sectors; "
            "pass --format raw if it is a raw disk image"
        )
    with path.open("rb") as stream:
        head = stream.read(TEXT_PROBE)
    if b"\0" not in head and _is_text(head):
        raise NotAnImage("it looks like text, not a disk image; pass --format raw if it is a raw disk image")


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def place(fetched: Fetched, final: Path, mode: int, gid: int | None) -> None:
    """Give the accepted image its mode and group, then rename it into place."""
    if gid is not None:
        os.chown(fetched.path, -1, gid)
    os.chmod(fetched.path, mode)
    os.replace(fetched.path, final)
    files.fsync_dir(final.parent)


def sweep(store: Path, idle: float) -> None:
    """Remove temporary files of imports that died with their process (SIGKILL, power loss): no write for `idle`
    seconds. A live import writes at least every read timeout, and its probe is bounded by qemu-img's timeout."""
    limit = time.time() - idle
    for leftover in store.glob(".import-*.tmp"):
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < limit:
                leftover.unlink()


def remove(path: Path) -> None:
    """An image file, or an OCI layout directory."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
