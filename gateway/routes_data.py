"""``/path/{completePath}``: the CARMIN-Data operations (GET actions, PUT, DELETE)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters.base import Entry, NotADirectory, NotFound, Storage, StorageError
from gateway import archive, paths
from gateway.auth import Principal, authenticate, authorize
from gateway.config import MountConfig
from gateway.errors import CarminError, E, from_storage
from gateway.metrics import backend_timer
from gateway.ranges import Unsatisfiable, parse_range
from gateway.redirects import body_pending, maybe_redirect, put_redirect_requested, redirect_put
from gateway.state import Gateway
from gateway.transfer import (
    ClosingStreamingResponse,
    batches_in_thread,
    counted,
    iterate_in_thread,
    receive_into,
)
from tokens.audit import AuditEvent

ACTIONS = ("exists", "properties", "list", "md5", "content")


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


def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def _cpath(request: Request) -> paths.CarminPath:
    raw = request.scope.get("raw_path") or b""
    paths.check_raw(raw)
    return paths.parse(request.path_params.get("completePath", ""))


class Op:
    """One storage operation: authorised, audited, its storage errors mapped to CARMIN."""

    def __init__(self, request: Request, operation: str) -> None:
        self.gw = _gateway(request)
        self.request = request
        self.operation = operation
        self.principal: Principal = authenticate(request)
        self.cpath = _cpath(request)
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
            self.audit("denied", exc.spec.status)
            raise
        return mount

    async def storage(self) -> Storage:
        assert self.mount is not None
        mount = self.mount
        fast = self.gw.mounts.storage_without_blocking(mount)
        if fast is not None:
            return fast
        storage: Storage = await self.call(self.gw.mounts.storage, mount, self.principal.user.name)
        return storage

    async def call(self, fn: Any, *args: Any) -> Any:
        try:
            with backend_timer(self.cpath.mount, getattr(fn, "__name__", "call")):
                return await to_thread.run_sync(fn, *args)
        except StorageError as exc:
            raise self.storage_error(exc) from None

    async def stat(self, storage: Storage) -> Entry:
        try:
            return await _stat(storage, self.cpath.inner)
        except StorageError as exc:
            raise self.storage_error(exc) from None

    def storage_error(self, exc: StorageError) -> CarminError:
        err = from_storage(exc, self.cpath.mount)
        self.audit(f"error:{err.spec.code}", err.spec.status)
        return err

    def audit(self, result: str, status: int, nbytes: int | None = None) -> None:
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
            )
        )


async def _stat(storage: Storage, path: str) -> Entry:
    try:
        if storage.capabilities.inline_stat:
            return storage.stat(path)
        entry: Entry = await to_thread.run_sync(storage.stat, path)
        return entry
    except NotADirectory:
        # "a/b" where "a" is a file: there is nothing at that path.
        raise NotFound(f"{path}: no such file or directory") from None


# --- GET ------------------------------------------------------------------------------


async def get_path(request: Request) -> Response:
    action = request.query_params.get("action")
    if action not in ACTIONS:
        raise CarminError(
            E.BAD_ACTION, f"query parameter 'action' must be one of {', '.join(ACTIONS)}"
        )
    op = Op(request, action)
    if op.cpath.is_root:
        return await _virtual_root(op, action)
    if action == "exists":
        return await _exists(op)
    op.authorize("read")
    storage = await op.storage()
    entry = await op.stat(storage)
    if action == "properties":
        op.audit("ok", 200)
        return JSONResponse(path_json(op.cpath, entry))
    if action == "list":
        return await _list(op, storage, entry)
    if action == "md5":
        if entry.is_dir:
            raise CarminError(E.IS_A_DIRECTORY, f"{op.cpath.platform_path} is a directory")
        digest = await op.call(storage.checksum, op.cpath.inner, "md5")
        op.audit("ok", 200)
        return JSONResponse({"md5": digest})
    return await _content(op, storage, entry)


async def _exists(op: Op) -> Response:
    gw = op.gw
    mount = gw.settings.mount(op.cpath.mount)
    if mount is None:
        op.audit("ok", 200)
        return JSONResponse({"exists": False})
    op.mount = mount
    op.authorize("read")
    storage = await op.storage()
    try:
        await _stat(storage, op.cpath.inner)
        found = True
    except NotFound:
        found = False
    except StorageError as exc:
        raise op.storage_error(exc) from None
    op.audit("ok", 200)
    return JSONResponse({"exists": found})


async def _virtual_root(op: Op, action: str) -> Response:
    """``/path/`` is a read-only directory whose children are the mounts."""
    visible = []
    for mount in op.gw.settings.mounts:
        try:
            authorize(op.principal, mount, "read", paths.CarminPath(mount.name, ""))
            visible.append(mount)
        except CarminError:
            continue
    root = Entry(path="", is_dir=True, mtime=time.time())
    op.audit("ok", 200)
    if action == "exists":
        return JSONResponse({"exists": True})
    if action == "properties":
        return JSONResponse(path_json(op.cpath, root))
    if action == "list":
        return JSONResponse([path_json(paths.CarminPath(m.name, ""), root) for m in visible])
    raise CarminError(E.IS_A_DIRECTORY, "/ is a directory (the list of mounts)")


async def _list(op: Op, storage: Storage, entry: Entry) -> Response:
    if not entry.is_dir:
        raise CarminError(E.NOT_A_DIRECTORY, f"{op.cpath.platform_path} is not a directory")
    iterator = await op.call(storage.list, op.cpath.inner)
    mount_prefix = f"/{op.cpath.mount}/"

    async def body() -> AsyncIterator[bytes]:
        # Streamed as it is read: a 100,000-entry folder is never held in memory, and
        # the first bytes leave before the backend has finished listing.
        count = 0
        ok = False
        try:
            yield b"["
            async for batch in batches_in_thread(iterator):
                parts = []
                for e in batch:
                    item: dict[str, Any] = {
                        "platformPath": mount_prefix + e.path,
                        "lastModificationDate": int(e.mtime or 0),
                        "isDirectory": e.is_dir,
                    }
                    if not e.is_dir:
                        if e.size is not None:
                            item["size"] = e.size
                        if e.mime_type:
                            item["mimeType"] = e.mime_type
                    parts.append(json.dumps(item, ensure_ascii=False, separators=(",", ":")))
                chunk = ",".join(parts)
                yield ((b"," if count else b"") + chunk.encode())
                count += len(batch)
            ok = True  # set first: the client may hang up as soon as it has the "]"
            yield b"]"
        finally:
            op.audit("ok" if ok else "error:stream", 200, count)

    return ClosingStreamingResponse(body(), media_type="application/json")


def _content_disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


async def _content(op: Op, storage: Storage, entry: Entry) -> Response:
    request = op.request
    name = entry.name or op.cpath.mount
    if entry.is_dir:
        stream = archive.stream_tar_gz(storage, op.cpath.inner, name)

        def done_dir(n: int, ok: bool) -> None:
            op.audit("ok" if ok else "error:stream", 200, n)

        return ClosingStreamingResponse(
            counted(iterate_in_thread(stream), None, done_dir),
            media_type="application/gzip",
            headers={"Content-Disposition": _content_disposition(name + ".tar.gz")},
        )
    size = entry.size or 0
    last_modified = formatdate(entry.mtime or 0, usegmt=True)
    etag = '"' + hashlib.sha256(f"{size}-{entry.mtime}".encode()).hexdigest()[:32] + '"'
    try:
        rng = parse_range(
            request.headers.get("range"),
            size,
            request.headers.get("if-range"),
            (etag, last_modified),
        )
    except Unsatisfiable as exc:
        op.audit("error:41601", 416)
        raise CarminError(
            E.BAD_RANGE,
            f"range not satisfiable: the file has {exc.size} bytes",
            headers={"Content-Range": f"bytes */{exc.size}"},
        ) from None
    redirect = await maybe_redirect(op, storage, entry)
    if redirect is not None:
        return redirect
    start, end = (rng.start, rng.end) if rng else (0, size)
    iterator = await op.call(storage.open_read, op.cpath.inner, start, end)
    headers = {
        "Content-Length": str(end - start),
        "Accept-Ranges": "bytes",
        "Last-Modified": last_modified,
        "ETag": etag,
        "Content-Disposition": _content_disposition(name),
    }
    if rng:
        headers["Content-Range"] = rng.content_range(size)

    def done(n: int, ok: bool) -> None:
        op.audit("ok" if ok else "error:stream", 206 if rng else 200, n)

    return ClosingStreamingResponse(
        counted(iterate_in_thread(iterator), end - start, done),
        status_code=206 if rng else 200,
        headers=headers,
        media_type=entry.mime_type or "application/octet-stream",
    )


# --- PUT ------------------------------------------------------------------------------


def _location(request: Request, cpath: paths.CarminPath) -> str:
    gw = _gateway(request)
    base = gw.settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")
    prefix = gw.settings.api_prefix
    return f"{base}{prefix}/path{quote(cpath.platform_path)}"


def _created(op: Op, entry: Entry, nbytes: int | None = None) -> Response:
    op.audit("ok", 201, nbytes)
    return JSONResponse(
        path_json(op.cpath, entry),
        status_code=201,
        headers={"Location": _location(op.request, op.cpath)},
    )


async def _exists_entry(op: Op, storage: Storage) -> Entry | None:
    try:
        return await _stat(storage, op.cpath.inner)
    except NotFound:
        return None
    except StorageError as exc:
        raise op.storage_error(exc) from None


def _is_empty_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    return (length is None and not chunked) or length == "0"


async def put_path(request: Request) -> Response:
    op = Op(request, "put")
    if op.cpath.is_root:
        raise CarminError(E.NOT_ALLOWED, "/ is the list of mounts: write inside a mount")
    op.mount_config()
    if not op.cpath.inner:
        raise CarminError(E.EXISTS, f"{op.cpath.platform_path} is a mount: it already exists")
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";")[0].strip().lower()
    trailing_slash = request.url.path.endswith("/")
    direct = put_redirect_requested(request) and not body_pending(request)
    if direct and not trailing_slash and media != "application/carmin+json":
        op.operation = "write"
        storage = await _storage_for_write(op)
        redirect = await redirect_put(op, storage, not _is_empty_body(request))
        if redirect is not None:
            return redirect
        return await _put_raw(op, storage)  # a held-back body, streamed after all
    if _is_empty_body(request) and (not media or trailing_slash):
        op.operation = "mkdir"
        op.authorize("create")
        storage = await op.storage()
        entry = await op.call(storage.mkdir, op.cpath.inner)
        return _created(op, entry)
    if media == "application/carmin+json":
        return await _put_upload_data(op)
    op.operation = "write"
    return await _put_raw(op, await _storage_for_write(op))


async def _put_raw(op: Op, storage: Storage) -> Response:
    request = op.request
    size_hint = request.headers.get("content-length")
    writer = await op.call(
        storage.open_write,
        op.cpath.inner,
        int(size_hint) if size_hint and size_hint.isdigit() else None,
    )
    limit = op.gw.settings.max_upload_bytes
    if size_hint and size_hint.isdigit() and int(size_hint) > limit:
        await to_thread.run_sync(writer.abort)
        raise CarminError(E.TOO_LARGE, f"body larger than the {limit}-byte limit")
    try:
        entry, nbytes = await receive_into(writer, request, limit)
    except StorageError as exc:
        raise op.storage_error(exc) from None
    return _created(op, entry, nbytes)


async def _storage_for_write(op: Op) -> Storage:
    """Creating a new file needs ``create``; replacing an existing one needs ``modify``."""
    op.authorize("create")
    storage = await op.storage()
    existing = await _exists_entry(op, storage)
    if existing is not None and not existing.is_dir:
        op.authorize("modify")
    return storage


async def _read_json_body(op: Op) -> Any:
    limit = op.gw.settings.max_json_upload_bytes
    body = bytearray()
    async for chunk in op.request.stream():
        body += chunk
        if len(body) > limit:
            raise CarminError(E.TOO_LARGE, f"JSON body larger than the {limit}-byte limit")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CarminError(E.BAD_BODY, "body is not valid JSON") from None


async def _put_upload_data(op: Op) -> Response:
    data = await _read_json_body(op)
    if not isinstance(data, dict):
        raise CarminError(E.BAD_BODY, "UploadData must be a JSON object")
    kind = data.get("type")
    content = data.get("base64Content")
    md5 = data.get("md5")
    if kind not in ("File", "Archive"):
        raise CarminError(E.BAD_BODY, "UploadData.type must be 'File' or 'Archive'")
    if not isinstance(content, str):
        raise CarminError(E.BAD_BODY, "UploadData.base64Content (string) is required")
    if md5 is not None and not isinstance(md5, str):
        raise CarminError(E.BAD_BODY, "UploadData.md5 must be a string")
    try:
        raw = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise CarminError(E.BAD_BODY, "base64Content is not valid base64") from None
    if (
        md5 is not None
        and hashlib.md5(raw, usedforsecurity=False).hexdigest() != md5.strip().lower()
    ):
        raise CarminError(E.MD5_MISMATCH, "md5 of base64Content does not match: nothing written")
    if kind == "File":
        op.operation = "write"
        storage = await _storage_for_write(op)

        def write_all() -> Entry:
            writer = storage.open_write(op.cpath.inner, size_hint=len(raw))
            try:
                writer.write(raw)
                return writer.commit()
            except BaseException:
                writer.abort()
                raise

        entry = await op.call(write_all)
        return _created(op, entry, len(raw))
    op.operation = "unpack"
    op.authorize("create")
    settings = op.gw.settings
    unpacked = archive.Archive(raw, settings.max_archive_bytes, settings.max_archive_entries)
    storage = await op.storage()
    existing = await _exists_entry(op, storage)
    if existing is not None:
        if not existing.is_dir:
            raise CarminError(E.NOT_A_DIRECTORY, f"{op.cpath.platform_path} is a file")
        op.authorize("modify")
    await op.call(archive.unpack, unpacked, storage, op.cpath.inner, existing is not None)
    entry = await op.stat(storage)
    return _created(op, entry, len(raw))


# --- DELETE ---------------------------------------------------------------------------


async def delete_path(request: Request) -> Response:
    op = Op(request, "delete")
    if op.cpath.is_root or not op.cpath.inner:
        raise CarminError(E.NOT_ALLOWED, "a mount or the root cannot be deleted")
    op.authorize("modify")
    storage = await op.storage()
    await op.call(storage.delete, op.cpath.inner)
    op.audit("ok", 204)
    return Response(status_code=204)
