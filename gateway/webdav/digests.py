"""RFC 3230 instance digests, as grid clients ask for them.

gfal2 and davix send ``Want-Digest: adler32`` (or ``md5``) on HEAD/GET and compare the
``Digest`` answer with their own checksum; dCache and XRootD answer in the form below,
which is what those clients parse: adler32 as 8 lowercase hex digits, md5 and sha-256
as base64 of the raw digest.
"""

from __future__ import annotations

import base64

from adapters.base import Storage
from gateway.operation import Op

# RFC 3230 / IANA digest name (lowercase) -> the adapters' checksum name.
_ALGORITHMS = {"adler32": "adler32", "md5": "md5", "sha-256": "sha256"}
# When several are acceptable at the same quality, the cheapest to compute wins.
_PREFERENCE = ("adler32", "md5", "sha-256")


def wanted(header: str | None) -> list[str]:
    """The digests to send for a ``Want-Digest`` value: every supported name with a
    non-zero q, best first (RFC 3230 section 4.3.1). Unknown names are ignored."""
    if not header:
        return []
    ranked: list[tuple[float, int, str]] = []
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        if name not in _ALGORITHMS:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranked.append((-q, _PREFERENCE.index(name), name))
    return [name for _, _, name in sorted(set(ranked))]


def encode(name: str, hex_digest: str) -> str:
    if name == "adler32":
        return f"adler32={hex_digest.lower()}"
    return f"{name}={base64.b64encode(bytes.fromhex(hex_digest)).decode()}"


async def header(op: Op, storage: Storage, names: list[str]) -> str:
    """The ``Digest`` value for ``names``: native checksums where the backend keeps
    them, computed by streaming the file otherwise."""
    parts = []
    for name in names:
        hex_digest = await op.call(storage.checksum, op.cpath.inner, _ALGORITHMS[name])
        parts.append(encode(name, hex_digest))
    return ",".join(parts)
