"""Direct transfers: answer a content GET or a raw PUT with a redirect to the storage.

When it happens (docs/decisions.md): the mount allows redirects (``redirect = true``,
the default), its backend can presign, and the client accepts them. A content GET with a
Bearer token (a compute job) is redirected by default; one with an API key only when it
asks. ``?redirect=false`` or ``X-Fedgate-Redirect: never`` forces streaming through
fedgate; ``?redirect=true`` or ``X-Fedgate-Redirect: always`` asks for a redirect.
A PUT is redirected only when it asks, and only while its body has not been sent: an
empty body, or ``Expect: 100-continue`` (the client waits for our answer before
sending). The presigned URL never outlives the token (nor one hour).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from adapters.base import Entry, NotFound, NotSupported, Storage, StorageError, parent_of
from gateway.errors import CarminError, E

if TYPE_CHECKING:
    from gateway.operation import Op

MAX_REDIRECT_LIFETIME = 3600


def _explicit(request: Request) -> bool | None:
    flag = request.query_params.get("redirect", "").lower()
    header = request.headers.get("x-fedgate-redirect", "").lower()
    if flag in ("false", "0", "no") or header == "never":
        return False
    if flag in ("true", "1", "yes") or header == "always":
        return True
    return None


def wants_redirect(request: Request, has_token: bool) -> bool:
    explicit = _explicit(request)
    return has_token if explicit is None else explicit


def redirect_expiry(token_exp: int | None) -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    limit = now + dt.timedelta(seconds=MAX_REDIRECT_LIFETIME)
    if token_exp is None:
        return limit
    return min(limit, dt.datetime.fromtimestamp(token_exp, dt.UTC))


async def maybe_redirect(op: Op, storage: Storage, entry: Entry) -> Response | None:
    mount = op.mount
    if mount is None or not mount.redirect or not storage.capabilities.presign_read:
        return None
    claims = op.principal.claims
    if not wants_redirect(op.request, claims is not None):
        return None
    expires = redirect_expiry(claims.exp if claims else None)
    try:
        delegation = await to_thread.run_sync(storage.presign, op.cpath.inner, "GET", expires)
    except NotSupported:
        return None
    except StorageError as exc:
        raise op.storage_error(exc) from None
    if delegation.kind != "url" or delegation.headers:
        return None  # a URL that needs extra headers cannot be followed by a redirect
    op.audit("redirect", 307, 0)
    return Response(
        status_code=307,
        headers={"Location": delegation.value, "Cache-Control": "no-store"},
    )


def put_redirect_requested(request: Request) -> bool:
    """Only an explicit ask: an empty PUT otherwise means mkdir (or an empty file)."""
    return _explicit(request) is True


def body_pending(request: Request) -> bool:
    """Whether a body is on its way that the client has not held back for our answer."""
    if request.headers.get("expect", "").lower() == "100-continue":
        return False
    length = request.headers.get("content-length")
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    return chunked or (length is not None and length != "0")


async def redirect_put(op: Op, storage: Storage, held_back_body: bool) -> Response | None:
    """A 307 to a presigned PUT URL, after the checks a streamed write gets (target not a
    directory, parent a directory; create/modify are checked by the caller). None when a
    held-back body can still be streamed instead; an error when there is no body to
    stream (falling back would write an empty file)."""
    mount = op.mount
    assert mount is not None
    claims = op.principal.claims
    inner = op.cpath.inner
    if mount.redirect and storage.capabilities.presign_write:

        def check_and_presign() -> Response | None:
            try:
                if storage.stat(inner).is_dir:
                    raise CarminError(E.IS_A_DIRECTORY, f"{op.cpath.platform_path} is a directory")
            except NotFound:
                pass
            parent = parent_of(inner)
            if parent:
                try:
                    is_dir = storage.stat(parent).is_dir
                except NotFound:
                    is_dir = False
                if not is_dir:
                    raise CarminError(
                        E.NO_PARENT, f"/{mount.name}/{parent}: parent directory does not exist"
                    )
            try:
                delegation = storage.presign(
                    inner, "PUT", redirect_expiry(claims.exp if claims else None)
                )
            except NotSupported:
                return None
            if delegation.kind != "url" or delegation.headers:
                return None
            return Response(
                status_code=307,
                headers={"Location": delegation.value, "Cache-Control": "no-store"},
            )

        try:
            response = await to_thread.run_sync(check_and_presign)
        except StorageError as exc:
            raise op.storage_error(exc) from None
        except CarminError as exc:
            op.audit(f"error:{exc.spec.code}", exc.spec.status)
            raise
        if response is not None:
            op.audit("redirect", 307, 0)
            return response
    if held_back_body:
        return None
    op.audit(f"error:{E.NOT_SUPPORTED.code}", E.NOT_SUPPORTED.status)
    raise CarminError(
        E.NOT_SUPPORTED,
        f"{mount.name}: no direct upload URL for this mount; PUT the body to fedgate instead",
    )
