"""``/path/{completePath}``: the read side (GET actions) and DELETE."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters.base import Entry, NotFound, Storage, StorageError
from gateway.api import archive, digests, paths
from gateway.api.auth import authorize
from gateway.api.operation import Op, path_json, stat_entry
from gateway.api.ranges import Unsatisfiable, parse_range
from gateway.api.redirects import maybe_redirect
from gateway.datapath.transfer import (
    ClosingStreamingResponse,
    DownloadResponse,
    batches_in_thread,
    counted,
    iterate_in_thread,
)
from gateway.errors import CarminError, E

ACTIONS = ("exists", "properties", "list", "md5", "content")


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
        # Kept since the upload (or computed once by streaming, then kept).
        have = await digests.values(op, storage, {"md5"})
        op.audit("ok", 200)
        return JSONResponse({"md5": have.get("md5") or await _md5_of(op, storage)})
    return await content(op, storage, entry)


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
        await stat_entry(storage, op.cpath.inner)
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
            authorize(op.principal, mount, "read", paths.CarminPath(mount.name))
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
        return JSONResponse([path_json(paths.CarminPath(m.name), root) for m in visible])
    raise CarminError(E.IS_A_DIRECTORY, "/ is a directory (the list of mounts)")


async def _list(op: Op, storage: Storage, entry: Entry) -> Response:
    if not entry.is_dir:
        raise CarminError(E.NOT_A_DIRECTORY, f"{op.cpath.platform_path} is not a directory")
    # Links that lead out of the caller's read scope are not listed (adapters/posix.py).
    iterator = op.in_scope(await op.call(storage.list, op.cpath.inner))
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


def entity_tag(entry: Entry) -> str:
    """A strong ETag from what identifies the bytes without reading them (modification
    time in microseconds and size, in hex, as nginx does): the same on the CARMIN API and
    the WebDAV door, and cheap enough for every entry of a 100,000-entry PROPFIND."""
    return f'"{int((entry.mtime or 0) * 1_000_000):x}-{entry.size or 0:x}"'


async def content(op: Op, storage: Storage, entry: Entry, *, redirect: bool = True) -> Response:
    """A file's bytes (Range, If-Range) or a folder's tar.gz; ``redirect=False`` never
    answers with a redirect to the storage (the WebDAV door streams by default)."""
    request = op.request
    name = entry.name or op.cpath.mount
    if entry.is_dir:
        real_root = op.resolved.inner if op.resolved is not None else None
        stream = archive.stream_tar_gz(
            storage, op.cpath.inner, name, follow=op.link_in_scope, real_root=real_root
        )

        def done_dir(n: int, ok: bool) -> None:
            op.audit("ok" if ok else "error:stream", 200, n)

        return ClosingStreamingResponse(
            counted(iterate_in_thread(stream), None, done_dir),
            media_type="application/gzip",
            headers={"Content-Disposition": _content_disposition(name + ".tar.gz")},
        )
    size = entry.size or 0
    last_modified = formatdate(entry.mtime or 0, usegmt=True)
    etag = entity_tag(entry)
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
    # Repr-Digest / Digest as Want-Repr-Digest / Want-Digest ask: of the whole file
    # (a representation digest), so also on a 206 and on a redirect, for the job to
    # check what it fetches from the storage.
    # A GET does not wait for a digest that would need the file read first (a large
    # file not uploaded through fedgate): it leaves it out; a HEAD computes and keeps it.
    wanted = await digests.response_headers(op, storage, read=request.method == "HEAD")
    if redirect:
        moved = await maybe_redirect(op, storage, entry)
        if moved is not None:
            moved.headers.update(wanted)
            return moved
    start, end = (rng.start, rng.end) if rng else (0, size)
    headers = {
        "Content-Length": str(end - start),
        "Accept-Ranges": "bytes",
        "Last-Modified": last_modified,
        "ETag": etag,
        "Content-Disposition": _content_disposition(name),
        **wanted,
    }
    if rng:
        headers["Content-Range"] = rng.content_range(size)
    if request.method == "HEAD":
        # The GET's headers, no body: the storage is not opened.
        op.audit("ok", 206 if rng else 200)
        response = Response(status_code=206 if rng else 200)
        headers["Content-Type"] = entry.mime_type or "application/octet-stream"
        response.raw_headers = [
            (k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()
        ]
        return response
    iterator = await op.call(storage.open_read, op.cpath.inner, start, end)

    def done(n: int, ok: bool) -> None:
        op.audit("ok" if ok else "error:stream", 206 if rng else 200, n)

    return DownloadResponse(
        iterator,
        end - start,
        done,
        status_code=206 if rng else 200,
        headers=headers,
        media_type=entry.mime_type or "application/octet-stream",
        socket_send=op.gw.settings.socket_bodies,
        splice=op.gw.settings.splice_bodies,
        prefetch=storage.capabilities.read_ahead,
    )


async def _md5_of(op: Op, storage: Storage) -> str:
    # A file the digest store could not vouch for (changed while it was read): the
    # backend's own answer, computed now and not kept.
    return str(await op.call(storage.checksum, op.cpath.inner, "md5"))


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
