"""The storage element's URLs: the mount's base URL checked and normalised, a mount path
as a URL, and the token in XRootD's CGI."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from adapters.base import InvalidPath

HTTP_SCHEMES = frozenset({"http", "https", "dav", "davs"})
XROOTD_SCHEMES = frozenset({"root", "xroot", "roots", "xroots"})
# Where the storage element can be asked for a macaroon (presign.py).
TLS_SCHEMES = frozenset({"https", "davs"})


def normalise_base_url(url: str) -> tuple[str, str]:
    """(base URL without trailing slash, scheme). The root path is kept as written:
    XRootD wants ``root://host:port//abs/path``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in HTTP_SCHEMES | XROOTD_SCHEMES:
        raise ValueError(
            f"gfal base_url scheme {scheme!r} is not supported "
            "(use root://, xroot://, http://, https://, dav:// or davs://)"
        )
    if not parts.netloc:
        raise ValueError("gfal base_url needs a host")
    if parts.query or parts.fragment:
        raise ValueError("gfal base_url must not carry a query string or fragment")
    if parts.username or parts.password:
        raise ValueError("gfal base_url must not carry credentials; use the token option")
    base = url.rstrip("/")
    if scheme in XROOTD_SCHEMES and not base.split("://", 1)[1].partition("/")[2]:
        base += "/"  # root://host:port/ + /path below
    return base, scheme


def path_url(base: str, path: str) -> str:
    """The SE URL of a normalised mount path, each segment percent-encoded.

    Both gfal2 plugins decode percent-escapes once, so encoding makes spaces, ``%``, ``#``
    and non-ASCII names round-trip. ``?`` cannot: XrdHttp and the xrootd plugin both cut
    the path at a decoded ``?``, so such names are refused rather than silently truncated."""
    if not path:
        return base
    if "?" in path:
        raise InvalidPath(f"{path}: '?' cannot be stored on this storage element")
    return base + "/" + "/".join(quote(seg, safe="") for seg in path.split("/"))


def with_authz(url: str, token: str | None) -> str:
    """root:// ignores gfal2's BEARER credentials; XRootD takes the token as CGI."""
    if not token:
        return url
    return f"{url}?authz={quote('Bearer ' + token, safe='')}"
