"""The one interface every storage backend implements, and the errors it raises.

Error tree (the gateway maps each class to one CARMIN error, see gateway/errors.py)::

    StorageError
    ├── NotFound                 the path (or its parent, for a write) does not exist
    ├── ParentNotFound           a write or mkdir whose parent directory is missing
    ├── AlreadyExists            mkdir on an existing path, exclusive write onto anything
    ├── NotADirectory            list/mkdir below something that is a file
    ├── IsADirectory             a file operation on a directory
    ├── PermissionDenied         the backend refused the operation for this credential
    ├── AuthenticationFailed     the backend rejected the credential itself
    ├── InvalidPath              a name the backend cannot represent
    ├── ChecksumMismatch         the bytes written do not match the expected checksum
    ├── NotSupported             the backend has no such feature (e.g. presign)
    └── BackendUnavailable       the backend cannot be reached or answered 5xx
        └── BackendTimeout       the backend did not answer in time

Paths handed to an adapter are already validated and normalised by the gateway
(gateway/paths.py): ``""`` is the mount root, otherwise ``"a/b/c"`` — no leading or
trailing slash, no empty, ``.`` or ``..`` segment, no NUL or backslash. Adapters may
rely on that, but must still confine themselves to their root (defence in depth).

Optional features are declared protocols, found once per storage class by
``features(storage)``: ``Delegating`` (native credentials with a use count),
``Revocable`` (withdraw a native credential), ``VipUris`` (VIP input URIs),
``LinkResolver`` (symbolic links), ``LocalFiles`` (files on this machine), ``Renaming``
(one-step move); ``LocalFill`` for a writer and ``SocketHandOff`` for a read stream.
What depends on a mount's configuration (presign, checksums, read-ahead) is in
``Capabilities``. Helpers shared by the backends are in adapters/common.py.

Every method is synchronous and may block: the gateway runs them in worker threads,
because all the backend libraries (boto3, girder-client, python-irodsclient, gfal2)
are synchronous.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from adapters import checksums
from adapters.response_socket import SocketBody


class StorageError(Exception):
    """Base of every error an adapter raises. The message must never contain a secret."""


class NotFound(StorageError):
    pass


class ParentNotFound(StorageError):
    pass


class AlreadyExists(StorageError):
    pass


class NotADirectory(StorageError):
    pass


class IsADirectory(StorageError):
    pass


class PermissionDenied(StorageError):
    pass


class AuthenticationFailed(StorageError):
    pass


class InvalidPath(StorageError):
    pass


class ChecksumMismatch(StorageError):
    pass


class NotSupported(StorageError):
    pass


class NoSpace(StorageError):
    """The storage is full, or the quota of the account writing is spent (ENOSPC,
    EDQUOT): nothing the caller can fix by asking again at once."""


class BackendUnavailable(StorageError):
    pass


class BackendTimeout(BackendUnavailable):
    pass


@dataclass(frozen=True, slots=True)
class Entry:
    """What ``stat`` and ``list`` return for one path.

    ``path`` is the normalised path inside the mount (``""`` for the root).
    ``size`` is the file size in bytes; for a directory it is ``None`` (fedgate does
    not walk a tree to sum it, see docs/decisions.md). ``mtime`` is epoch seconds.
    """

    path: str
    is_dir: bool
    size: int | None = None
    mtime: float | None = None
    mime_type: str | None = None
    # Set by storages that have symbolic links (LinkResolver) when this entry is one:
    # the path inside the mount it resolves to, so a caller can check its own scope.
    link_target: str | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do beyond the mandatory operations."""

    # Checksum algorithms the backend stores or computes itself (lowercase: "md5",
    # "adler32", "sha256"). "md5" is always available through ``checksum`` — computed by
    # streaming when it is not native.
    native_checksums: frozenset[str] = frozenset()
    # A presigned/native URL can be handed to a client for reading / writing.
    presign_read: bool = False
    presign_write: bool = False
    # The backend can mint its own short-lived credential (S3 presign, Girder token,
    # iRODS ticket, SE macaroon) for ``/token/native``; False also where the mount's
    # operator has not enabled it (a Girder mount's ``native_tokens``).
    native_delegation: bool = False
    # A native credential opens only the path it was minted for (a presigned URL, an
    # iRODS ticket, a macaroon). False: it opens everything its account can (a Girder
    # token), so the gateway never mints one from the mount's service credential.
    delegation_path_bound: bool = True
    # A presigned URL works only with the headers it comes with (a Girder token, a
    # macaroon): a redirect cannot carry them, so the gateway never presigns for one.
    presign_needs_headers: bool = False
    # ``presign_create(path, expires_at)`` gives a PUT URL the storage itself refuses
    # once the target exists (S3 ``If-None-Match: *``): what a create-only token may get.
    presign_create: bool = False
    # ``open_read`` honours start/end without reading the skipped bytes.
    ranged_read: bool = True
    # ``stat`` is a local, microsecond call (a local disk): the gateway may run it on
    # the event loop instead of paying a thread hop per request.
    inline_stat: bool = False
    # How many chunks of ``open_read`` the gateway should have a second thread pull ahead
    # while it sends. Backends that answer one request per chunk (gfal2's ``pread``,
    # iRODS) set 1 so the next request overlaps the send; those streaming from a socket
    # (S3, http) read ahead in the kernel's socket buffers already, and a thread would
    # only add a hand-off per chunk.
    read_ahead: int = 0


@dataclass(frozen=True, slots=True)
class Credential:
    """A user's credential for one mount, decrypted from the key vault for one request.

    ``kind`` is one of ``"apikey"``, ``"access_secret"``, ``"user_password"``,
    ``"bearer"``, ``"x509_proxy"``; ``fields`` carries the parts (e.g. ``{"apiKey": …}``,
    ``{"accessKey": …, "secretKey": …}``). ``repr`` hides the values so a credential
    never reaches a log by accident.
    """

    kind: str
    fields: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Credential(kind={self.kind!r}, fields=<{len(self.fields)} hidden>)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class Delegation:
    """A native credential handed to a job: a URL it can use directly, or a token."""

    kind: str  # "url", "girder_token", "irods_ticket", "bearer", "macaroon"
    value: str
    expires_at: dt.datetime
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    # Where to use ``value`` when it is not itself a URL (a macaroon, a ticket's host).
    url: str = ""
    # What deleting the credential needs besides ``value`` (a Girder API key id). Kept
    # with the recorded grant, never shown to the job.
    revoke_ref: str = ""

    def __repr__(self) -> str:
        return f"Delegation(kind={self.kind!r}, method={self.method!r}, value=<hidden>)"


class Writer(Protocol):
    """A streaming write that becomes visible only on ``commit``.

    Until ``commit`` returns, nothing new is visible at the target path, and an existing
    file there is untouched. ``abort`` (called on any failure, and safe to call twice or
    after a failed commit) removes every temporary part. A writer is used from one
    thread at a time.

    A writer may have a ``block_size`` attribute: the bytes it would like per ``write``
    call. The gateway gathers the request body to about that size (512 KiB otherwise):
    backends that pay a round trip per write want more, those that buffer parts want
    less memory held per upload.
    """

    def write(self, data: bytes) -> None: ...

    def commit(self) -> Entry: ...

    def abort(self) -> None: ...


@runtime_checkable
class Storage(Protocol):
    """One mount, seen with one credential."""

    capabilities: Capabilities

    def stat(self, path: str) -> Entry:
        """Raise NotFound if the path does not exist."""
        ...

    def list(self, path: str) -> Iterator[Entry]:
        """Yield the children of a directory lazily, in pages: never load a whole
        folder. Raise NotFound / NotADirectory before yielding anything."""
        ...

    def open_read(self, path: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes in [start, end) (end exclusive, None = to the end of file).

        Errors about the path (NotFound, IsADirectory) are raised by this call, not
        lazily; an error while iterating means the stream is broken.

        How many chunks the gateway pulls ahead is ``capabilities.read_ahead``; the
        iterator may offer its socket instead of its chunks (:class:`SocketHandOff`)."""
        ...

    def open_write(
        self, path: str, size_hint: int | None = None, *, exclusive: bool = False
    ) -> Writer:
        """Start an atomic write. Raise ParentNotFound when the parent is missing,
        IsADirectory when the target is a directory.

        ``exclusive``: create only, never replace. AlreadyExists when something is at
        the path now, and ``commit`` raises AlreadyExists (leaving what is there
        untouched) when something appeared there while the bytes streamed in. A
        backend without an atomic conditional create says so in its module docstring
        and checks as late as it can."""
        ...

    def mkdir(self, path: str) -> Entry:
        """Create one directory; its parent must exist. AlreadyExists if it does."""
        ...

    def delete(self, path: str) -> None:
        """Delete a file, or a directory and everything below it."""
        ...

    def checksum(self, path: str, algorithm: str = "md5") -> str:
        """Lowercase hex digest of a file's content (native when the backend has it)."""
        ...

    def presign(self, path: str, method: str, expires_at: dt.datetime) -> Delegation:
        """A URL a client can use without fedgate; NotSupported if impossible."""
        ...

    def close(self) -> None:
        """Release what this view holds (sessions, sockets)."""
        ...


@runtime_checkable
class LinkResolver(Protocol):
    """A storage with symbolic links (a local folder): where a path really lands.

    The gateway authorises a request on the resolved path too, so a link inside a
    token's scope cannot lead it to a path outside (see docs/decisions.md)."""

    def real_path(self, path: str, follow_last: bool = True) -> str:
        """The path inside the mount that ``path`` resolves to (links followed; the last
        component only if ``follow_last``: a write, mkdir or delete acts on the link
        itself). PermissionDenied if it resolves outside the mount."""
        ...


@runtime_checkable
class LocalFill(Protocol):
    """A writer that can take a local file's bytes inside the kernel (a local folder's
    copy_file_range): a copy between two local mounts never reads them into the process."""

    def fill_from(self, source: str) -> int:
        """Append the whole file at ``source``; the number of bytes copied."""
        ...


@runtime_checkable
class KeepsMd5(Protocol):
    """A writer that keeps the md5 of what it stored (the local folder's xattr). Whoever
    hashes the same bytes anyway (the gateway's digests) hands it the value, instead of
    the writer hashing them a second time in its own thread: md5 is the slowest digest."""

    def md5_from(self, source: Callable[[], str | None]) -> None:
        """Hash nothing; at commit, keep ``source()`` (None: keep nothing). Called
        before the first ``write``."""
        ...


@runtime_checkable
class LocalFiles(Protocol):
    """A storage whose files are files on this machine (a local folder)."""

    def local_path(self, path: str) -> Path:
        """The file on disk behind ``path`` (confined to the mount)."""
        ...


@runtime_checkable
class Renaming(Protocol):
    """A storage that moves a path within itself in one step (a local folder's
    rename(2)); others are moved by copying then deleting (gateway/webdav)."""

    def rename(self, src: str, dst: str, replace: bool = True) -> None:
        """Move ``src`` to ``dst`` (a link as a link). ``replace=False``: AlreadyExists
        when something is at ``dst``, and nothing moved."""
        ...


@runtime_checkable
class Delegating(Protocol):
    """A storage whose native credentials carry a use count and the create-only rule
    themselves (an iRODS ticket): the gateway calls ``delegate`` instead of ``presign``
    and leaves both rules to the storage."""

    def delegate(
        self,
        path: str,
        method: str,
        expires_at: dt.datetime,
        uses: int | None = None,
        create_only: bool = False,
    ) -> Delegation:
        """``presign`` with a use count (None: unlimited); ``create_only``: the credential
        can create ``path`` and never replace it (AlreadyExists if something is there)."""
        ...


@runtime_checkable
class Revocable(Protocol):
    """A storage (or an adapter, with no credential at all) that can withdraw a native
    credential it handed out before it expires (an iRODS ticket, a Girder token). The
    gateway records such grants and revokes them with the fedgate token."""

    def revoke_delegation(self, delegation: Delegation) -> None:
        """Delete the credential behind ``delegation``; NotFound if it is gone already."""
        ...


@runtime_checkable
class VipUris(Protocol):
    """A storage that can name a file as a VIP input URI (a Girder mount)."""

    def vip_delegation(self, path: str, expires_at: dt.datetime) -> tuple[str, Delegation]:
        """The URI and the native credential it embeds, expiring at ``expires_at``."""
        ...

    def vip_uri(self, path: str, expires_at: dt.datetime) -> str: ...


@runtime_checkable
class SocketHandOff(Protocol):
    """An ``open_read`` iterator that can give the gateway its socket instead of its
    chunks, so the kernel moves the bytes (adapters/response_socket.py)."""

    def take_socket(self) -> SocketBody | None:
        """The rest of the body as a socket, or None: iterate the chunks as usual."""
        ...


@runtime_checkable
class ContentVersions(Protocol):
    """A storage that names the version of a file's bytes without reading them (S3: the
    object's ETag, VersionId, length and LastModified), finer than ``stat``'s size and
    mtime: digests the gateway keeps for a file are dropped when it changes behind the
    gateway's back, even twice within one second."""

    def content_version(self, path: str) -> str | None:
        """A value that changes with every write of ``path``; None: no file there."""
        ...


@dataclass(frozen=True, slots=True)
class Features:
    """Which optional protocols a storage implements, detected once per storage class
    (as rclone's ``fs/features.go`` fills its Features): ``features(storage)``. What a
    backend can do that depends on its configuration is in ``Capabilities`` instead."""

    delegating: bool = False
    revocable: bool = False
    vip_uris: bool = False
    link_resolver: bool = False
    local_files: bool = False
    renaming: bool = False
    content_versions: bool = False


_FEATURES: dict[type, Features] = {}


def _features_of(cls: type) -> Features:
    # Protocols with only methods support issubclass, so one check per class suffices:
    # every view of a mount is an instance of the same class. Two threads filling the
    # same entry compute the same value.
    found = _FEATURES.get(cls)
    if found is not None:
        return found
    return _FEATURES.setdefault(
        cls,
        Features(
            delegating=issubclass(cls, Delegating),
            revocable=issubclass(cls, Revocable),
            vip_uris=issubclass(cls, VipUris),
            link_resolver=issubclass(cls, LinkResolver),
            local_files=issubclass(cls, LocalFiles),
            renaming=issubclass(cls, Renaming),
            content_versions=issubclass(cls, ContentVersions),
        ),
    )


def features(storage: object) -> Features:
    """The optional protocols ``storage`` implements (see :class:`Features`)."""
    return _features_of(type(storage))


class Adapter(Protocol):
    """The factory a mount is configured with: one per mount, shared by all requests.

    An adapter may also be :class:`Revocable`: it then withdraws a delegation with no
    credential at all (a Girder token deletes itself), for grants whose user's
    credential is gone.
    """

    type_name: str
    # False for a storage reached with the gateway's own access (a local folder): no
    # per-user credential is stored or asked for, a token's scope is the only check.
    uses_credentials: bool

    def bind(self, credential: Credential | None) -> Storage:
        """A view of the storage acting with ``credential`` (None: the mount's own
        service credential, or anonymous). Adapters pool sessions per credential."""
        ...

    def check(self) -> None:
        """Raise BackendUnavailable if the backend cannot be reached (for /readyz)."""
        ...

    def close(self) -> None: ...


def streamed_checksum(chunks: Iterable[bytes], algorithm: str) -> str:
    """Lowercase hex digest of a byte stream: adler32 or crc32c (8 digits), or any
    hashlib name.

    For backends that store no checksum of their own: computed by streaming the file."""
    if algorithm in ("adler32", "crc32c"):
        step, value = (
            (checksums.adler32, checksums.ADLER32_START)
            if algorithm == "adler32"
            else (checksums.crc32c, checksums.CRC32C_START)
        )
        for chunk in chunks:
            value = step(chunk, value)
        return checksums.hex32(value)
    try:
        digest = hashlib.new(algorithm)
    except ValueError:
        raise NotSupported(f"checksum {algorithm!r} is not supported") from None
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name
