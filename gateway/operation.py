"""One storage operation of the /path API: who asks, on which path, with which
storage — authorised, audited, and with backend errors mapped to CARMIN errors."""

from __future__ import annotations

import time
from typing import Any

from anyio import to_thread
from starlette.requests import Request

from adapters.base import (
    AuthenticationFailed,
    Entry,
    NotADirectory,
    NotFound,
    Storage,
    StorageError,
)
from gateway import paths
from gateway.auth import Principal, authenticate, authorize
from gateway.config import MountConfig
from gateway.errors import CarminError, from_storage
from gateway.metrics import backend_timer
from gateway.request_context import client_address, request_id
from gateway.state import no_service_credential
from gateway.web import gateway_of
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

    def mount_config(self) -> MountConfig:
        self.mount = self.gw.mounts.config(self.cpath.mount)
        return self.mount

    def authorize(self, activity: str) -> MountConfig:
        mount = self.mount or self.mount_config()
        try:
            authorize(self.principal, mount, activity, self.cpath)
        except CarminError as exc:
            self.audit("denied", exc.spec.status, reason=exc.message)
            raise
        return mount

    async def storage(self) -> Storage:
        assert self.mount is not None
        mount = self.mount
        fast = self.gw.mounts.storage_without_blocking(mount)
        if fast is not None:
            return fast
        storage: Storage
        storage, self.service_bound = await self.call(
            self.gw.mounts.bind, mount, self.principal.user.name
        )
        return storage

    async def call(self, fn: Any, *args: Any) -> Any:
        try:
            with backend_timer(self.cpath.mount, getattr(fn, "__name__", "call")):
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
        self, result: str, status: int, nbytes: int | None = None, reason: str | None = None
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
                detail=None,
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
