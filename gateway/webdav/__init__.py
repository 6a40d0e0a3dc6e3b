"""The WebDAV door: the same namespace as the CARMIN API, for grid and desktop tools.

``/webdav/<mount>/<path>`` (``[server] webdav_prefix``; ``""`` turns the door off) speaks
RFC 4918 class 1 plus what grid clients use (davix, gfal2's http plugin, rclone, curl):

    OPTIONS   DAV: 1, Allow
    GET/HEAD  bytes with Range, ETag, Last-Modified; RFC 3230 ``Want-Digest``
    PUT       create or replace a file, streamed and atomic; 0 bytes = an empty file
    MKCOL     201; 405 if it exists; 409 if the parent is missing
    DELETE    recursive, 204
    PROPFIND  Depth 0 or 1, streamed 207 multistatus; ``infinity`` is refused (403)
    MOVE      within one mount, ``Overwrite`` honoured

Requests go through the same authentication (API key, Basic with the API key as
password, fedgate Bearer tokens), the same authorisation and audit
(gateway/api/operation.py) and the same streaming data path (gateway/datapath/transfer.py) as the
CARMIN API; only the framing differs. Errors are plain statuses with a short text body:
DAV clients do not read CARMIN JSON.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from gateway.webdav.door import METHODS, dispatch


def routes(prefix: str) -> list[BaseRoute]:
    """The door's routes under ``prefix`` (none when the prefix is empty)."""
    if not prefix:
        return []
    return [
        Route(prefix, dispatch, methods=METHODS),
        Route(prefix + "/", dispatch, methods=METHODS),
        Route(prefix + "/{completePath:path}", dispatch, methods=METHODS),
    ]
