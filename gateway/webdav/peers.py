"""The other server of an HTTP third-party copy: who may be reached, and how.

A TPC endpoint makes the gateway open connections on a client's behalf, which is what an
attacker wants from an SSRF: the cloud's metadata service, the database next door, the
gateway's own admin routes. So a peer URL must be ``http`` or ``https``, and every
address its host resolves to must be public (not loopback, private, link-local,
multicast or reserved) unless the operator sets ``tpc_allow_private``. The connection
then goes to the address that was checked (the URL's host stays in ``Host`` and in TLS's
SNI and certificate check), so a second DNS answer cannot swap in an internal one.
Redirects are followed by hand, each hop checked the same way.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from gateway.errors import CarminError, E

MAX_REDIRECTS = 3


@dataclass(frozen=True)
class Peer:
    url: str  # as given, for the Host header and the audit (without its query)
    connect_url: str  # the same URL with the checked address as its host
    host: str  # the URL's host[:port] (Host header)
    hostname: str  # the URL's host name (TLS's SNI and certificate check)
    scheme: str

    @property
    def shown(self) -> str:
        """The URL without query, fragment or user info: safe for logs and markers."""
        parts = urlsplit(self.url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def check(url: str, allow_private: bool) -> Peer:
    """The peer ``url`` names, resolved and checked (blocking: DNS); CarminError if not
    allowed. Never echoes the URL's query (it may carry a token)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise CarminError(E.BAD_REQUEST, "the remote URL is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CarminError(E.BAD_REQUEST, "the remote URL must be an http or https URL")
    if parts.username or parts.password:
        raise CarminError(E.BAD_REQUEST, "the remote URL may not carry credentials")
    host = parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise CarminError(E.BAD_REQUEST, f"the remote host {host!r} cannot be resolved") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    if not allow_private and not all(_public(a) for a in addresses):
        raise CarminError(
            E.NOT_ALLOWED,
            f"the remote host {host!r} is a loopback, private or reserved address: "
            "third-party copies go to public hosts only (tpc_allow_private)",
        )
    address = addresses[0]
    literal = f"[{address}]" if ":" in address else address
    connect = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path, parts.query, ""))
    return Peer(
        url=url,
        connect_url=connect,
        host=parts.netloc.rpartition("@")[2],
        hostname=host,
        scheme=parts.scheme,
    )
