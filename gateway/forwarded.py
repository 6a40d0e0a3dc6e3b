"""The client's address behind reverse proxies, trusting only the configured ones.

A ``Forwarded`` (RFC 7239) or ``X-Forwarded-For`` header is written by whoever sends the
request, so it is read only when the peer is a trusted proxy (``[server]
trusted_proxies``), and then from the right: each proxy appends the address it saw, so
the client is the right-most address that is not itself a trusted proxy. Anything that
is not an IP address (``unknown``, an obfuscated ``_name``) ends the walk at the last
hop that could be verified. ``Forwarded`` wins when both headers are present.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def networks(proxies: Iterable[str]) -> tuple[Network, ...]:
    """``trusted_proxies`` parsed (config.py has checked every entry)."""
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _address(text: str) -> Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # [v6]:port or [v6]
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _forwarded_for(value: str) -> list[str]:
    out = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, val = pair.partition("=")
            if name.strip().lower() == "for":
                out.append(val.strip())
    return out


def client_address(
    peer: str | None, headers: Sequence[tuple[bytes, bytes]], trusted: tuple[Network, ...]
) -> str | None:
    """The address to log and audit for a request from ``peer`` with these headers."""
    if peer is None or not trusted:
        return peer
    peer_ip = _address(peer)
    if peer_ip is None or not any(peer_ip in net for net in trusted):
        return peer
    forwarded: list[str] = []
    xff: list[str] = []
    for name, raw in headers:
        if name == b"forwarded":
            forwarded += _forwarded_for(raw.decode("latin-1"))
        elif name == b"x-forwarded-for":
            xff += raw.decode("latin-1").split(",")
    hops = forwarded or xff
    client: Address = peer_ip
    for hop in reversed(hops):
        ip = _address(hop)
        if ip is None:
            break
        client = ip
        if not any(ip in net for net in trusted):
            break
    return str(client)
