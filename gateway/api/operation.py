"""One storage operation of the /path API: who asks, on which path, with which
storage — authorised, audited, and with backend errors mapped to CARMIN errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from anyio import to_thread
from starlette.requests import Request

from adapters.base import (
    AuthenticationFailed,
    Entry,
    LinkResolver,
    NotADirectory,
    NotFound,
    Storage,
    StorageError,
)
from gateway.api import paths
from gateway.api.auth import Principal, authenticate, authorize, decide
from gateway.api.web import gateway_of
from gateway.config import MountConfig
from gateway.errors import CarminError, E, from_storage
from gateway.metrics import backend_timer
from gateway.request_context import client_address, request_id
from gateway.state import no_service_credential
from tokens.audit import AuditEvent


def path_json(cpath: paths.CarminPath, entry: Entry) -> dict[str, Any]:
    """A CARMIN ``Path`` object; null fields are omitted. A directory's size is omitted
    (it would need a full walk of a remote tree)."""
    out: dict[str, Any] = {
        "platformPath": cpath.platform_path,
        "lastModificationDate": int(entry.mtime or 0),
        "isDirectory": entry.is_dir,
    }
    if not entry.is_dir and entry.size is not None:
        out["size"] = entry.size
    if entry.mime_type and not entry.is_dir:
        out["mimeType"] = entry.mime_type
    return out


def request_path(request: Request) -> paths.CarminPath:
    raw = request.scope.get("raw_path") or b""
    paths.check_raw(raw)
    return paths.parse(request.path_params.get("completePath", ""))


class Op:
    """One storage operation: authorised, audited, its storage errors mapped to CARMIN."""

    service_bound = False  # its storage runs on the mount's service credential

    def __init__(
        self,
        request: Request,
        operation: str,
        *,
        principal: Principal | None = None,
        path: paths.CarminPath | None = None,
    ) -> None:
        # ``principal``: a caller the route authenticated its own way (the WebDAV door's
        # Basic); ``path``: a second path of the same request (a MOVE's destination).
        self.gw = gateway_of(request)
        self.request = request
        self.operation = operation
        self.principal: Principal = principal or authenticate(request)
        self.cpath = path or request_path(request)
        self.mount: MountConfig | None = None
        self.started = time.monotonic()
        # Where the path lands once a storage with symbolic links has followed them
        # (adapters.base.LinkResolver), and the activities authorised so far: each is
        # authorised on both paths, so a link cannot lead a token out of its scope.
        self.resolved: paths.CarminPath | None = None
        self._granted: list[str] = []

    def mount_config(self) -> MountConfig:
        self.mount = self.gw.mounts.config(self.cpath.mount)
        return self.mount

    def authorize(self, activity: str) -> MountConfig:
        mount = self.mount or self.mount_config()
        try:
            authorize(self.principal, mount, activity, self.cpath)
            if self.resolved is not None and not self._may_on_resolved(mount, activity):
                # Not naming the target: where a link leads is not the caller's to learn.
                raise CarminError(
                    E.SCOPE_DENIED if self.principal.claims is not None else E.NOT_ALLOWED,
                    f"{self.cpath.platform_path} is a link (or below one) to a path "
                    f"outside what this request may {activity}",
                )
        except CarminError as exc:
            self.audit("denied", exc.spec.status, reason=exc.message)
            raise
        self._granted.append(activity)
        return mount

    def _may_on_resolved(self, mount: MountConfig, activity: str) -> bool:
        assert self.resolved is not None
        if self.resolved == self.cpath:
            return True
        return decide(self.principal, mount, activity, self.resolved).allowed

    def allows(self, activity: str, inner: str) -> bool:
        """Whether ``activity`` on another path of this mount would be authorised (no
        audit record: for filtering what a listing shows)."""
        assert self.mount is not None
        where = paths.CarminPath(self.cpath.mount, inner)
        return decide(self.principal, self.mount, activity, where).allowed

    def link_in_scope(self, entry: Entry) -> bool:
        """False for a listed symbolic link whose target this request may not read."""
        return entry.link_target is None or self.allows("read", entry.link_target)

    def in_scope(self, entries: Iterator[Entry]) -> Iterator[Entry]:
        """A listing without the links that lead out of the caller's read scope."""
        try:
            for entry in entries:
                if self.link_in_scope(entry):
                    yield entry
        finally:
            close = getattr(entries, "close", None)
            if close is not None:
                close()  # the backend's listing, when the client leaves early

    async def storage(self) -> Storage:
        assert self.mount is not None
        mount = self.mount
        storage = self.gw.mounts.storage_without_blocking(mount)
        if storage is None:
            storage, self.service_bound = await self.call(
                self.gw.mounts.bind, mount, self.principal.user.name
            )
        assert storage is not None
        self._follow_links(storage)
        return storage

    def _follow_links(self, storage: Storage) -> None:
        """On a storage with links, authorise again where the path really lands. A write,
        mkdir, delete or move acts on a link itself, not on what it points to (a local
        disk: the resolution is a few cached syscalls, done on the event loop)."""
        if self.resolved is not None or not isinstance(storage, LinkResolver):
            return
        follow_last = self.operation not in ("write", "mkdir", "delete", "move")
        try:
            real = storage.real_path(self.cpath.inner, follow_last)
        except StorageError as exc:
            raise self.storage_error(exc) from None
        self.resolved = paths.CarminPath(self.cpath.mount, real)
        if real != self.cpath.inner:
            granted, self._granted = self._granted, []
            for activity in granted:
                self.authorize(activity)

    async def call(self, fn: Any, *args: Any) -> Any:
        try:
            # A functools.partial has no __name__: the metric names the function it wraps.
            name = str(getattr(getattr(fn, "func", fn), "__name__", "call"))
            with backend_timer(self.cpath.mount, name):
                return await to_thread.run_sync(fn, *args)
        except StorageError as exc:
            raise self.storage_error(exc) from None

    async def stat(self, storage: Storage) -> Entry:
        try:
            return await stat_entry(storage, self.cpath.inner)
        except StorageError as exc:
            raise self.storage_error(exc) from None

    def storage_error(self, exc: StorageError) -> CarminError:
        err = from_storage(exc, self.cpath.mount)
        if isinstance(exc, AuthenticationFailed) and self.service_bound and self.mount:
            err = no_service_credential(self.mount, refused=True)  # not the caller's 401
        self.audit(f"error:{err.spec.code}", err.spec.status, reason=err.message)
        return err

    def audit(
        self,
        result: str,
        status: int,
        nbytes: int | None = None,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.gw.audit.record(
            AuditEvent(
                time=time.time(),
                event="access",
                user=self.principal.user.name,
                token_id=self.principal.token_id,
                mount=self.cpath.mount or None,
                path=self.cpath.platform_path,
                operation=self.operation,
                result=result,
                status=status,
                bytes=nbytes,
                execution_id=self.principal.execution_id,
                detail=detail,  # e.g. a copy's other end
                request_id=request_id(),
                reason=reason,
                client=client_address(),
            )
        )


async def stat_entry(storage: Storage, path: str) -> Entry:
    try:
        if storage.capabilities.inline_stat:
            return storage.stat(path)
        entry: Entry = await to_thread.run_sync(storage.stat, path)
        return entry
    except NotADirectory:
        # "a/b" where "a" is a file: there is nothing at that path.
        raise NotFound(f"{path}: no such file or directory") from None
