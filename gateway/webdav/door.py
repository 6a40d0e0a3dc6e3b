"""The door's methods: each one is a CARMIN operation (gateway/api/operation.py) with
WebDAV framing. See the package docstring for what each method answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate

from starlette.requests import Request
from starlette.responses import Response

from adapters.base import Entry, Renaming, Storage
from gateway.api import data, digests, paths, upload
from gateway.api.auth import authorize
from gateway.api.operation import Op
from gateway.datapath.transfer import ClosingStreamingResponse, batches_in_thread
from gateway.errors import CarminError, E
from gateway.webdav import copying, multistatus
from gateway.webdav.common import (
    destination,
    existing,
    landing,
    op_for,
    overwrite,
    prefix,
    readable,
    text,
)
from gateway.webdav.credentials import challenge

METHODS = ["OPTIONS", "GET", "HEAD", "PUT", "MKCOL", "DELETE", "PROPFIND", "MOVE", "COPY"]
_ALLOW = ", ".join(METHODS)
# A PROPFIND body only says which properties to send; every answer carries the same
# small set, so the body is checked for size and form but not otherwise used.
MAX_PROPFIND_BODY = 64 * 1024


def _error(exc: CarminError) -> Response:
    response = text(exc.spec.status, exc.message, exc.headers)
    if exc.spec.status == 401:
        challenge(response)
    return response


async def dispatch(request: Request) -> Response:
    handler = _HANDLERS.get(request.method)
    if handler is None:  # the route's method list keeps others out; belt and braces
        return text(405, f"{request.method} is not supported", {"Allow": _ALLOW})
    try:
        return await handler(request)
    except CarminError as exc:
        return _error(exc)


def _href(prefix: str, cpath: paths.CarminPath, is_dir: bool) -> str:
    return multistatus.href(prefix, cpath.platform_path, is_dir)


# --- OPTIONS --------------------------------------------------------------------------


async def options(request: Request) -> Response:
    # Clients probe the door before they authenticate (davix, Windows): no credentials.
    return Response(
        status_code=200,
        headers={
            "DAV": "1",
            "Allow": _ALLOW,
            "MS-Author-Via": "DAV",
            "Accept-Ranges": "bytes",
            "Content-Length": "0",
        },
    )


# --- GET / HEAD -----------------------------------------------------------------------


async def get(request: Request) -> Response:
    op = op_for(request, "content")
    if op.cpath.is_root:
        return await _root_index(op)
    storage, entry = await readable(op)
    if entry.is_dir:
        return await _index(op, storage, entry)
    # data.content answers Want-Digest / Want-Repr-Digest, as on CARMIN.
    return await data.content(op, storage, entry, redirect=_redirect_asked(request))


def _redirect_asked(request: Request) -> bool:
    # Streaming is the door's default: a DAV client is not expected to follow a 307 to
    # a storage (curl does not). X-Fedgate-Redirect: always opts in, as on CARMIN.
    return request.headers.get("x-fedgate-redirect", "").lower() == "always"


async def head(request: Request) -> Response:
    op = op_for(request, "properties")
    if op.cpath.is_root:
        op.audit("ok", 200)
        return Response(status_code=200, headers={"Content-Type": "text/html; charset=utf-8"})
    storage, entry = await readable(op)
    if entry.is_dir:
        op.audit("ok", 200)
        return Response(status_code=200, headers={"Content-Type": "text/html; charset=utf-8"})
    headers = {
        "Content-Length": str(entry.size or 0),
        "Content-Type": entry.mime_type or "application/octet-stream",
        "Last-Modified": formatdate(entry.mtime or 0, usegmt=True),
        "ETag": data.entity_tag(entry),
        "Accept-Ranges": "bytes",
    }
    headers.update(await digests.response_headers(op, storage))
    op.audit("ok", 200)
    # A HEAD answer carries the GET's Content-Length and no body; Starlette would
    # otherwise put Content-Length: 0 for the empty content.
    response = Response(status_code=200)
    response.raw_headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
    return response


async def _index(op: Op, storage: Storage, entry: Entry) -> Response:
    """A folder asked with GET (a browser): a plain HTML listing, streamed."""
    # Links that lead out of the caller's read scope are not listed (gateway/api/operation.py).
    iterator = op.in_scope(await op.call(storage.list, op.cpath.inner))
    base = _href(prefix(op), op.cpath, True)

    async def body() -> AsyncIterator[bytes]:
        count = 0
        try:
            yield multistatus.index_head(op.cpath.platform_path)
            async for batch in batches_in_thread(iterator):
                count += len(batch)
                yield multistatus.index_rows(base, batch)
            yield multistatus.index_tail()
        finally:
            op.audit("ok", 200, count)

    return ClosingStreamingResponse(body(), media_type="text/html; charset=utf-8")


async def _root_index(op: Op) -> Response:
    mounts = _visible_mounts(op)
    base = prefix(op) + "/"
    rows = [Entry(path=m, is_dir=True) for m in mounts]
    op.audit("ok", 200)
    html = multistatus.index_head("/") + multistatus.index_rows(base, rows)
    return Response(html + multistatus.index_tail(), media_type="text/html; charset=utf-8")


def _visible_mounts(op: Op) -> list[str]:
    visible = []
    for mount in op.gw.settings.mounts:
        try:
            authorize(op.principal, mount, "read", paths.CarminPath(mount.name))
        except CarminError:
            continue
        visible.append(mount.name)
    return visible


# --- PUT ------------------------------------------------------------------------------


async def put(request: Request) -> Response:
    op = op_for(request, "write")
    if op.cpath.is_root or not op.cpath.inner:
        return text(405, "a mount or the root is a collection: PUT a file inside it")
    op.mount_config()
    op.authorize("create")
    storage = await op.storage()
    found = await existing(op, storage)
    if found is not None and found.is_dir:
        return text(405, f"{op.cpath.platform_path} is a collection")
    if found is not None:
        op.authorize("modify")
    # The same streamed, atomic write as a CARMIN raw PUT (an empty body is an empty
    # file here: DAV has MKCOL for folders).
    await upload.put_raw(op, storage)
    return Response(status_code=204 if found is not None else 201)


# --- MKCOL ----------------------------------------------------------------------------


async def mkcol(request: Request) -> Response:
    op = op_for(request, "mkdir")
    if op.cpath.is_root or not op.cpath.inner:
        return text(405, f"{op.cpath.platform_path} already exists")
    length = request.headers.get("content-length", "0")
    if length not in ("", "0") or "transfer-encoding" in request.headers:
        return text(415, "MKCOL takes no body")
    op.mount_config()
    op.authorize("create")
    storage = await op.storage()
    try:
        await op.call(storage.mkdir, op.cpath.inner)
    except CarminError as exc:
        if exc.spec is E.EXISTS:
            return text(405, f"{op.cpath.platform_path} already exists")
        raise
    op.audit("ok", 201)
    return Response(status_code=201)


# --- DELETE ---------------------------------------------------------------------------


async def delete(request: Request) -> Response:
    op = op_for(request, "delete")
    if op.cpath.is_root or not op.cpath.inner:
        return text(403, "a mount or the root cannot be deleted")
    op.mount_config()
    op.authorize("modify")
    storage = await op.storage()
    await op.call(storage.delete, op.cpath.inner)
    op.audit("ok", 204)
    return Response(status_code=204)


# --- PROPFIND -------------------------------------------------------------------------


async def propfind(request: Request) -> Response:
    depth = request.headers.get("depth", "infinity").strip().lower()
    op = op_for(request, "list" if depth == "1" else "properties")
    if depth not in ("0", "1"):
        return Response(
            multistatus.finite_depth_error(),
            status_code=403,
            media_type="application/xml; charset=utf-8",
        )
    await multistatus.check_request_body(request, MAX_PROPFIND_BODY)
    base = prefix(op)
    if op.cpath.is_root:
        children = [Entry(path=m, is_dir=True) for m in _visible_mounts(op)] if depth == "1" else []
        op.audit("ok", 207, len(children))
        head = multistatus.open_document() + multistatus.response(base + "/", Entry("", True))
        rows = multistatus.responses(base + "/", children)
        return _multistatus_response(head + rows + multistatus.close_document())
    storage, entry = await readable(op)
    self_href = _href(base, op.cpath, entry.is_dir)
    first = multistatus.open_document() + multistatus.response(self_href, entry)
    if depth == "0" or not entry.is_dir:
        op.audit("ok", 207, 0)
        return _multistatus_response(first + multistatus.close_document())
    iterator = op.in_scope(await op.call(storage.list, op.cpath.inner))

    async def body() -> AsyncIterator[bytes]:
        # Streamed as listed: a 100,000-entry folder is never held in memory.
        count = 0
        ok = False
        try:
            yield first
            async for batch in batches_in_thread(iterator):
                count += len(batch)
                yield multistatus.responses(self_href, batch)
            ok = True
            yield multistatus.close_document()
        finally:
            op.audit("ok" if ok else "error:stream", 207, count)

    return ClosingStreamingResponse(
        body(), status_code=207, media_type="application/xml; charset=utf-8"
    )


def _multistatus_response(body: bytes) -> Response:
    return Response(body, status_code=207, media_type="application/xml; charset=utf-8")


# --- MOVE -----------------------------------------------------------------------------


async def move(request: Request) -> Response:
    op = op_for(request, "move")
    if op.cpath.is_root or not op.cpath.inner:
        return text(403, "a mount or the root cannot be moved")
    target = destination(request, prefix(op))
    if target is None:
        return text(502, "MOVE works within this server (COPY copies to another one)")
    overwrite(request)  # a bad Overwrite header is refused before anything moves
    if target.mount != op.cpath.mount:
        return text(502, "MOVE works within one mount (use COPY then DELETE across mounts)")
    if not target.inner:
        return text(403, "the destination is the mount itself")
    if target.inner == op.cpath.inner:
        return text(403, "source and destination are the same")
    if target.inner.startswith(op.cpath.inner + "/"):
        return text(409, "cannot move a collection into itself")
    op.mount_config()
    # The source disappears (modify) and its bytes land where the caller may read them:
    # reading it is needed too, or a modify-only token could move a file into view.
    op.authorize("modify")
    storage, entry = await readable(op)
    land = await landing(request, op.principal, target, "move")
    if isinstance(land, Response):
        return land
    found = land.found
    await op.call(_move, storage, op.cpath.inner, target.inner, entry, found, land.exclusive)
    op.audit("ok", 204 if found else 201, entry.size, detail=f"to {target.platform_path}")
    return Response(status_code=204 if found is not None else 201)


def _move(
    storage: Storage, src: str, dst: str, entry: Entry, existing: Entry | None, exclusive: bool
) -> None:
    """The storage's own rename where it has one (links move as links); elsewhere a copy
    then a delete of the source: each file lands atomically, and the source goes only
    once the whole copy is in place (a failure leaves it complete)."""
    if existing is not None and (existing.is_dir or entry.is_dir):
        storage.delete(dst)  # RFC 4918 9.9.3: Overwrite T deletes the destination first
    if isinstance(storage, Renaming):
        storage.rename(src, dst, replace=not exclusive)
        return
    copying.copy_tree(storage, storage, src, dst, entry, exclusive)
    storage.delete(src)


_HANDLERS: dict[str, Callable[[Request], Awaitable[Response]]] = {
    "OPTIONS": options,
    "GET": get,
    "HEAD": head,
    "PUT": put,
    "MKCOL": mkcol,
    "DELETE": delete,
    "PROPFIND": propfind,
    "MOVE": move,
    "COPY": copying.copy,
}
