"""``COPY``: between two paths of this gateway (any two mounts, streamed inside the
gateway, never through the client), or with another server (HTTP third-party copy,
gateway/webdav/tpc.py).

Who may copy: read on the source; create on the destination, and modify when it
replaces something (``Overwrite: T``, the default). A destination the caller may only
create is committed without replacing, whatever appears there meanwhile. Each file
lands atomically; its adler32 is computed as it streams and compared with the
storages' own where they keep one. Symbolic links inside a copied folder are not copied
(nor followed): a link can lead out of the caller's scope or into a loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

from starlette.requests import Request
from starlette.responses import Response

from adapters import checksums
from adapters.base import (
    ChecksumMismatch,
    Entry,
    LocalFiles,
    LocalFill,
    NotSupported,
    Storage,
    join,
)
from gateway.api import digests, paths
from gateway.api.operation import Op
from gateway.datapath.transfer import ClosingStreamingResponse
from gateway.webdav import peers, tpc
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


def copy_tree(
    source: Storage,
    target: Storage,
    src: str,
    dst: str,
    entry: Entry,
    exclusive: bool,
    keep: Callable[[Entry], bool] = lambda e: True,
    recurse: bool = True,
) -> int:
    """Copy a file, or a folder and (``recurse``) what is below it; the bytes copied."""
    if not entry.is_dir:
        return _copy_file(source, target, src, dst, entry, exclusive)
    target.mkdir(dst)
    total = 0
    if recurse:
        for child in source.list(src):
            if child.link_target is not None or not keep(child):
                continue  # links are neither copied nor followed (module docstring)
            total += copy_tree(
                source, target, child.path, join(dst, child.name), child, exclusive, keep
            )
    return total


def _copy_file(
    source: Storage, target: Storage, src: str, dst: str, entry: Entry, exclusive: bool
) -> int:
    writer = target.open_write(dst, entry.size, exclusive=exclusive)
    adler, n = 1, 0
    try:
        if isinstance(source, LocalFiles) and isinstance(writer, LocalFill):
            # Local folder to local folder: the kernel copies (copy_file_range). No
            # adler32 on the way: the count is checked, and neither side keeps one.
            n = writer.fill_from(str(source.local_path(src)))
            if entry.size is not None and n != entry.size:
                raise ChecksumMismatch(f"{src}: read {n} of {entry.size} bytes")
            writer.commit()
            return n
        for chunk in source.open_read(src):
            # root:// reads fill bytearrays (adapters/gfal/pread.py); writers take bytes.
            data = chunk if isinstance(chunk, bytes) else bytes(chunk)
            adler = checksums.adler32(data, adler)
            n += len(data)
            writer.write(data)
        if entry.size is not None and n != entry.size:
            raise ChecksumMismatch(f"{src}: read {n} of {entry.size} bytes")
        _check_native(source, src, adler)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    _check_native(target, dst, adler)
    return n


def _check_native(storage: Storage, path: str, adler: int) -> None:
    """Compare with the storage's own adler32, where it keeps one (XRootD): never a
    reread of the file to compute one."""
    if "adler32" not in storage.capabilities.native_checksums:
        return
    try:
        kept = storage.checksum(path, "adler32")
    except NotSupported:
        return
    if kept.lower().zfill(8) != checksums.hex32(adler):
        raise ChecksumMismatch(f"{path}: adler32 differs from the bytes copied")


async def copy(request: Request) -> Response:
    if "source" in request.headers:
        return await _pull(request)
    op = op_for(request, "copy")
    target = destination(request, prefix(op))
    if target is None:
        return await _push(request, op)
    return await _local(request, op, target)


async def _local(request: Request, op: Op, target: paths.CarminPath) -> Response:
    if op.cpath.is_root or target.is_root or not target.inner:
        return text(403, "copy from and to paths inside a mount")
    depth = request.headers.get("depth", "infinity").strip().lower()
    if depth not in ("0", "infinity"):
        return text(400, "Depth must be 0 or infinity on COPY")
    overwrite(request)  # a bad Overwrite header is refused before anything is read
    source, entry = await readable(op)
    if target.mount == op.cpath.mount and (
        target.inner == op.cpath.inner or target.inner.startswith(op.cpath.inner + "/")
    ):
        return text(403 if target.inner == op.cpath.inner else 409, "cannot copy into itself")
    land = await landing(request, op.principal, target, "write")
    if isinstance(land, Response):
        return land
    dest, target_storage, found, exclusive = land.op, land.storage, land.found, land.exclusive

    def run() -> int:
        if found is not None and (found.is_dir or entry.is_dir):
            target_storage.delete(target.inner)  # RFC 4918 9.8.4: Overwrite T replaces
        return copy_tree(
            source,
            digests.recording(dest, target_storage),  # the copies' digests kept
            op.cpath.inner,
            target.inner,
            entry,
            exclusive,
            keep=op.link_in_scope,
            recurse=depth == "infinity",
        )

    nbytes = await op.call(run)
    status = 204 if found is not None else 201
    op.audit("ok", status, nbytes, detail=f"to {target.platform_path}")
    return Response(status_code=status)


def _limits(op: Op) -> tpc.Limits:
    s = op.gw.settings
    return tpc.Limits(s.tpc_allow_private, float(s.tpc_stall_timeout), s.max_upload_bytes)


def _credential(request: Request) -> Response | None:
    value = request.headers.get("credential", "none").strip().lower()
    if value != "none":
        return text(400, "only 'Credential: none' is supported: send the remote's token in "
                         "TransferHeaderAuthorization")  # fmt: skip
    return None


def _slots(request: Request, op: Op) -> Response | tpc.Slots:
    slots: tpc.Slots | None = getattr(request.app.state, "tpc_slots", None)
    if slots is None:
        slots = request.app.state.tpc_slots = tpc.Slots()
    s = op.gw.settings
    if not slots.take(op.principal.user.name, s.tpc_max_per_user, s.tpc_max_total):
        return text(429, "too many copies in flight: retry later", {"Retry-After": "5"})
    return slots


def _streamed(
    request: Request, op: Op, slots: tpc.Slots, work: Callable[[tpc.Progress], int], detail: str
) -> Response:
    user = op.principal.user.name

    def done(nbytes: int, failure: str | None) -> None:
        slots.give(user)
        if failure is None:
            op.audit("ok", 201, nbytes, detail=detail)
        else:
            op.audit("error:tpc", 502, nbytes, reason=failure, detail=detail)

    body = tpc.report(work, float(op.gw.settings.tpc_marker_interval), done)
    return ClosingStreamingResponse(body, status_code=202, media_type="text/plain; charset=utf-8")


async def _pull(request: Request) -> Response:
    op = op_for(request, "write")
    refused = _credential(request)
    if refused is not None:
        return refused
    if op.cpath.is_root or not op.cpath.inner:
        return text(403, "pull into a path inside a mount")
    op.mount_config()
    op.authorize("create")
    storage = await op.storage()
    found = await existing(op, storage)
    if found is not None:
        if found.is_dir:
            return text(409, f"{op.cpath.platform_path} is a collection")
        if not overwrite(request):
            return text(412, f"{op.cpath.platform_path} exists and Overwrite is F")
        op.authorize("modify")
    exclusive = not op.allows("modify", op.cpath.inner)
    limits = _limits(op)
    url = request.headers["source"]
    # Checked before the answer starts, so a refused peer is a plain 4xx, not a marker.
    peer = await op.call(peers.check, url, limits.allow_private)
    slots = _slots(request, op)
    if isinstance(slots, Response):
        return slots
    work = functools.partial(
        tpc.pull,
        url,
        tpc.forwarded_headers(request.headers),
        digests.recording(op, storage),  # hashed as it arrives, kept once committed
        op.cpath.inner,
        exclusive,
        limits,
    )
    return _streamed(request, op, slots, work, f"from {peer.shown}")


async def _push(request: Request, op: Op) -> Response:
    refused = _credential(request)
    if refused is not None:
        return refused
    op.operation = "content"
    storage, entry = await readable(op)
    if entry.is_dir:
        return text(409, "a collection cannot be pushed: copy its files")
    limits = _limits(op)
    url = request.headers["destination"]
    peer = await op.call(peers.check, url, limits.allow_private)
    slots = _slots(request, op)
    if isinstance(slots, Response):
        return slots

    def source() -> Iterator[bytes]:
        return storage.open_read(op.cpath.inner)

    work = functools.partial(
        tpc.push, url, tpc.forwarded_headers(request.headers), source, entry.size or 0, limits
    )
    return _streamed(request, op, slots, work, f"to {peer.shown}")
