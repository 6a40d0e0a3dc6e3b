"""Direct transfers: answer a content GET with a redirect to the storage itself.

When it happens (docs/decisions.md): the mount allows redirects (``redirect = true``,
the default), its backend can presign, and the client accepts them. A request with a
Bearer token (a compute job) is redirected by default; one with an API key only when it
asks. ``?redirect=false`` or ``X-Fedgate-Redirect: never`` forces streaming through
fedgate; ``?redirect=true`` or ``X-Fedgate-Redirect: always`` asks for a redirect.
The presigned URL never outlives the token (nor one hour).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from adapters.base import Entry, NotSupported, Storage, StorageError

if TYPE_CHECKING:
    from gateway.routes_data import Op

MAX_REDIRECT_LIFETIME = 3600


def wants_redirect(request: Request, has_token: bool) -> bool:
    flag = request.query_params.get("redirect", "").lower()
    header = request.headers.get("x-fedgate-redirect", "").lower()
    if flag in ("false", "0", "no") or header == "never":
        return False
    if flag in ("true", "1", "yes") or header == "always":
        return True
    return has_token


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
