"""The web page at ``/``: one HTML document, one script, one style sheet and an icon, all
served from this package (no CDN; the page works with no network beyond the gateway).

The page is a client of the public API only (CARMIN ``/path``, ``/user/externalKeys``,
``/token``, ``/audit``): it adds no endpoint of its own. What it sends with every
answer: a Content-Security-Policy that allows scripts, styles and connections to this
origin only (no inline script, so an injected ``<script>`` does not run), forbids
framing (``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``, against
click-jacking), and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import gzip
import hashlib
import html
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.errors import CarminError, E

STATIC = Path(__file__).parent / "static"

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "manifest-src 'self'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
ASSETS = ("app.js", "app.css", "icon.svg")


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes
    media_type: str
    etag: str

    @classmethod
    def of(cls, name: str, body: bytes) -> Asset:
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        return cls(body, gzip.compress(body, 9, mtime=0), _TYPES[Path(name).suffix], etag)

    def response(self, request: Request, cache: str) -> Response:
        headers = {**SECURITY_HEADERS, "ETag": self.etag, "Cache-Control": cache}
        headers["Vary"] = "Accept-Encoding"
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        body = self.body
        if "gzip" in request.headers.get("accept-encoding", "") and len(body) > 1024:
            body, headers["Content-Encoding"] = self.gzipped, "gzip"
        return Response(body, media_type=self.media_type, headers=headers)


def load_assets(api_prefix: str) -> dict[str, Asset]:
    """Read the files once; the page learns the API prefix from a <meta> element
    (an inline script would need a CSP hash or nonce)."""
    assets = {name: Asset.of(name, (STATIC / name).read_bytes()) for name in ASSETS}
    page = (STATIC / "index.html").read_text("utf-8")
    # Each asset's URL carries its digest: a new release is never served a stale script.
    for name, asset in assets.items():
        page = page.replace(f"ui/{name}", f"ui/{name}?v={asset.etag.strip(chr(34))[:12]}")
    page = page.replace("{{API_PREFIX}}", html.escape(api_prefix, quote=True))
    assets["index.html"] = Asset.of("index.html", page.encode())
    return assets


def routes(api_prefix: str) -> list[BaseRoute]:
    assets = load_assets(api_prefix)

    async def index(request: Request) -> Response:
        # no-cache: always revalidated (cheap, ETag), so a new release shows at once.
        return assets["index.html"].response(request, "no-cache")

    async def asset(request: Request) -> Response:
        found = assets.get(request.path_params["name"])
        if found is None or request.path_params["name"] == "index.html":
            raise CarminError(E.NO_RESOURCE, "no such asset")
        return found.response(request, "public, max-age=86400")

    return [
        Route("/", index, methods=["GET"]),
        Route("/ui/{name}", asset, methods=["GET"]),
    ]
