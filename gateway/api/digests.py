"""Content digests on both faces (CARMIN and the WebDAV door): asked, served, checked.

Served:
- RFC 9530: ``Want-Repr-Digest: sha-256=10`` -> ``Repr-Digest: sha-256=:<base64>:``
  (a structured-field dictionary of byte sequences).
- RFC 3230, as grid clients ask (gfal2, davix send ``Want-Digest: adler32``):
  ``Digest: adler32=<8 lowercase hex>,md5=<base64>`` -- the form dCache and XRootD answer;
  ``crc32c=<8 hex>`` too (IANA's HTTP Digest Algorithm Values: hex, like adler32).

Checked on the way in: ``Content-Digest`` / ``Repr-Digest`` (RFC 9530), legacy ``Digest``
(RFC 3230) and ``Content-MD5``: every value the gateway can compute (md5, adler32,
sha-256, crc32c) is compared with the bytes received before the upload is committed.

Where a value comes from (``known``), cheapest first:
1. the algorithm is the backend's own (XRootD adler32, iRODS sha2) and the backend's
   identity of a file is coarse (mtime in seconds): the backend, always fresh;
2. the digest store (tokens/digests.py), if the row's identity matches a fresh stat;
3. the backend's own checksum, for the other natively kept ones;
4. one streamed read computing all four, kept for next time.

A file's identity is what changes whenever its bytes do (docs/decisions.md): size,
mtime in ns, inode and device on a local folder; ETag, version id, size and
modification time on S3; size and modification time elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

from adapters import checksums
from adapters.base import (
    BackendUnavailable,
    ContentVersions,
    Entry,
    LocalFiles,
    NotSupported,
    PermissionDenied,
    Storage,
    Writer,
)
from gateway.api.operation import Op
from gateway.datapath.digesting import DigestingWriter, Hasher, Keep
from gateway.errors import CarminError, E
from tokens.digests import DigestStore

# RFC 3230 / IANA digest name (lowercase) -> the adapters' checksum name.
_ALGORITHMS = {"adler32": "adler32", "crc32c": "crc32c", "md5": "md5", "sha-256": "sha256"}
# When several are acceptable at the same quality, the cheapest to compute wins.
_PREFERENCE = ("adler32", "crc32c", "md5", "sha-256")
# The 32-bit ones, written in hex in RFC 3230's Digest (base64 for the others).
_HEX_IN_DIGEST = ("adler32", "crc32c")
# RFC 9530 names (its registry calls adler32 "adler"); sha-256 is the one to prefer.
_REPR_ALGORITHMS = {"sha-256": "sha256", "md5": "md5", "adler": "adler32", "crc32c": "crc32c"}
_REPR_PREFERENCE = ("sha-256", "md5", "adler", "crc32c")
_HEX_LENGTH = {"md5": 32, "adler32": 8, "sha256": 64, "crc32c": 8}
_SF_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")

# --- parsing what the client sends --------------------------------------------------


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


def _sf_dictionary(header: str) -> list[tuple[str, str]]:
    """The members of a structured-field dictionary (RFC 8941 3.2), values as written;
    parameters dropped. ValueError when it is not one. Only the two value shapes the
    digest fields use are needed (integers, byte sequences), so no general parser."""
    members = []
    for item in header.split(","):
        member = item.strip().split(";", 1)[0].strip()
        key, eq, value = member.partition("=")
        if not _SF_KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a structured-field key")
        members.append((key, value.strip() if eq else "?1"))
    return members


def wanted_repr(header: str | None) -> list[str]:
    """The RFC 9530 names to answer a ``Want-Repr-Digest`` with, best first: the
    supported ones with a preference above 0. A header naming none of them gets
    sha-256 (a server may answer with an algorithm not asked for, section 4)."""
    if header is None:
        return []
    try:
        members = _sf_dictionary(header)
    except ValueError:
        return ["sha-256"]
    ranked = []
    for key, value in members:
        if key not in _REPR_ALGORITHMS:
            continue
        try:
            preference = int(value)
        except ValueError:
            continue
        if 0 < preference <= 10:
            ranked.append((-preference, _REPR_PREFERENCE.index(key), key))
    return [name for _, _, name in sorted(set(ranked))] or ["sha-256"]


def _from_base64(value: str, name: str, what: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CarminError(E.BAD_REQUEST, f"{what}: {name} is not base64") from None
    if len(raw) * 2 != _HEX_LENGTH[name]:
        raise CarminError(E.BAD_REQUEST, f"{what}: {name} has {len(raw)} bytes")
    return raw.hex()


def announced(headers: Mapping[str, str]) -> dict[str, str]:
    """What an upload says its bytes hash to (adapter names -> lowercase hex), from
    ``Content-Digest``, ``Repr-Digest``, ``Digest`` and ``Content-MD5``. Algorithms the
    gateway does not compute are ignored; a malformed value is a 400 (40001), and two
    headers that disagree can never both match (40005)."""
    found: list[tuple[str, str]] = []
    for field in ("content-digest", "repr-digest"):
        value = headers.get(field)
        if value is None:
            continue
        try:
            members = _sf_dictionary(value)
        except ValueError:
            raise CarminError(E.BAD_REQUEST, f"{field} is not a dictionary") from None
        for key, raw in members:
            name = _REPR_ALGORITHMS.get(key)
            if name is None:
                continue
            if len(raw) < 2 or raw[0] != ":" or raw[-1] != ":":
                raise CarminError(E.BAD_REQUEST, f"{field}: {key} must be a byte sequence")
            found.append((name, _from_base64(raw[1:-1], name, field)))
    legacy = headers.get("digest")
    if legacy is not None:
        for item in legacy.split(","):
            key, eq, value = item.strip().partition("=")
            name = _ALGORITHMS.get(key.strip().lower())
            if name is None or not eq:
                continue
            value = value.strip()
            if name in _HEX_IN_DIGEST:
                if not re.fullmatch(r"[0-9a-fA-F]{1,8}", value):
                    raise CarminError(E.BAD_REQUEST, f"digest: {name} must be 8 hex digits")
                found.append((name, value.lower().zfill(8)))
            else:
                found.append((name, _from_base64(value, name, "digest")))
    md5 = headers.get("content-md5")
    if md5 is not None:
        found.append(("md5", _from_base64(md5.strip(), "md5", "content-md5")))
    expected: dict[str, str] = {}
    for name, value in found:
        if expected.setdefault(name, value) != value:
            label = "sha-256" if name == "sha256" else name
            raise CarminError(E.MD5_MISMATCH, f"two different {label} values announced")
    return expected


# --- encoding what the gateway answers -------------------------------------------------


def encode(name: str, hex_digest: str) -> str:
    """One RFC 3230 ``Digest`` member (``name`` as in ``wanted``)."""
    if name in _HEX_IN_DIGEST:
        return f"{name}={hex_digest.lower().zfill(8)}"
    return f"{name}={base64.b64encode(bytes.fromhex(hex_digest)).decode()}"


def encode_repr(name: str, hex_digest: str) -> str:
    """One RFC 9530 ``Repr-Digest`` member (``name`` as in ``wanted_repr``)."""
    return f"{name}=:{base64.b64encode(bytes.fromhex(hex_digest.zfill(8))).decode()}:"


# --- identity, lookup, keeping ------------------------------------------------------------


def identity(storage: Storage, path: str) -> str | None:
    """What identifies the bytes at ``path`` now (None: a directory). Blocking."""
    if isinstance(storage, LocalFiles):  # an instance check: a Recording wrapper passes
        try:
            st = os.stat(storage.local_path(path))
        except OSError:
            st = None  # gone, or not ours to see: the storage's stat says which, below
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                return None
            return f"posix:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_dev}"
    if path and isinstance(storage, ContentVersions):  # S3: the object's own version
        version = storage.content_version(path)
        if version is not None:
            return f"version:{version}"
    entry = storage.stat(path)
    if entry.is_dir:
        return None
    return f"stat:{entry.size}:{entry.mtime!r}"


def _strong(ident: str | None) -> bool:
    """An identity that changes with every write, even within the same second."""
    return ident is not None and ident.startswith(("posix:", "version:"))


def keeper(store: DigestStore, mount: str, storage: Storage, path: str) -> Keep:
    """Where an upload's DigestingWriter hands its values once committed."""

    def keep(values: dict[str, str], entry: Entry) -> None:
        ident = identity(storage, path)
        if ident is not None:
            store.put(mount, path, ident, values)

    return keep


def known(
    store: DigestStore,
    mount: str,
    storage: Storage,
    path: str,
    names: set[str],
    read: bool = True,
) -> dict[str, str]:
    """The digests ``names`` (adapter names) of the file at ``path``, lowercase hex;
    see the module docstring for where each comes from. ``read=False``: only what is
    known without reading the file (a GET must not wait minutes for its first byte
    while a large file is hashed; a HEAD or ``?action=md5`` may). Blocking."""
    if not checksums.CRC32C_FAST:  # never computed here: asking would reread every time
        names = names - {"crc32c"}
    ident = identity(storage, path)
    native = storage.capabilities.native_checksums
    result: dict[str, str] = {}

    def ask_native(wanted_names: set[str]) -> None:
        for name in sorted(wanted_names & native):
            try:
                result[name] = storage.checksum(path, name).lower()
            except (NotSupported, BackendUnavailable, PermissionDenied):
                # The SE does not keep this one after all (or will not say): the store,
                # or one streamed read, answers instead.
                continue

    def from_store() -> None:
        missing = names - set(result)
        if missing:
            kept = store.get(mount, path)
            if kept is not None and ident is not None and kept.identity == ident:
                result.update({n: v for n, v in kept.values.items() if n in missing})

    if not _strong(ident):
        ask_native(names)
    from_store()
    if _strong(ident):
        ask_native(names - set(result))
    if read and names - set(result) and ident is not None:
        with _one_reader(mount, path):
            from_store()  # kept by the request this one waited for
            missing = names - set(result)
            if missing:
                _stream_and_keep(store, mount, storage, path, ident, missing, result)
    return result


def _stream_and_keep(
    store: DigestStore,
    mount: str,
    storage: Storage,
    path: str,
    ident: str,
    missing: set[str],
    result: dict[str, str],
) -> None:
    """One streamed read computing them all; kept unless the file changed meanwhile."""
    hasher = Hasher()
    chunks = storage.open_read(path)
    try:
        for chunk in chunks:
            hasher.feed(chunk)  # in threads beside the read
    finally:
        hasher.settle()
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    values = hasher.finish()
    if identity(storage, path) == ident:  # not changed while it was read
        store.put(mount, path, ident, values)
        result.update({n: v for n, v in values.items() if n in missing})


_readers: dict[tuple[str, str], tuple[threading.Lock, int]] = {}
_readers_lock = threading.Lock()


@contextmanager
def _one_reader(mount: str, path: str) -> Iterator[None]:
    """At most one streamed read per file in this process: concurrent requests for the
    digests of a large file wait for the first instead of each reading it (a HEAD
    repeated by many jobs, or by someone trying to load the storage)."""
    key = (mount, path)
    with _readers_lock:
        lock, users = _readers.get(key, (threading.Lock(), 0))
        _readers[key] = (lock, users + 1)
    try:
        with lock:
            yield
    finally:
        with _readers_lock:
            lock, users = _readers[key]
            if users == 1:
                del _readers[key]
            else:
                _readers[key] = (lock, users - 1)


def store_of(op: Op) -> DigestStore:
    return DigestStore(op.gw.store)


async def values(op: Op, storage: Storage, names: set[str], read: bool = True) -> dict[str, str]:
    """``known`` for the operation's path, in a worker thread."""
    mount, path = op.cpath.mount, op.cpath.inner
    return dict(await op.call(known, store_of(op), mount, storage, path, names, read))


async def response_headers(op: Op, storage: Storage, read: bool = True) -> dict[str, str]:
    """``Digest`` / ``Repr-Digest`` for what the request's ``Want-Digest`` /
    ``Want-Repr-Digest`` ask (empty when they ask nothing). ``read=False`` (a GET, a
    redirect): a digest not known without reading the file is left out; a HEAD asks
    for it (and has it kept)."""
    request = op.request
    legacy = wanted(request.headers.get("want-digest"))
    modern = wanted_repr(request.headers.get("want-repr-digest"))
    if not legacy and not modern:
        return {}
    names = {_ALGORITHMS[n] for n in legacy} | {_REPR_ALGORITHMS[n] for n in modern}
    have = await values(op, storage, names, read)
    headers = {}
    parts = [encode(n, have[_ALGORITHMS[n]]) for n in legacy if _ALGORITHMS[n] in have]
    if parts:
        headers["Digest"] = ",".join(parts)
    parts = [
        encode_repr(n, have[_REPR_ALGORITHMS[n]]) for n in modern if _REPR_ALGORITHMS[n] in have
    ]
    if parts:
        headers["Repr-Digest"] = ", ".join(parts)
    return headers


# --- uploads ------------------------------------------------------------------------------


def digesting(
    op: Op, storage: Storage, path: str, writer: Writer, expected: dict[str, str] | None = None
) -> DigestingWriter:
    """``writer`` hashing as it writes, checking ``expected``, keeping the values."""
    return DigestingWriter(writer, keeper(store_of(op), op.cpath.mount, storage, path), expected)


class Recording:
    """A storage whose writers digest and keep what they write (archive entries,
    copies): everything else is the wrapped storage's own."""

    def __init__(self, storage: Storage, store: DigestStore, mount: str) -> None:
        self._storage = storage
        self._store = store
        self._mount = mount

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def open_write(
        self, path: str, size_hint: int | None = None, *, exclusive: bool = False
    ) -> Writer:
        writer = self._storage.open_write(path, size_hint, exclusive=exclusive)
        return DigestingWriter(writer, keeper(self._store, self._mount, self._storage, path))


def recording(op: Op, storage: Storage, mount: str | None = None) -> Storage:
    # A Storage by duck typing: every attribute but open_write is the storage's own.
    return cast(Storage, Recording(storage, store_of(op), mount or op.cpath.mount))
