"""What the door's methods share: plain-text answers, the caller, the paths."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from adapters.base import Entry, NotFound, Storage, StorageError
from gateway.api import paths
from gateway.api.auth import Principal
from gateway.api.operation import Op, stat_entry
from gateway.errors import CarminError, E
from gateway.webdav.credentials import authenticate_dav


def text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        message.rstrip("\n") + "\n",
        status_code=status,
        media_type="text/plain; charset=utf-8",
        headers=headers,
    )


def op_for(request: Request, operation: str) -> Op:
    return Op(request, operation, principal=authenticate_dav(request))


def prefix(op: Op) -> str:
    return op.gw.settings.webdav_prefix


async def readable(op: Op) -> tuple[Storage, Entry]:
    op.authorize("read")
    storage = await op.storage()
    return storage, await op.stat(storage)


async def existing(op: Op, storage: Storage, inner: str | None = None) -> Entry | None:
    try:
        return await stat_entry(storage, op.cpath.inner if inner is None else inner)
    except NotFound:
        return None
    except StorageError as exc:
        raise op.storage_error(exc) from None


def destination(request: Request, prefix: str) -> paths.CarminPath | None:
    """The ``Destination`` header as a path of this door, or None when it names another
    server (an absolute URL of another host: a third-party copy's push)."""
    raw = request.headers.get("destination")
    if not raw:
        raise CarminError(E.BAD_REQUEST, f"{request.method} needs a Destination header")
    parts = urlsplit(raw)
    if parts.netloc and parts.netloc != request.headers.get("host", ""):
        return None
    path = parts.path
    if not (path == prefix or path.startswith(prefix + "/")):
        raise CarminError(E.NOT_ALLOWED, f"Destination must be under {prefix}/")
    paths.check_raw(path.encode("utf-8", "surrogateescape"))
    return paths.parse(unquote(path[len(prefix) :]).lstrip("/"))


def overwrite(request: Request) -> bool:
    flag = request.headers.get("overwrite", "T").strip().upper()
    if flag not in ("T", "F"):
        raise CarminError(E.BAD_REQUEST, "Overwrite must be T or F")
    return flag == "T"


@dataclass(frozen=True)
class Landing:
    """Where a MOVE or COPY writes: authorised (create, and modify when it replaces),
    links followed, and whether the caller may only create there (then it never
    replaces, whatever appears meanwhile)."""

    op: Op
    storage: Storage
    found: Entry | None
    exclusive: bool


async def landing(
    request: Request, principal: Principal, target: paths.CarminPath, operation: str
) -> Landing | Response:
    dest = Op(request, operation, principal=principal, path=target)
    dest.mount_config()
    dest.authorize("create")
    storage = await dest.storage()  # authorises again where the destination lands (links)
    found = await existing(dest, storage, target.inner)
    if found is not None:
        if not overwrite(request):
            return text(412, f"{target.platform_path} exists and Overwrite is F")
        dest.authorize("modify")
    return Landing(dest, storage, found, not dest.allows("modify", target.inner))
