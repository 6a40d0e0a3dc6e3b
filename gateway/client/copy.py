"""``fedgate cp SRC DEST``: copies the gateway makes itself, the bytes never through the
job — between two of its paths, or with another server (HTTP third-party copy).

Each side is a fedgate URI (``/mount/path``, ``fedgate:/…``, a gateway ``/path`` URL or
anything ``/resolve`` knows) or an ``http(s)`` URL of another server; at least one side
must be fedgate's. The request is a WebDAV ``COPY`` on the gateway's door
(``<origin>/webdav`` unless told otherwise): with ``Destination`` for a copy between
fedgate paths or a push, with ``Source`` for a pull. A third-party copy answers with
performance markers, read here to drive the progress bar, and a last line that decides
the exit code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from gateway.client.errors import ConflictError, FedgateError, NetworkError, NotFoundError
from gateway.client.http import Http, Retryable
from gateway.client.transfer import Bar, BarFactory
from gateway.client.uris import Resolved

_BYTES = re.compile(rb"^\s*Stripe Bytes Transferred:\s*(\d+)\s*$")


@dataclass(frozen=True)
class CopyResult:
    source: str
    destination: str
    bytes: int | None
    mode: str  # "local", "pull" or "push"


def door_url(gateway: str, webdav: str | None) -> str:
    if webdav:
        return webdav.rstrip("/")
    parts = urlsplit(gateway)
    return f"{parts.scheme}://{parts.netloc}/webdav"


def _on_door(door: str, t: Resolved) -> str:
    return door + quote(t.path, safe="/")


def copy(
    http: Http,
    door: str,
    source: Resolved | str,
    destination: Resolved | str,
    remote_token: str | None,
    bar: BarFactory,
) -> CopyResult:
    """``source``/``destination``: a resolved fedgate path, or another server's URL."""
    forward = {"TransferHeaderAuthorization": f"Bearer {remote_token}"} if remote_token else {}
    if isinstance(source, Resolved) and isinstance(destination, Resolved):
        url = _on_door(door, source)
        headers = {"Destination": _on_door(door, destination), "Overwrite": "T"}
        response, _ = http.send("COPY", url, headers=headers)
        try:
            _check(http, response, f"copy {source.path} to {destination.path}")
        finally:
            response.close()
        return CopyResult(source.path, destination.path, None, "local")
    if isinstance(source, Resolved):
        assert isinstance(destination, str)
        url, mode = _on_door(door, source), "push"
        headers = {"Destination": destination, "Credential": "none", **forward}
        shown = (source.path, destination)
    elif isinstance(destination, Resolved):
        url, mode = _on_door(door, destination), "pull"
        headers = {"Source": source, "Credential": "none", **forward}
        shown = (source, destination.path)
    else:
        raise FedgateError("one side of a copy must be a fedgate path")
    response, _ = http.send("COPY", url, headers=headers, stream=True)
    try:
        _check(http, response, f"copy {shown[0]} to {shown[1]}")
        progress = bar(shown[1].rsplit("/", 1)[-1], None, 0)
        moved, last = _follow_markers(response.iter_lines(), progress)
    finally:
        response.close()
    if last.startswith("success"):
        return CopyResult(shown[0], shown[1], moved, mode)
    reason = last.partition(":")[2].strip() or "the copy ended without a result"
    if "answered 404" in reason:
        raise NotFoundError(f"copy failed: {reason}")
    if "exists" in reason.lower():
        raise ConflictError(f"copy failed: {reason}")
    raise NetworkError(f"copy failed: {reason}")


def _check(http: Http, response: object, what: str) -> None:
    """The gateway's refusal as the client's typed error (no retry: a copy is not
    idempotent while it runs)."""
    try:
        http.check(response, what)  # type: ignore[arg-type]
    except Retryable as exc:
        raise exc.final or NetworkError(f"{what}: {exc}") from None


def _follow_markers(lines: Iterable[str], progress: Bar) -> tuple[int, str]:
    moved, last = 0, ""
    try:
        for text in lines:
            line = text.encode()
            m = _BYTES.match(line)
            if m:
                now = int(m.group(1))
                progress.update(now - moved)
                moved = now
            elif line.strip():
                last = line.strip().decode(errors="replace")
    finally:
        progress.close()
    return moved, last
