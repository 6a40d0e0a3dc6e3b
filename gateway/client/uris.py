"""Client-side URI handling: which URIs name a gateway path directly, and the URLs of
the CARMIN operations on a platform path. Everything else is asked to ``/resolve``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from gateway.client.errors import UsageError


@dataclass(frozen=True, slots=True)
class Resolved:
    mount: str
    path: str  # platform path "/mount/inner"
    url: str  # the gateway's /path URL (no query)


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port): two URLs share credentials only if these are equal."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme, 0)
    return scheme, (parts.hostname or "").lower(), port


def path_url(gateway: str, platform_path: str) -> str:
    return f"{gateway}/path/{quote(platform_path.strip('/'), safe='/')}"


def direct(uri: str, gateway: str) -> Resolved | None:
    """A platform path (``/mount/…``, or ``fedgate:/mount/…``) or a URL of this gateway's
    ``/path/…``: no need to ask ``/resolve``. None for anything else."""
    text = uri.strip()
    if not text:
        raise UsageError("empty URI")
    if text.startswith("fedgate:"):
        text = text[len("fedgate:") :]
        if not text.startswith("/"):
            raise UsageError("a fedgate: URI is fedgate:/<mount>/<path>")
    if text.startswith("/"):
        inner = "/".join(s for s in text.split("/") if s)
        if not inner:
            raise UsageError("name a mount: /<mount>/<path>")
        mount = inner.split("/", 1)[0]
        return Resolved(mount, "/" + inner, path_url(gateway, inner))
    if text.lower().startswith(("http://", "https://")) and origin(text) == origin(gateway):
        head = urlsplit(gateway).path.rstrip("/") + "/path/"
        parts = urlsplit(text)
        if parts.path.startswith(head):
            inner = "/".join(s for s in unquote(parts.path[len(head) :]).split("/") if s)
            if inner:
                mount = inner.split("/", 1)[0]
                return Resolved(mount, "/" + inner, path_url(gateway, inner))
    return None


def child(resolved: Resolved, gateway: str, name: str) -> Resolved:
    path = f"{resolved.path.rstrip('/')}/{name}"
    return Resolved(resolved.mount, path, path_url(gateway, path))
