"""The job-side client of fedgate, as a Python API (the ``fedgate get|put|ls|stat``
commands are a thin layer over it, see ``gateway/client/cli.py``).

Only httpx, tqdm and the standard library are imported here: a worker node needs no
server dependency. Example::

    from gateway.client import Client

    with Client("https://gw.example.org/rest", token=tok) as c:
        c.get("s3://bucket/inputs/subject1.nii.gz", "in/")
        c.put("out/", "/scratch/results/run42")
        for entry in c.ls("/scratch/results"):
            print(entry.path, entry.size)

URIs: a platform path ``/<mount>/<path>`` (or ``fedgate:/<mount>/<path>``), a URL of the
gateway's ``/path/…``, or any native URI the gateway can map to a mount (``s3://``,
``root://``, ``davs://``, ``irods://``, ``girder:/…`` and VIP's ``girder:/…?fileId=``),
resolved with ``GET /resolve``.

Errors are :class:`FedgateError` subclasses: :class:`UsageError`, :class:`NotFoundError`,
:class:`AuthError`, :class:`DeniedError`, :class:`ChecksumMismatch`, :class:`NetworkError`,
:class:`ConflictError`; each carries the CLI's ``exit_code``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.client import copy as copying
from gateway.client import discovery, transfer
from gateway.client.errors import (
    AuthError,
    ChecksumMismatch,
    ConflictError,
    DeniedError,
    ExitCode,
    FedgateError,
    NetworkError,
    NotFoundError,
    UsageError,
)
from gateway.client.http import Http
from gateway.client.transfer import BarFactory, FileResult, no_bar
from gateway.client.uris import Resolved, child, direct

R = TypeVar("R")

__all__ = [
    "AuthError",
    "ChecksumMismatch",
    "Client",
    "ConflictError",
    "DeniedError",
    "ExitCode",
    "FedgateError",
    "FileResult",
    "NetworkError",
    "NotFoundError",
    "PathInfo",
    "Resolved",
    "UsageError",
]


@dataclass(frozen=True)
class PathInfo:
    path: str
    is_dir: bool
    size: int | None = None
    mtime: int = 0
    mime_type: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> PathInfo:
        if not isinstance(data, dict) or not isinstance(data.get("platformPath"), str):
            raise FedgateError("the gateway sent a malformed Path object")
        return cls(
            path=data["platformPath"],
            is_dir=bool(data.get("isDirectory")),
            size=data.get("size"),
            mtime=int(data.get("lastModificationDate") or 0),
            mime_type=data.get("mimeType"),
        )

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def as_json(self) -> dict[str, Any]:
        out = {"path": self.path, "isDirectory": self.is_dir, "mtime": self.mtime}
        if self.size is not None:
            out["size"] = self.size
        if self.mime_type:
            out["mimeType"] = self.mime_type
        return out


class Client:
    """A fedgate client. ``token`` (a delegated token) or ``apikey`` (a user's key);
    with neither, the worker-node discovery of :mod:`gateway.client.discovery` applies.
    ``redirect``: None lets the gateway choose (tokens are redirected to the storage when
    the mount allows it), True/False ask it to redirect / to stream through itself.
    ``verify_checksums``: compare the sha-256 the gateway gives (Repr-Digest; md5 from an
    older gateway) with the bytes sent/received.
    """

    def __init__(
        self,
        gateway_url: str | None = None,
        token: str | None = None,
        *,
        apikey: str | None = None,
        retries: int = 5,
        backoff: float = 0.5,
        timeout: float = 60.0,
        verify_tls: bool = True,
        redirect: bool | None = None,
        verify_checksums: bool = True,
        progress: BarFactory = no_bar,
    ) -> None:
        self.gateway = discovery.discover_gateway(gateway_url)
        self.credential = discovery.discover_credential(token, apikey)
        self.http = Http(
            self.gateway,
            self.credential,
            retries=retries,
            backoff=backoff,
            timeout=timeout,
            verify=verify_tls,
            redirect=redirect,
        )
        self.verify_checksums = verify_checksums
        self.progress = progress

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- names -------------------------------------------------------------------------

    def resolve(self, uri: str) -> Resolved:
        found = direct(uri, self.gateway)
        if found is not None:
            return found
        answer = self.http.json("GET", self.gateway + "/resolve", "resolve URI", {"uri": uri})
        try:
            return Resolved(str(answer["mount"]), str(answer["path"]), str(answer["url"]))
        except (KeyError, TypeError):
            raise FedgateError("the gateway sent a malformed /resolve answer") from None

    def _target(self, uri: str | Resolved) -> Resolved:
        return uri if isinstance(uri, Resolved) else self.resolve(uri)

    # -- metadata ----------------------------------------------------------------------

    def stat(self, uri: str | Resolved) -> PathInfo:
        t = self._target(uri)
        data = self.http.json("GET", t.url, f"stat {t.path}", {"action": "properties"})
        return PathInfo.from_json(data)

    def exists(self, uri: str | Resolved) -> bool:
        t = self._target(uri)
        data = self.http.json("GET", t.url, f"exists {t.path}", {"action": "exists"})
        return bool(isinstance(data, dict) and data.get("exists"))

    def ls(self, uri: str | Resolved) -> list[PathInfo]:
        t = self._target(uri)
        data = self.http.json("GET", t.url, f"list {t.path}", {"action": "list"})
        if not isinstance(data, list):
            raise FedgateError("the gateway sent a malformed listing")
        return [PathInfo.from_json(d) for d in data]

    def md5(self, uri: str | Resolved) -> str:
        t = self._target(uri)
        data = self.http.json("GET", t.url, f"md5 of {t.path}", {"action": "md5"})
        return str(data["md5"])

    def mkdir(self, uri: str | Resolved, exist_ok: bool = False) -> bool:
        return transfer.mkdir(self.http, self._target(uri), exist_ok)

    # -- copies the gateway makes ------------------------------------------------------

    def copy(
        self,
        source: str,
        destination: str,
        *,
        remote_token: str | None = None,
        webdav: str | None = None,
    ) -> copying.CopyResult:
        """Copy on the gateway's side: between two fedgate paths, or by HTTP third-party
        copy with another server's URL (``remote_token`` goes to that server)."""
        ends = [self._copy_end(source), self._copy_end(destination)]
        door = copying.door_url(self.gateway, webdav)
        return copying.copy(self.http, door, ends[0], ends[1], remote_token, self.progress)

    def _copy_end(self, uri: str) -> Resolved | str:
        """Another server's http(s) URL stays a URL; anything else is a fedgate path."""
        text = uri.strip()
        if text.lower().startswith(("http://", "https://")) and not self.http.is_gateway(text):
            return text
        return self.resolve(text)

    # -- transfers ---------------------------------------------------------------------

    def get(self, uri: str | Resolved, dest: str | os.PathLike[str]) -> list[FileResult]:
        """Download a file (or a directory, recursively) to ``dest``; an existing
        directory ``dest`` receives it under its own name, as ``cp`` does."""
        t = self._target(uri)
        info = self.stat(t)
        out = Path(dest)
        if out.is_dir():
            out = out / (info.name or t.mount)
        if not info.is_dir:
            return [self._get_file(t, out, info.size)]
        return list(self._get_tree(t, out))

    def _get_file(self, t: Resolved, out: Path, size: int | None) -> FileResult:
        if not out.parent.is_dir():
            raise UsageError(f"{out.parent} is not a directory")
        return transfer.download(
            self.http,
            t,
            out,
            expected_size=size,
            verify=self.verify_checksums,
            bar=self.progress,
        )

    def _get_tree(self, t: Resolved, out: Path) -> Iterator[FileResult]:
        out.mkdir(exist_ok=True)
        yield FileResult("mkdir", t.path, str(out), checksum="none")
        for entry in self.ls(t):
            sub = child(t, self.gateway, entry.name)
            if entry.is_dir:
                yield from self._get_tree(sub, out / entry.name)
            else:
                yield self._get_file(sub, out / entry.name, entry.size)

    def put(self, src: str | os.PathLike[str], uri: str | Resolved) -> list[FileResult]:
        """Upload a file, or a directory recursively (mkdir + one PUT per file). An
        existing directory at ``uri`` receives ``src`` under its own name, as ``cp`` does;
        missing parents of ``uri`` are created. Works with a create-only token (no
        read right): what cannot be looked at is assumed absent."""
        local = Path(src)
        if not local.exists():
            raise UsageError(f"{local} does not exist")
        t = self._target(uri)
        if self._is_dir(t):
            t = child(t, self.gateway, local.resolve().name)
        if local.is_dir():
            return list(self._put_tree(local, t))
        return [self._put_file(local, t)]

    def _is_dir(self, t: Resolved) -> bool:
        try:
            return self.stat(t).is_dir
        except (NotFoundError, DeniedError):
            return False

    def _parent_missing(self, t: Resolved, action: Callable[[], R]) -> R:
        """Run ``action``; if the parent directory is missing, create it (and its own
        missing parents, bottom-up: no right is needed above the first existing one)."""
        try:
            return action()
        except ConflictError as exc:
            parent = t.path.rstrip("/").rsplit("/", 1)[0]
            if exc.code != 40904 or parent.count("/") < 2:
                raise
        up = direct(parent, self.gateway)
        assert up is not None
        self._parent_missing(up, lambda: self.mkdir(up, exist_ok=True))
        return action()

    def _put_file(self, local: Path, t: Resolved) -> FileResult:
        return self._parent_missing(
            t,
            lambda: transfer.upload(
                self.http, local, t, verify=self.verify_checksums, bar=self.progress
            ),
        )

    def _put_tree(self, local: Path, t: Resolved) -> Iterator[FileResult]:
        created = self._parent_missing(t, lambda: self.mkdir(t, exist_ok=True))
        note = "" if created else "existed"
        yield FileResult("mkdir", t.path, str(local), checksum="none", note=note)
        for entry in sorted(local.iterdir()):
            sub = child(t, self.gateway, entry.name)
            if entry.is_symlink() and entry.is_dir():
                continue  # never follow a link out of the tree (or round a loop)
            if entry.is_dir():
                yield from self._put_tree(entry, sub)
            elif entry.is_file():
                yield self._put_file(entry, sub)
