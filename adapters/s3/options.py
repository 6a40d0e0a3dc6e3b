"""The S3 adapter's settings, checked once at start, and the boto3 client they make
(the options themselves are documented in adapters/s3/__init__.py)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

MIB = 1024 * 1024
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


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    path_style: bool = False
    access_key: str | None = None
    secret_key: str | None = None
    multipart_threshold: int = 8 * MIB
    part_size: int = 8 * MIB
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 3

    def __repr__(self) -> str:  # the secret key must never reach a log
        return (
            f"S3Settings(bucket={self.bucket!r}, prefix={self.prefix!r}, "
            f"endpoint_url={self.endpoint_url!r}, region={self.region!r})"
        )

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> S3Settings:
        known = {
            "bucket", "prefix", "endpoint_url", "region", "path_style", "access_key",
            "secret_key", "multipart_threshold", "part_size", "connect_timeout",
            "read_timeout", "max_attempts",
        }  # fmt: skip
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"s3 mount: unknown options {', '.join(unknown)}")
        bucket = str(options.get("bucket") or "")
        if not bucket:
            raise ValueError("s3 mount: option 'bucket' is required")
        endpoint = options.get("endpoint_url") or None
        path_style = options.get("path_style")
        settings = cls(
            bucket=bucket,
            prefix=str(options.get("prefix") or "").strip("/"),
            endpoint_url=str(endpoint) if endpoint else None,
            region=str(options.get("region") or "us-east-1"),
            path_style=bool(endpoint) if path_style is None else bool(path_style),
            access_key=options.get("access_key") or None,
            secret_key=options.get("secret_key") or None,
            multipart_threshold=int(options.get("multipart_threshold", 8 * MIB)),
            part_size=int(options.get("part_size", 8 * MIB)),
            connect_timeout=float(options.get("connect_timeout", 5.0)),
            read_timeout=float(options.get("read_timeout", 30.0)),
            max_attempts=int(options.get("max_attempts", 3)),
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
