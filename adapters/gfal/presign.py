"""Presign for gfal mounts: ask an https/davs storage element for a macaroon.

gfal2's ``token_retrieve`` POSTs ``Content-Type: application/macaroon-request`` with
``{"caveats": ["activity:..."], "validity": "PT<n>M"}`` to the file's URL (dCache, and
XRootD with XrdMacaroons, scope the macaroon to that path) and refuses to do so over plain
http, where the macaroon would travel in clear. Validity is whole minutes, rounded down, so
the macaroon never outlives ``expires_at``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from adapters.base import BackendUnavailable, Delegation, NotSupported, StorageError
from adapters.gfal.urls import TLS_SCHEMES

# Least privilege per HTTP method (dCache activity names).
ACTIVITIES: dict[str, list[str]] = {
    "GET": ["DOWNLOAD"],
    "HEAD": ["DOWNLOAD"],
    "PUT": ["UPLOAD"],
    "DELETE": ["DELETE"],
}


def request_macaroon(
    ctx: Any,
    url: str,
    path: str,
    method: str,
    expires_at: dt.datetime,
    gerror: type[Exception],
    translate: Callable[[Any, str], StorageError],
) -> Delegation:
    """A macaroon for ``method`` on ``url`` (the file's URL without credentials), asked
    with the gfal2 context ``ctx``; ``translate`` turns a ``gerror`` into the error tree
    (with the view's secrets hidden)."""
    method = method.upper()
    activities = ACTIVITIES.get(method)
    if activities is None:
        raise NotSupported(f"no macaroon activity for method {method}")
    if urlsplit(url).scheme.lower() not in TLS_SCHEMES:
        raise NotSupported("macaroons are only requested over https/davs")
    now = dt.datetime.now(dt.UTC)
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=dt.UTC)
    minutes = int((expires_at - now).total_seconds() // 60)
    if minutes < 1:
        raise NotSupported("a storage element macaroon lives at least one minute")
    try:
        macaroon = str(ctx.token_retrieve(url, "", minutes, activities)).strip()
    except gerror as exc:
        err = translate(exc, path)
        if isinstance(err, BackendUnavailable):
            raise err from None
        raise NotSupported(f"the storage element issued no macaroon ({err})") from None
    if not macaroon:
        raise StorageError(f"{path}: the storage element returned an empty macaroon")
    return Delegation(
        kind="macaroon",
        value=macaroon,
        expires_at=now + dt.timedelta(minutes=minutes),
        method=method,
        headers={"Authorization": f"Bearer {macaroon}"},
        url=url,
    )
