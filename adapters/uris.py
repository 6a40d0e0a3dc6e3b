"""Native storage URIs → (mount, path inside the mount): pure functions, no I/O.

A job may be handed a URI in the storage's own words; fedgate finds the mount that
covers it. Forms understood (``mounts`` are the configured mounts, in config order):

* ``s3://bucket/key`` — an ``s3`` mount with that ``bucket``, the key below its
  ``prefix``. An ``http(s)://endpoint/bucket/key`` path-style URL matches an ``s3`` mount
  whose ``endpoint_url`` is that endpoint.
* ``root://host[:port]//path`` (and ``xroot://``), ``http(s)://``, ``dav(s)://`` — a
  ``gfal`` mount whose ``base_url`` is above it. Schemes are compared as families
  (``dav`` = ``http``, ``davs`` = ``https``, ``xroot`` = ``root``), host case-insensitively,
  default ports made explicit (80, 443, 1094) and repeated slashes collapsed.
* ``irods://[user@]host[:port]/zone/path`` — an ``irods`` mount with that host, port
  (default 1247) and a ``root`` above the path.
* ``girder:/collection/<name>/…`` or ``girder:/user/<login>/…`` (Girder's escaped path
  form, ``\\-`` for a ``/`` inside a name), optionally ``?apiurl=<api url>`` to choose
  between Girder servers — a ``girder`` mount whose ``root`` is above it.
* VIP's ``girder:/<name>?apiurl=…&fileId=…&token=…``: :func:`parse_vip` extracts it;
  the id is resolved against the Girder server (I/O) by :func:`vip_path`. The ``token``
  is a secret: it never appears in a message, a repr or a log line.
* a fedgate URL ``<base><prefix>/path/<mount>/…`` — :func:`fedgate_path`.

When several mounts cover a URI the one with the deepest root wins (then config order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from adapters.girder.names import shown_name, split_girder_path

if TYPE_CHECKING:
    from adapters.base import Storage

_DEFAULT_PORTS = {"http": 80, "https": 443, "root": 1094, "irods": 1247}
_FAMILY = {
    "http": "http",
    "dav": "http",
    "https": "https",
    "davs": "https",
    "root": "root",
    "xroot": "root",
}
SECRET_PARAMS = frozenset({"token", "authz", "access_token", "x-amz-signature", "signature"})


class UriError(ValueError):
    """The URI cannot be parsed (HTTP 400). Messages never quote the URI's query."""


class NoMount(LookupError):
    """No configured mount covers the URI (HTTP 404)."""


class MountLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def options(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Match:
    mount: str
    inner: str  # "" for the mount root, else "a/b" (not yet validated by gateway/paths)
    depth: int = 0  # segments in the mount's root, to prefer the most specific mount


@dataclass(frozen=True, slots=True)
class VipReference:
    name: str
    api_url: str
    file_id: str
    token: str = field(repr=False)


def redact(uri: str) -> str:
    """The URI without its query string's values (safe to show or log)."""
    base, sep, query = uri.partition("?")
    if not sep:
        return base
    keys = [p.split("=", 1)[0] for p in query.split("&") if p]
    return base + "?" + "&".join(f"{k}=…" for k in keys)


def _segments(path: str) -> list[str]:
    """Decoded path segments; empty segments (double slashes) are dropped."""
    out = []
    for raw in path.split("/"):
        if not raw:
            continue
        seg = unquote(raw, errors="strict") if "%" in raw else raw
        if "/" in seg or "\x00" in seg:
            raise UriError("an encoded '/' or NUL inside a path segment")
        out.append(seg)
    return out


def _below(segments: list[str], root: list[str]) -> list[str] | None:
    if segments[: len(root)] != root:
        return None
    return segments[len(root) :]


def _split(uri: str) -> Any:
    try:
        parts = urlsplit(uri.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise UriError("not a valid URI") from None
    return parts


def _endpoint(url: str) -> tuple[str, str, int, list[str]] | None:
    """(family, host, port, path segments) of a storage URL, or None if not one."""
    parts = _split(url)
    family = _FAMILY.get(parts.scheme.lower())
    if family is None or not parts.hostname:
        return None
    port = parts.port or _DEFAULT_PORTS[family]
    return family, parts.hostname.lower(), port, _segments(parts.path)


def _best(matches: list[Match]) -> Match:
    if not matches:
        raise NoMount("no mount covers this URI")
    return max(matches, key=lambda m: m.depth)  # max keeps the first of equals


def _s3_matches(bucket: str, key: list[str], mounts: Sequence[MountLike]) -> list[Match]:
    out = []
    for m in mounts:
        if m.type != "s3" or str(m.options.get("bucket", "")) != bucket:
            continue
        prefix = _segments(str(m.options.get("prefix", "")))
        rest = _below(key, prefix)
        if rest is not None:
            out.append(Match(m.name, "/".join(rest), len(prefix) + 1))
    return out


def _url_matches(url: str, mounts: Sequence[MountLike]) -> list[Match]:
    target = _endpoint(url)
    if target is None:
        return []
    family, host, port, segs = target
    out = []
    for m in mounts:
        if m.type == "gfal" and m.options.get("base_url"):
            base = _endpoint(str(m.options["base_url"]))
            if base is None or base[:3] != (family, host, port):
                continue
            rest = _below(segs, base[3])
            if rest is not None:
                out.append(Match(m.name, "/".join(rest), len(base[3])))
        elif m.type == "s3" and m.options.get("endpoint_url"):
            base = _endpoint(str(m.options["endpoint_url"]))
            if base is None or base[:3] != (family, host, port):
                continue
            rest = _below(segs, base[3])
            if rest:  # path-style: /<bucket>/<key>
                out += _s3_matches(rest[0], rest[1:], [m])
    return out


def _irods_matches(uri: str, mounts: Sequence[MountLike]) -> list[Match]:
    parts = _split(uri)
    if not parts.hostname:
        raise UriError("an irods:// URI needs a host")
    host, port = parts.hostname.lower(), parts.port or _DEFAULT_PORTS["irods"]
    segs = _segments(parts.path)
    out = []
    for m in mounts:
        if m.type != "irods":
            continue
        if str(m.options.get("host", "")).lower() != host:
            continue
        if int(m.options.get("port", 1247)) != port:
            continue
        root = _segments(str(m.options.get("root", "")))
        if root and root[0] != str(m.options.get("zone", root[0])):
            continue
        rest = _below(segs, root)
        if rest is not None:
            out.append(Match(m.name, "/".join(rest), len(root)))
    return out


def _norm_api(url: str) -> str:
    return url.strip().rstrip("/").lower()


def _girder_matches(uri: str, mounts: Sequence[MountLike]) -> list[Match]:
    parts = _split(uri)
    query = parse_qs(parts.query)
    api = query.get("apiurl", [None])[0]
    # Girder's escaped form: "\-" is a "/" inside a name, so split before decoding names.
    raw = unquote(parts.path) if "%" in parts.path else parts.path
    segs = split_girder_path(raw)
    if not segs or segs[0] not in ("collection", "user"):
        raise UriError("a girder: URI names /collection/<name>/… or /user/<login>/…")
    out = []
    for m in mounts:
        if m.type != "girder":
            continue
        if api is not None and _norm_api(str(m.options.get("api_url", ""))) != _norm_api(api):
            continue
        root = split_girder_path(str(m.options.get("root", "")))
        rest = _below(segs, root)
        if rest is not None:
            out.append(Match(m.name, "/".join(shown_name(s) for s in rest), len(root)))
    return out


def parse_vip(uri: str) -> VipReference | None:
    """VIP's ``girder:/<name>?apiurl=…&fileId=…&token=…``, or None for any other URI."""
    if not uri.startswith("girder:") or "fileId=" not in uri:
        return None
    parts = _split(uri)
    query = parse_qs(parts.query)
    file_id = query.get("fileId", [""])[0]
    api = query.get("apiurl", [""])[0]
    if not file_id or not api:
        raise UriError("a VIP girder: URI needs apiurl and fileId")
    name = unquote(parts.path.lstrip("/"))
    return VipReference(name, api, file_id, query.get("token", [""])[0])


def vip_mounts(ref: VipReference, mounts: Sequence[MountLike]) -> list[str]:
    """The girder mounts on the server a VIP reference names, in config order."""
    want = _norm_api(ref.api_url)
    return [
        m.name
        for m in mounts
        if m.type == "girder" and _norm_api(str(m.options.get("api_url", ""))) == want
    ]


def vip_path(storage: Storage, ref: VipReference) -> str:
    """The path inside a girder mount of a VIP reference (asks Girder: blocking).
    NotFound when Girder does not know the id or it lies outside the mount."""
    from adapters.girder import GirderStorage
    from adapters.girder.vip import resolve_vip_reference

    if not isinstance(storage, GirderStorage):
        raise TypeError("VIP references resolve against a girder mount only")
    return resolve_vip_reference(storage, ref.file_id)


def fedgate_path(uri: str, bases: Sequence[str], prefix: str) -> str | None:
    """``mount/inner`` of a URL of this gateway (``<base><prefix>/path/…``), else None."""
    parts = _split(uri)
    target = _endpoint(uri) if parts.scheme.lower() in ("http", "https") else None
    if target is None:
        return None
    for base in bases:
        own = _endpoint(base)
        if own is None or own[:3] != target[:3]:
            continue
        head = [*own[3], *_segments(prefix), "path"]
        rest = _below(target[3], head)
        if rest is not None:
            return "/".join(rest)
    return None


def match_uri(uri: str, mounts: Sequence[MountLike]) -> Match:
    """The mount covering a native URI (not the VIP form: see :func:`parse_vip`).
    UriError if it cannot be parsed, NoMount if no mount covers it."""
    parts = _split(uri)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        if not parts.netloc:
            raise UriError("an s3:// URI names s3://<bucket>/<key>")
        return _best(_s3_matches(parts.netloc, _segments(parts.path), mounts))
    if scheme in _FAMILY:
        if not parts.hostname:
            raise UriError("the URL has no host")
        return _best(_url_matches(uri, mounts))
    if scheme == "irods":
        return _best(_irods_matches(uri, mounts))
    if scheme == "girder":
        return _best(_girder_matches(uri, mounts))
    if not scheme and uri.startswith("/"):
        segs = _segments(parts.path)
        if segs and any(m.name == segs[0] for m in mounts):
            return Match(segs[0], "/".join(segs[1:]))
        raise NoMount("no mount covers this URI")
    raise UriError("unknown URI scheme (s3, root, xroot, http, https, dav, davs, irods, girder)")
