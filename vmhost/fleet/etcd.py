"""The fleet's one way to talk to etcd: etcd3gw (etcd's own HTTP/JSON gateway, no gRPC or protobuf stack to
match) for reads, writes, transactions and leases; the watch stream is read here, because etcd3gw's Watcher
drops the two answers a reconciler must act on: "compacted past your revision" and "the stream ended"."""

import base64
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import requests
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import ConnectionFailedError, ConnectionTimeoutError, Etcd3Exception

from vmhost.config import FleetConfig
from vmhost.errors import Unavailable, VmhostError

log = logging.getLogger("vmhost.fleet")
REQUEST_TIMEOUT = 5.0


class EtcdUnavailable(Unavailable):
    """No endpoint answered: the caller keeps what it has and tries again later."""


class Compacted(Exception):
    """A watch asked for history etcd no longer has: list again, then watch from that list's revision."""

    def __init__(self, revision: int):
        super().__init__(f"etcd compacted its history up to revision {revision}")
        self.revision = revision


@dataclass(frozen=True)
class Entry:
    key: str
    value: dict[str, Any]
    mod_revision: int
    create_revision: int


@dataclass(frozen=True)
class Change:
    kind: Literal["put", "delete"]
    key: str
    value: dict[str, Any] | None
    revision: int


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def prefix_end(prefix: str) -> str:
    """The range end that makes [prefix, end) every key starting with prefix (etcd's convention)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def put_op(key: str, value: dict[str, Any], lease: int | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"key": _b64(key), "value": _b64(json.dumps(value, sort_keys=True))}
    if lease:
        request["lease"] = lease
    return {"request_put": request}


def delete_op(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": _b64(key)}}


def unchanged(key: str, mod_revision: int) -> dict[str, Any]:
    """Compare: the key was last written at mod_revision (0: the key does not exist)."""
    return {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": mod_revision}


def absent(key: str) -> dict[str, Any]:
    return {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": 0}


def _entry(kv: dict[str, Any]) -> Entry:
    return Entry(
        key=_unb64(kv["key"]),
        value=json.loads(_unb64(kv.get("value", ""))) if kv.get("value") else {},
        mod_revision=int(kv.get("mod_revision", 0)),
        create_revision=int(kv.get("create_revision", 0)),
    )


class Etcd:
    """One client over the configured endpoints: a connection failure moves on to the next endpoint."""

    def __init__(self, config: FleetConfig, timeout: float = REQUEST_TIMEOUT):
        self._lock = threading.Lock()
        self._clients = [self._client(endpoint, config, timeout) for endpoint in config.etcd_endpoints]
        self._current = 0
        self.endpoints = config.etcd_endpoints

    @staticmethod
    def _client(endpoint: str, config: FleetConfig, timeout: float) -> Etcd3Client:
        protocol, _, address = endpoint.partition("://")
        host, _, port = address.rpartition(":")
        return Etcd3Client(
            host=host.strip("[]"),
            port=int(port),
            protocol=protocol,
            ca_cert=str(config.ca_file) if config.ca_file else None,
            cert_cert=str(config.cert_file) if config.cert_file else None,
            cert_key=str(config.key_file) if config.key_file else None,
            timeout=timeout,
            api_path="/v3/",
        )

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            start = self._current
        for step in range(len(self._clients)):
            index = (start + step) % len(self._clients)
            client = self._clients[index]
            try:
                answer: dict[str, Any] = client.post(client.get_url(path), json=body)
            except (ConnectionFailedError, ConnectionTimeoutError):
                continue
            except Etcd3Exception as exc:
                raise VmhostError(f"etcd refused {path}: {exc.detail_text or exc}") from None
            with self._lock:
                self._current = index
            return answer
        raise EtcdUnavailable(f"etcd is unreachable at {', '.join(self.endpoints)}")

    # ---- keys ------------------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        kvs = self._post("/kv/range", {"key": _b64(key)}).get("kvs", [])
        return _entry(kvs[0]) if kvs else None

    def range(self, prefix: str) -> tuple[list[Entry], int]:
        """Every key under prefix, and the store revision they were read at (a watch continues from it)."""
        answer = self._post("/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
        return [_entry(kv) for kv in answer.get("kvs", [])], int(answer["header"]["revision"])

    def put(self, key: str, value: dict[str, Any], lease: int | None = None) -> int:
        return int(self._post("/kv/put", put_op(key, value, lease)["request_put"])["header"]["revision"])

    def delete(self, key: str) -> None:
        self._post("/kv/deleterange", {"key": _b64(key)})

    def txn(
        self, compare: list[dict[str, Any]], success: list[dict[str, Any]], failure: list[dict[str, Any]] | None = None
    ) -> bool:
        """All of success if every compare holds, else failure; whether the compares held."""
        answer = self._post("/kv/txn", {"compare": compare, "success": success, "failure": failure or []})
        return bool(answer.get("succeeded", False))

    def compact(self, revision: int) -> None:
        self._post("/kv/compaction", {"revision": revision, "physical": True})

    def revision(self) -> int:
        return int(self._post("/kv/range", {"key": _b64("\0")})["header"]["revision"])

    # ---- leases ----------------------------------------------------------------------------------

    def grant(self, ttl: int) -> int:
        return int(self._post("/lease/grant", {"TTL": ttl})["ID"])

    def keep_alive(self, lease: int) -> bool:
        """One renewal; False when the lease had already expired (its keys are gone)."""
        result = self._post("/lease/keepalive", {"ID": lease}).get("result", {})
        return int(result.get("TTL", 0)) > 0

    def revoke(self, lease: int) -> None:
        self._post("/lease/revoke", {"ID": lease})

    # ---- watch -----------------------------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int, stop: threading.Event) -> Iterator[Change]:
        """Every change under prefix from start_revision on, in order, until stop is set. Raises Compacted when
        that history is gone and EtcdUnavailable when the stream cannot start or ends."""
        create: dict[str, Any] = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _b64(prefix_end(prefix)),
                "start_revision": start_revision,
                "progress_notify": True,
            }
        }
        with self._lock:
            client = self._clients[self._current]
        try:
            response = client.session.post(client.get_url("/watch"), json=create, stream=True, timeout=(5, None))
        except requests.RequestException as exc:
            raise EtcdUnavailable(f"etcd watch could not start: {exc}") from None
        closer = threading.Thread(target=_close_on, args=(stop, response), daemon=True, name="etcd-watch-stop")
        closer.start()
        try:
            yield from _changes(response, stop)
        except requests.RequestException as exc:
            if not stop.is_set():
                raise EtcdUnavailable(f"etcd watch stream broke: {exc}") from None
        finally:
            response.close()
        if not stop.is_set():
            raise EtcdUnavailable("etcd ended the watch stream")


def _close_on(stop: threading.Event, response: requests.Response) -> None:
    """Closing a streamed response does not wake a reader blocked in recv; shutting its socket down does."""
    stop.wait()
    with (
        contextlib.suppress(OSError, AttributeError, ValueError),
        socket.fromfd(response.raw._fp.fileno(), socket.AF_INET, socket.SOCK_STREAM) as duplicate,
    ):
        duplicate.shutdown(socket.SHUT_RDWR)
    response.close()


def _changes(response: requests.Response, stop: threading.Event) -> Iterator[Change]:
    for line in response.iter_lines():
        if stop.is_set():
            return
        if not line.strip():
            continue
        result = json.loads(line).get("result", {})
        if int(result.get("compact_revision", 0)):
            raise Compacted(int(result["compact_revision"]))
        if result.get("canceled"):
            raise EtcdUnavailable(f"etcd cancelled the watch: {result.get('cancel_reason', 'no reason given')}")
        for event in result.get("events", []):
            kv = event["kv"]
            entry = _entry(kv)
            kind: Literal["put", "delete"] = "delete" if event.get("type") == "DELETE" else "put"
            yield Change(kind, entry.key, entry.value if kind == "put" else None, entry.mod_revision)
