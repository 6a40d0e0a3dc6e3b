"""``PUT /path/{completePath}``: mkdir, raw streamed uploads, CARMIN UploadData (File
and Archive), and redirected uploads."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from typing import Any
from urllib.parse import quote

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters.base import Entry, NotFound, Storage, StorageError
from gateway.api import archive, digests, paths
from gateway.api.operation import Op, path_json, stat_entry
from gateway.api.redirects import body_pending, put_redirect_requested, redirect_put
from gateway.api.web import gateway_of, read_capped
from gateway.datapath.digesting import digests_of, mismatch
from gateway.datapath.transfer import (
    receive_into,
)
from gateway.errors import CarminError, E

# --- PUT ------------------------------------------------------------------------------


def _location(request: Request, cpath: paths.CarminPath) -> str:
    gw = gateway_of(request)
    base = gw.settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")
    prefix = gw.settings.api_prefix
    return f"{base}{prefix}/path{quote(cpath.platform_path)}"


def _created(
    op: Op, entry: Entry, nbytes: int | None = None, stored: dict[str, str] | None = None
) -> Response:
    op.audit("ok", 201, nbytes)
    headers = {"Location": _location(op.request, op.cpath)}
    if stored and "sha256" in stored:
        # What the gateway hashed on the way in: the client compares it with its own.
        headers["Repr-Digest"] = digests.encode_repr("sha-256", stored["sha256"])
    return JSONResponse(path_json(op.cpath, entry), status_code=201, headers=headers)


async def _exists_entry(op: Op, storage: Storage) -> Entry | None:
    try:
        return await stat_entry(storage, op.cpath.inner)
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
        return await put_raw(op, storage)  # a held-back body, streamed after all
    if _is_empty_body(request) and (not media or trailing_slash):
        op.operation = "mkdir"
        op.authorize("create")
        storage = await op.storage()
        entry = await op.call(storage.mkdir, op.cpath.inner)
        return _created(op, entry)
    if media == "application/carmin+json":
        return await _put_upload_data(op)
    op.operation = "write"
    return await put_raw(op, await _storage_for_write(op))


def _create_only(op: Op) -> bool:
    """Whether the caller may create but not replace (a ``storage.create`` token): its
    uploads then commit without replacing, whatever appears at the path meanwhile."""
    where = [op.cpath.inner] + ([op.resolved.inner] if op.resolved is not None else [])
    return not all(op.allows("modify", inner) for inner in where)


async def put_raw(op: Op, storage: Storage) -> Response:
    request = op.request
    size_hint = request.headers.get("content-length")
    expected = digests.announced(request.headers)  # a malformed one: 400 before any write
    writer = await op.call(
        functools.partial(
            storage.open_write,
            op.cpath.inner,
            int(size_hint) if size_hint and size_hint.isdigit() else None,
            exclusive=_create_only(op),
        )
    )
    # Hashed while it streams (off the event loop), checked before commit, kept after.
    writer = digests.digesting(op, storage, op.cpath.inner, writer, expected)
    limit = op.gw.settings.max_upload_bytes
    if size_hint and size_hint.isdigit() and int(size_hint) > limit:
        await to_thread.run_sync(writer.abort)
        raise CarminError(E.TOO_LARGE, f"body larger than the {limit}-byte limit")
    try:
        entry, nbytes = await receive_into(writer, request, limit, op.gw.settings.socket_bodies)
    except StorageError as exc:
        raise op.storage_error(exc) from None
    return _created(op, entry, nbytes, writer.values)


async def _storage_for_write(op: Op) -> Storage:
    """Creating a new file needs ``create``; replacing an existing one needs ``modify``.
    What exists now only decides what to authorise: a caller without ``modify`` also
    commits without replacing (``_create_only``), so a file that appears while the
    bytes stream in is kept and the upload answers 409."""
    op.authorize("create")
    storage = await op.storage()
    existing = await _exists_entry(op, storage)
    if existing is not None and not existing.is_dir:
        op.authorize("modify")
    return storage


async def _read_json_body(op: Op) -> Any:
    body = await read_capped(op.request, op.gw.settings.max_json_upload_bytes, "JSON body")
    # Content-Digest here is the JSON body's (RFC 9530: the message content); the file's
    # own is UploadData.md5.
    expected = digests.announced(op.request.headers)
    if expected:
        wrong = mismatch(await to_thread.run_sync(digests_of, bytes(body)), expected)
        if wrong is not None:
            raise CarminError(
                E.MD5_MISMATCH, f"{wrong} of the body does not match: nothing written"
            )
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
        exclusive = _create_only(op)

        def write_all() -> Entry:
            writer = digests.digesting(
                op,
                storage,
                op.cpath.inner,
                storage.open_write(op.cpath.inner, size_hint=len(raw), exclusive=exclusive),
                {"md5": md5.strip().lower()} if md5 is not None else None,
            )
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
    await op.call(
        archive.unpack,
        unpacked,
        digests.recording(op, storage),  # every entry's digests kept as it is written
        op.cpath.inner,
        existing is not None,
        _create_only(op),
    )
    entry = await op.stat(storage)
    return _created(op, entry, len(raw))
