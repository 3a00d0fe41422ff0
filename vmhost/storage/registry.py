"""OCI images from a registry, pulled with skopeo (Debian's package; no registry HTTP of our own) into a local
OCI image layout, which the runc driver's unpacker (whiteouts, no escape from the rootfs) later unpacks.

A pull resolves the reference to its manifest digest first (`skopeo inspect`: skopeo hashes the manifest it got)
and then copies exactly that digest (`REF@sha256:…`), so a tag moved in between cannot slip another image in, and a
pinned reference must name that digest. skopeo checks every blob against its digest while it copies. TLS is
verified unless the registry is a literal loopback address or listed in `insecure_registries`. The layout is
written to a temporary directory beside its destination, watched against a size bound and a deadline, and renamed
into place only when complete: a failed pull leaves nothing.
"""

import ipaddress
import json
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmhost.errors import HostResourceError, HypervisorError
from vmhost.host import commands

INSPECT_TIMEOUT = 120.0
DEFAULT_REGISTRY = "docker.io"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
REFERENCE = re.compile(
    r"^(?P<name>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
"""The distribution reference grammar (name[:tag][@digest]), lowercase names; only sha256 pins."""
Progress = Callable[[str], None]
SKOPEO_MESSAGE = re.compile(r'level=(?:fatal|error) msg="(?P<msg>(?:[^"\\]|\\.)*)"')

HINTS = {
    "HTTP response to HTTPS client": "the registry has no TLS: only literal loopback addresses and the config's "
    "insecure_registries are reached without verified TLS",
    "connection refused": "the registry is unreachable",
    "no such host": "the registry's name does not resolve",
    "manifest unknown": "the registry has no such image, tag or digest",
    "certificate": "the registry's certificate is not trusted by this host",
}


def quiet(_line: str) -> None:
    """Default progress sink."""


class PullError(HostResourceError):
    """The reference is malformed, the registry unreachable or refused, or the image too big or not as pinned."""


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def source(self) -> str:
        """What is asked of the registry: the pinned digest when there is one (its tag is then only a label;
        skopeo refuses references with both), else the tag."""
        return f"{self.name}@{self.digest}" if self.digest else f"{self.name}:{self.tag}"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


@dataclass(frozen=True)
class Pulled:
    """A complete layout at `layout` holding one image; `digest` is the registry's manifest digest (what a pin
    names; the layout's own manifest differs when skopeo converted a Docker manifest to OCI)."""

    reference: Reference
    layout: Path
    digest: str
    size: int


def parse_reference(text: str) -> Reference:
    """`[registry[:port]/]repository[:tag][@sha256:…]`; no registry means Docker Hub, as for docker pull."""
    found = REFERENCE.match(text)
    if found is None:
        raise PullError(f"{text!r} is not an image reference (registry/repository[:tag][@sha256:digest])")
    first, _, rest = found["name"].partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DEFAULT_REGISTRY, found["name"] if rest else f"library/{found['name']}"
    tag = found["tag"] or (None if found["digest"] else "latest")
    return Reference(registry, repository, tag, found["digest"])


def listed(registry: str, entries: Sequence[str]) -> bool:
    """Whether a config list names the registry: as `host:port`, or as `host` (any port)."""
    return registry in entries or registry.partition(":")[0] in entries


def tls_verified(registry: str, insecure_registries: Sequence[str]) -> bool:
    """False only for literal loopback addresses and the configured insecure registries; a name (even localhost)
    is resolved by DNS or /etc/hosts, so it is not trusted to stay on this host."""
    try:
        if ipaddress.ip_address(registry.partition(":")[0]).is_loopback:
            return False
    except ValueError:
        pass
    return not listed(registry, insecure_registries)


def pull(
    text: str,
    layout: Path,
    *,
    skopeo: str = "skopeo",
    insecure_registries: Sequence[str] = (),
    max_bytes: int,
    timeout: float,
    progress: Progress = quiet,
) -> Pulled:
    """Copy the image `text` into a new OCI layout directory `layout` (it must not exist)."""
    reference = parse_reference(text)
    if layout.exists():
        raise PullError(f"refusing to overwrite {layout}")
    verify = tls_verified(reference.registry, insecure_registries)
    progress(f"resolving {reference}")
    deadline = time.monotonic() + timeout
    digest = _resolve(skopeo, reference, verify, min(timeout, INSPECT_TIMEOUT))
    if reference.digest is not None and digest != reference.digest:
        raise PullError(f"{reference} resolved to {digest}, not the pinned digest")
    partial = layout.with_name(f".{layout.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700)  # root only from the first blob on (skopeo would make it 0755): images may be private
    try:
        _copy(
            skopeo,
            reference,
            digest,
            verify=verify,
            partial=partial,
            max_bytes=max_bytes,
            timeout=deadline - time.monotonic(),
            progress=progress,
        )
        _check_single_image(partial)
        size = _size(partial)
        partial.rename(layout)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Pulled(reference=reference, layout=layout, digest=digest, size=size)


def _resolve(skopeo: str, reference: Reference, verify: bool, timeout: float) -> str:
    tls = [] if verify else ["--tls-verify=false"]
    done = commands.run(
        [skopeo, "inspect", *tls, "--format", "{{.Digest}}", f"docker://{reference.source}"],
        timeout,
        translate=lambda done: PullError(f"cannot pull {reference}: {_skopeo_message(done.stderr)}"),
        missing=f"skopeo ({skopeo}) is not installed on this host",
        timed_out=lambda: PullError(f"{reference.registry} did not answer within {timeout:g}s"),
    )
    digest = done.stdout.strip()
    if not DIGEST.match(digest):
        raise PullError(f"cannot pull {reference}: skopeo reported the digest {digest!r}")
    return digest


def _copy(
    skopeo: str,
    reference: Reference,
    digest: str,
    *,
    verify: bool,
    partial: Path,
    max_bytes: int,
    timeout: float,
    progress: Progress,
) -> None:
    def watch() -> None:
        if _size(partial) > max_bytes:
            raise PullError(f"{reference} is larger than image_pull_max_bytes ({max_bytes} bytes): pull aborted")

    source = f"docker://{reference.name}@{digest}"
    tls = [] if verify else ["--src-tls-verify=false"]
    argv = [skopeo, "copy", *tls, source, f"oci:{partial}"]
    try:
        status, lines = commands.stream(argv, timeout, progress, watch=watch, missing=f"skopeo ({skopeo}) is missing")
    except HypervisorError:
        raise PullError(f"pulling {reference} did not finish within image_pull_timeout") from None
    if status != 0:
        raise PullError(f"cannot pull {reference}: {_skopeo_message(chr(10).join(lines))}")
    watch()


def _check_single_image(layout: Path) -> None:
    try:
        [manifest] = json.loads((layout / "index.json").read_text())["manifests"]
        digest = str(manifest["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        raise PullError(f"skopeo left no single-image OCI layout in {layout}") from None
    if not DIGEST.match(digest):
        raise PullError(f"skopeo stored a manifest with digest {digest!r}")


def _size(directory: Path) -> int:
    if not directory.is_dir():
        return 0
    return sum(path.lstat().st_size for path in directory.rglob("*") if path.is_file())


def _skopeo_message(output: str) -> str:
    """skopeo's own reason (its fatal log line's msg, without its misleading "Error parsing image name" prefix),
    else its last line; with a hint for the usual causes."""
    found = list(SKOPEO_MESSAGE.finditer(output))
    lines = [line for line in output.strip().splitlines() if line]
    message = found[-1]["msg"].replace('\\"', '"') if found else (lines[-1] if lines else "skopeo failed")
    message = re.sub(r'^Error parsing image name "[^"]*": ', "", message)
    for cause, hint in HINTS.items():
        if cause in message:
            return f"{message} ({hint})"
    return message
