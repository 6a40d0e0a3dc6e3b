"""The S3 adapter's settings, checked once at start, and the boto3 client they make
(the options are declared in adapters/options.py, described in adapters/s3/__init__.py)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from adapters.options import MIB, S3Options

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

MIN_PART = 5 * MIB  # S3's minimum for every part but the last

# One boto3 Session for every client of the process: each Session parses botocore's S3
# service model again, megabytes per credential (per user, on a mount with per-user
# keys); clients of one Session share it (measured: docs/decisions.md). Credentials are
# passed per client, so nothing of one user's leaks into another's client.
_SESSION: Any = None
_SESSION_LOCK = threading.Lock()

INSTALL_HINT = "the s3 mount type needs boto3: pip install 'fedgate[s3]'"


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return boto3


@dataclass(frozen=True, repr=False)
class S3Settings(S3Options):
    """The mount's options (declared and documented once, in adapters/options.py) checked
    and normalised: the prefix without slashes, ``path_style`` decided, numbers as
    numbers."""

    def __repr__(self) -> str:  # the secret key must never reach a log
        return (
            f"S3Settings(bucket={self.bucket!r}, prefix={self.prefix!r}, "
            f"endpoint_url={self.endpoint_url!r}, region={self.region!r})"
        )

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> S3Settings:
        unknown = sorted(set(options) - {f.name for f in fields(S3Options)})
        if unknown:
            raise ValueError(f"s3 mount: unknown options {', '.join(unknown)}")
        if not options.get("bucket"):
            raise ValueError("s3 mount: option 'bucket' is required")
        given = S3Options(**options)
        endpoint = given.endpoint_url or None
        settings = cls(
            bucket=str(given.bucket),
            prefix=str(given.prefix or "").strip("/"),
            endpoint_url=str(endpoint) if endpoint else None,
            region=str(given.region or S3Options.region),
            path_style=bool(endpoint) if given.path_style is None else bool(given.path_style),
            access_key=given.access_key or None,
            secret_key=given.secret_key or None,
            multipart_threshold=int(given.multipart_threshold),
            part_size=int(given.part_size),
            connect_timeout=float(given.connect_timeout),
            read_timeout=float(given.read_timeout),
            max_attempts=int(given.max_attempts),
        )
        if settings.part_size < MIN_PART:
            raise ValueError("s3 mount: part_size must be at least 5 MiB (5242880)")
        if settings.multipart_threshold < 1:
            raise ValueError("s3 mount: multipart_threshold must be positive")
        if settings.max_attempts < 1:
            raise ValueError("s3 mount: max_attempts must be at least 1")
        return settings

    def client(self, access: str | None, secret: str | None, token: str | None) -> S3Client:
        """A client for one credential; no credential = unsigned (anonymous) requests."""
        boto3 = _boto3()
        from botocore import UNSIGNED
        from botocore.config import Config

        config = Config(
            signature_version="s3v4" if access else UNSIGNED,
            s3={"addressing_style": "path" if self.path_style else "virtual"},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"mode": "standard", "max_attempts": self.max_attempts},
            # Many S3-compatible servers reject or ignore the newer default CRC headers.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # 16 uploads x PARTS_IN_FLIGHT parts on one credential's client, without
            # urllib3 discarding connections beyond its pool.
            max_pool_connections=64,
        )
        global _SESSION
        with _SESSION_LOCK:  # a boto3 Session is not thread-safe; its clients are
            if _SESSION is None:
                _SESSION = boto3.session.Session()
            client: S3Client = _SESSION.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                aws_access_key_id=access,
                aws_secret_access_key=secret,
                aws_session_token=token,
                config=config,
            )
        return client
