"""Direct transfers: answer a content GET or a raw PUT with a redirect to the storage.

When it happens (docs/decisions.md): the mount allows redirects (``redirect = true``,
the default), its backend can presign URLs that need no extra header, and the client
accepts them. A content GET with a Bearer token (a compute job) is redirected by
default; one with an API key only when it asks. ``?redirect=false`` or
``X-Fedgate-Redirect: never`` forces streaming through fedgate; ``?redirect=true`` or
``X-Fedgate-Redirect: always`` asks for a redirect. A PUT is redirected only when it
asks, and only while its body has not been sent: an empty body, or ``Expect:
100-continue`` (the client waits for our answer before sending).

A presigned URL cannot be recalled and can be used any number of times until it
expires, so it never gives more than the request it answers: it lives
``presign_lifetime`` seconds (default 300) and never past the token; a token with a use
count is streamed, never redirected; and an upload URL for a token that may create but
not modify the target is one the storage refuses once the target exists (``If-None-Match:
*`` signed into an S3 URL, which the client sends with its PUT), or there is none.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from adapters.base import (
    Delegation,
    Entry,
    NotFound,
    NotSupported,
    Storage,
    StorageError,
    parent_of,
)
from gateway.api.auth import decide
from gateway.errors import CarminError, E

if TYPE_CHECKING:
    from gateway.api.operation import Op


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


def redirect_expiry(token_exp: int | None, lifetime: int) -> dt.datetime:
    """When a credential nothing can recall must die: ``lifetime`` seconds from now (at
    least 1), never after the token."""
    now = dt.datetime.now(dt.UTC)
    limit = now + dt.timedelta(seconds=max(1, lifetime))
    if token_exp is None:
        return limit
    return min(limit, dt.datetime.fromtimestamp(token_exp, dt.UTC))


def if_none_match_star(request: Request) -> bool:
    return request.headers.get("if-none-match", "").strip() == "*"


def _redirectable(delegation: Delegation) -> bool:
    # Adapters declare presign_needs_headers; this only guards against one that forgot.
    return delegation.kind == "url" and not delegation.headers


async def maybe_redirect(op: Op, storage: Storage, entry: Entry) -> Response | None:
    mount = op.mount
    caps = storage.capabilities
    # A URL that needs a header (a Girder token) cannot be followed by a redirect: it is
    # never minted for one (it would live on in the storage, unused and unrecorded).
    if mount is None or not mount.redirect or not caps.presign_read or caps.presign_needs_headers:
        return None
    claims = op.principal.claims
    if not wants_redirect(op.request, claims is not None):
        return None
    if claims is not None and claims.uses is not None:
        return None  # a URL is reusable until it expires: a counted token is streamed
    expires = redirect_expiry(claims.exp if claims else None, op.gw.settings.presign_lifetime)
    try:
        delegation = await to_thread.run_sync(storage.presign, op.cpath.inner, "GET", expires)
    except NotSupported:
        return None
    except StorageError as exc:
        raise op.storage_error(exc) from None
    if not _redirectable(delegation):
        return None
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
    stream (falling back would write an empty file).

    A token that may create but not modify the target, or that has a use count, gets
    only a URL the storage refuses once the target exists, and only when the client
    asked for that condition itself (``If-None-Match: *``: it is signed into the URL,
    and the client's PUT to the storage must carry it)."""
    mount = op.mount
    assert mount is not None
    claims = op.principal.claims
    inner = op.cpath.inner
    caps = storage.capabilities
    lifetime = op.gw.settings.presign_lifetime
    conditional = if_none_match_star(op.request) and caps.presign_create
    counted = claims is not None and claims.uses is not None
    create_only = not decide(op.principal, mount, "modify", op.cpath).allowed
    unconditional_ok = not counted and not create_only
    if (
        mount.redirect
        and caps.presign_write
        and not caps.presign_needs_headers
        and (conditional or unconditional_ok)
    ):

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
            expires = redirect_expiry(claims.exp if claims else None, lifetime)
            try:
                if conditional:
                    delegation = storage.presign_create(inner, expires)  # type: ignore[attr-defined]
                else:
                    delegation = storage.presign(inner, "PUT", expires)
            except NotSupported:
                return None
            if delegation.kind != "url" or set(delegation.headers) - {"If-None-Match"}:
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
            op.audit(f"error:{exc.spec.code}", exc.spec.status, reason=exc.message)
            raise
        if response is not None:
            op.audit("redirect", 307, 0)
            return response
    if held_back_body:
        return None
    if mount.redirect and caps.presign_write and not (unconditional_ok or conditional):
        how = (
            "send 'If-None-Match: *' to get a URL that only creates, or PUT the body to fedgate"
            if caps.presign_create
            else "PUT the body to fedgate instead"
        )
        why = "has a use count" if counted else "may create but not replace this file"
        refused = f"{mount.name}: no reusable upload URL for a token that {why}: {how}"
        op.audit(f"error:{E.NOT_ALLOWED.code}", E.NOT_ALLOWED.status, reason=refused)
        raise CarminError(E.NOT_ALLOWED, refused)
    unsupported = (
        f"{mount.name}: no direct upload URL for this mount; PUT the body to fedgate instead"
    )
    op.audit(f"error:{E.NOT_SUPPORTED.code}", E.NOT_SUPPORTED.status, reason=unsupported)
    raise CarminError(
        E.NOT_SUPPORTED,
        unsupported,
    )
