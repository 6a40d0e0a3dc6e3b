"""RFC 4918 multistatus documents, written piece by piece so a listing streams, and the
plain HTML index a browser gets for a folder.

Every ``response`` carries the same properties (what davix, gfal2 and rclone read):
``resourcetype``, ``getlastmodified``, ``displayname``, and for files
``getcontentlength``, ``getcontenttype``, ``getetag``. A PROPFIND that names other
properties gets these: RFC 4918 lets a server answer more than was asked, and the
clients of the field ignore what they did not ask for.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from functools import lru_cache
from html import escape as html_escape
from urllib.parse import quote
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from starlette.requests import Request

from adapters.base import Entry
from gateway.api.data import entity_tag
from gateway.errors import CarminError, E

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@lru_cache(maxsize=4096)
def http_date(seconds: int) -> str:
    """RFC 9110 IMF-fixdate. email.utils.formatdate was most of a PROPFIND entry's time
    (docs/decisions.md); files written together share their second, hence the cache."""
    t = time.gmtime(seconds)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def href(prefix: str, platform_path: str, is_dir: bool) -> str:
    """The URL path of a CARMIN path on the door; collections end with ``/``."""
    path = quote(prefix + platform_path, safe="/")
    return path if not is_dir or path.endswith("/") else path + "/"


def open_document() -> bytes:
    return b'<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">\n'


def close_document() -> bytes:
    return b"</D:multistatus>\n"


def _esc(text: str) -> str:
    # Most names need no escaping: skip the three replace calls for them.
    return escape(text) if ("&" in text or "<" in text or ">" in text) else text


_DIR_PROPS = "<D:resourcetype><D:collection/></D:resourcetype>"
_OK = "</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>\n"


def response(url: str, entry: Entry) -> bytes:
    name = entry.path.rpartition("/")[2]
    head = (
        f"<D:response><D:href>{_esc(url)}</D:href><D:propstat><D:prop>"
        f"<D:getlastmodified>{http_date(int(entry.mtime or 0))}</D:getlastmodified>"
        f"<D:displayname>{_esc(name)}</D:displayname>"
    )
    if entry.is_dir:
        return (head + _DIR_PROPS + _OK).encode()
    return (
        f"{head}<D:resourcetype/><D:getcontentlength>{entry.size or 0}</D:getcontentlength>"
        f"<D:getcontenttype>{_esc(entry.mime_type or 'application/octet-stream')}"
        f"</D:getcontenttype><D:getetag>{entity_tag(entry)}</D:getetag>{_OK}"
    ).encode()


def responses(parent_url: str, children: Iterable[Entry]) -> bytes:
    base = parent_url if parent_url.endswith("/") else parent_url + "/"
    return b"".join(response(base + quote(e.name) + ("/" if e.is_dir else ""), e) for e in children)


def finite_depth_error() -> bytes:
    """RFC 4918 section 9.1: the precondition a server names when it refuses infinity."""
    return (
        b'<?xml version="1.0" encoding="utf-8"?>\n'
        b'<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>\n'
    )


async def check_request_body(request: Request, limit: int) -> None:
    """A PROPFIND body is read up to ``limit`` bytes and must be well-formed XML
    (defusedxml: no entity expansion, no external entities)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise CarminError(E.TOO_LARGE, f"PROPFIND body larger than {limit} bytes")
    if not body.strip():
        return
    try:
        fromstring(bytes(body))
    except (ParseError, DefusedXmlException):
        raise CarminError(E.BAD_BODY, "PROPFIND body is not well-formed XML") from None


def index_head(title: str) -> bytes:
    t = html_escape(title)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{t}</title>'
        f"</head><body><h1>{t}</h1><ul>\n"
    ).encode()


def index_rows(base_url: str, entries: Iterable[Entry]) -> bytes:
    base = base_url if base_url.endswith("/") else base_url + "/"
    rows = []
    for e in entries:
        link = html_escape(base + quote(e.name) + ("/" if e.is_dir else ""))
        rows.append(f'<li><a href="{link}">{html_escape(e.name)}{"/" if e.is_dir else ""}</a></li>')
    return ("\n".join(rows) + "\n").encode() if rows else b""


def index_tail() -> bytes:
    return b"</ul></body></html>\n"
