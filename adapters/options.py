"""Every backend's mount options, declared once: type name -> one typed dataclass.

Each field is an option of the mount's TOML table (``[mounts.NAME]``) or of its
environment (``FEDGATE_MOUNT__NAME__OPTION``): its annotation is the type the value must
have (environment strings are converted to it, never guessed), its default is the
default (a field without one is required), and the string right below it is its one-line
documentation. ``gateway/config.py`` validates mounts against these classes at start and
``scripts/gen-config-doc.py`` writes ``docs/configuration.md`` from them, so a new option
is added here or it is refused.

The adapters still receive a plain mapping of the values given (``create(options)``) and
keep their own checks of values (ranges, URL shapes); the lists here are what each
adapter's ``create`` really reads. Options listed in ``service_credential`` hold or name
the mount's own credential, used when a request has none; ``secrets`` ones are never shown
(logs, errors, generated docs show no value for them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

MIB = 1024 * 1024


@dataclass(frozen=True)
class PosixOptions:
    """A local or network-mounted folder (adapters/posix/)."""

    secrets: ClassVar[frozenset[str]] = frozenset()
    service_credential: ClassVar[tuple[str, ...]] = ()

    root: str
    """The folder shown as the mount (absolute, or relative to the working directory)."""
    create: bool = False
    """Create ``root`` at start when it is missing (the embedded default does)."""


@dataclass(frozen=True)
class S3Options:
    """An S3 bucket, AWS or any S3-compatible server (adapters/s3/)."""

    secrets: ClassVar[frozenset[str]] = frozenset({"secret_key"})
    service_credential: ClassVar[tuple[str, ...]] = ("access_key", "secret_key")

    bucket: str
    """The bucket; it must exist (fedgate never creates buckets)."""
    prefix: str = ""
    """Folder inside the bucket used as the mount root."""
    endpoint_url: str | None = None
    """S3 endpoint, e.g. ``http://127.0.0.1:8333``; unset: AWS."""
    region: str = "us-east-1"
    """Region used to sign requests."""
    path_style: bool | None = None
    """Path-style addressing (``host/bucket/key``); unset: true when ``endpoint_url`` is set."""
    access_key: str | None = None
    """Service credential: access key id, used when a request carries no user credential."""
    secret_key: str | None = None
    """Service credential: secret access key (never logged)."""
    multipart_threshold: int = 8 * MIB
    """Uploads at least this large (bytes) are multipart uploads."""
    part_size: int = 8 * MIB
    """Multipart part size in bytes (at least 5 MiB)."""
    connect_timeout: float = 5.0
    """Seconds to connect to the endpoint."""
    read_timeout: float = 30.0
    """Seconds to wait for a reply."""
    max_attempts: int = 3
    """Attempts per request (botocore's standard retry mode)."""


@dataclass(frozen=True)
class GirderOptions:
    """A Girder folder, collection or user home (adapters/girder/)."""

    secrets: ClassVar[frozenset[str]] = frozenset({"api_key"})
    service_credential: ClassVar[tuple[str, ...]] = ("api_key",)

    api_url: str
    """Girder REST root, e.g. ``https://girder.example.org/api/v1``."""
    root: str
    """Girder path of the mount root: ``/collection/<name>[/…]`` or ``/user/<login>[/…]``."""
    api_key: str | None = None
    """Service credential: a Girder API key, used when a request has no user credential."""
    token_duration_days: float = 1 / 24
    """Cap on the lifetime of the Girder tokens fedgate obtains, in days."""
    connect_timeout: float = 5.0
    """Seconds to connect."""
    read_timeout: float = 60.0
    """Seconds to wait for a reply."""
    retries: int = 2
    """Connection retries per call."""
    page_size: int = 50
    """Listing page size."""
    upload_chunk_mib: float = 64
    """Upload chunk size in MiB (at least 5); chunks are streamed, not buffered."""
    native_tokens: bool = False
    """Hand jobs read-only Girder tokens (/token/native, VIP URIs): each reads everything
    the user's Girder account can read, not only the token's paths; never the service key's."""


@dataclass(frozen=True)
class IrodsOptions:
    """An iRODS collection (adapters/irods/)."""

    secrets: ClassVar[frozenset[str]] = frozenset({"password"})
    service_credential: ClassVar[tuple[str, ...]] = ("user", "password")

    host: str
    """iRODS server host."""
    zone: str
    """iRODS zone."""
    root: str
    """Absolute collection the mount shows, e.g. ``/tempZone/home/alice/data``."""
    port: int = 1247
    """iRODS port."""
    auth_scheme: Literal["native", "pam"] = "native"
    """``native`` or ``pam`` (PAM needs ``ssl_ca_file``)."""
    user: str | None = None
    """Service credential: iRODS user name, used when a request has no user credential."""
    password: str | None = None
    """Service credential: that user's password (never logged)."""
    timeout: float = 30.0
    """Socket timeout in seconds for connect and every reply."""
    page_size: int = 500
    """GenQuery rows per page when listing (at most 500)."""
    idle_timeout: float = 300.0
    """Pooled sessions unused this many seconds are closed."""
    ssl_ca_file: str | None = None
    """If set, require TLS and verify the server with this CA file."""
    default_resource: str | None = None
    """Resource for new data objects."""


@dataclass(frozen=True)
class GfalOptions:
    """A grid storage element through gfal2: root://, http(s)://, dav(s):// (adapters/gfal/)."""

    secrets: ClassVar[frozenset[str]] = frozenset({"token"})
    service_credential: ClassVar[tuple[str, ...]] = ("token", "x509_proxy", "anonymous")

    base_url: str
    """``root://host:port//path``, ``xroot://``, ``http(s)://host:port/path`` or ``dav(s)://``."""
    token: str | None = None
    """Service credential: a bearer token (WLCG token or macaroon) (never logged)."""
    x509_proxy: str | None = None
    """Service credential: path of an X.509 proxy file used for every request."""
    anonymous: bool = False
    """Serve requests without a credential anonymously."""
    timeout: int = 30
    """Seconds for one namespace operation or read/write request."""
    connect_timeout: int = 5
    """Seconds to connect over root://."""
    checksum_timeout: int = 300
    """Seconds for the storage element to compute a checksum."""
    native_checksums: tuple[str, ...] = ("adler32", "md5")
    """Checksum algorithms the storage element computes (fedgate computes the others)."""
    macaroons: bool = True
    """Presign by asking an https/davs storage element for a macaroon."""
    stream_http: bool = True
    """Over http/dav, move bytes with urllib3 instead of gfal2's file calls."""
    raw_reads: bool = True
    """Over root://, read through libgfal2's C pread instead of the Python binding."""
    insecure: bool = False
    """Skip TLS verification over https/davs (tests only)."""
    max_idle_contexts: int = 4
    """gfal2 contexts kept per credential."""


# Mount type name -> its options, in the order the configuration reference lists them.
OPTIONS: dict[str, type] = {
    "posix": PosixOptions,
    "s3": S3Options,
    "girder": GirderOptions,
    "irods": IrodsOptions,
    "gfal": GfalOptions,
}
