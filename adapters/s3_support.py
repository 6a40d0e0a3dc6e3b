"""The S3 adapter's settings, streaming writer and error translation (see adapters/s3.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters.base import (
    AlreadyExists,
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    Entry,
    InvalidPath,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    StorageError,
)
from adapters.s3_buffer import PartBuffer

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger("adapters.s3")

# One boto3 Session for every client of the process: each Session parses botocore's S3
# service model again, ~13 MB per credential (per user, on a mount with per-user keys);
# clients of one Session share it (+0.4 MB each). Credentials are passed per client, so
# nothing of one user's leaks into another's client.
_SESSION: Any = None
_SESSION_LOCK = threading.Lock()

MIB = 1024 * 1024
MIN_PART = 5 * MIB  # S3's minimum for every part but the last
MAX_PARTS = 10_000
# Parts of one upload sent at once. One at a time left the storage idle while the next
# part crossed and the gateway idle while the storage stored the last: 0.53-0.68 x a
# presigned curl on SeaweedFS (bench/s3.py, docs/decisions.md).
PARTS_IN_FLIGHT = 4
# ... and of all uploads of the process together. Each part being sent holds botocore's
# request and its 1 MiB hashing reads: 16 uploads x 4 parts took the gateway to 132 MiB
# of RSS (bench/s3.py), and 16 parts already keep any storage this gateway can feed busy.
ALL_PARTS_IN_FLIGHT = 16
_ALL_PARTS = threading.BoundedSemaphore(ALL_PARTS_IN_FLIGHT)


def free_part_slots() -> int:
    """Parts the process could start sending now (for tests: every slot comes back)."""
    return int(_ALL_PARTS._value)  # type: ignore[attr-defined]


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


# --- errors ---------------------------------------------------------------------------

_AUTH = {
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AuthorizationHeaderMalformed", "InvalidSecurity",
}  # fmt: skip
_UNAVAILABLE = {"InternalError", "ServiceUnavailable", "SlowDown", "503", "500", "502"}


def client_error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


def translate(exc: BaseException, path: str, bucket: str) -> StorageError:
    """Map a boto3/botocore exception to the error tree. Messages never carry secrets."""
    from botocore import exceptions as bce

    shown = path or "/"
    if isinstance(exc, StorageError):
        return exc
    code = client_error_code(exc)
    if code is not None:
        status = int(
            getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        )
        if code == "NoSuchBucket":
            return BackendUnavailable(f"bucket {bucket!r} does not exist")
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFound(f"{shown}: no such file or directory")
        if code in _AUTH:
            return AuthenticationFailed(f"the S3 server rejected the credential ({code})")
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
            return PermissionDenied(f"{shown}: permission denied")
        if code in ("KeyTooLongError", "InvalidObjectName"):
            return InvalidPath(f"{shown}: invalid name for S3 ({code})")
        if code == "ExistingObjectIsDirectory":
            return IsADirectory(f"{shown}: is a directory")
        if code == "ExistingObjectIsFile":
            return NotADirectory(f"{shown}: not a directory")
        if code == "RequestTimeout":
            return BackendTimeout(f"{shown}: the S3 server timed out")
        if code in _UNAVAILABLE or status >= 500:
            return BackendUnavailable(f"the S3 server failed ({code})")
        return StorageError(f"{shown}: S3 error {code}")
    if isinstance(exc, bce.ConnectTimeoutError | bce.ReadTimeoutError):
        return BackendTimeout("the S3 server did not answer in time")
    if isinstance(
        exc, bce.ConnectionError | bce.HTTPClientError | bce.IncompleteReadError | OSError
    ):
        return BackendUnavailable(f"cannot reach the S3 server ({type(exc).__name__})")
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return AuthenticationFailed("incomplete S3 credential")
    return StorageError(f"{shown}: S3 client error ({type(exc).__name__})")


# --- writes ---------------------------------------------------------------------------


class S3Writer:
    """Buffers up to the multipart threshold; past it, streams parts as they fill, with
    up to ``PARTS_IN_FLIGHT`` of them sent at once.

    Part sizes grow with the part count (see ``_part_size``) so an upload of unknown size
    fits in S3's 10,000 parts. A part is handed to a sender thread once it holds at least
    the part size (it may exceed it by less than one incoming chunk); while
    ``PARTS_IN_FLIGHT`` parts are out, ``write`` waits for one to finish, so an upload
    holds at most ``PARTS_IN_FLIGHT + 1`` part buffers, and a slow storage slows the
    client down instead of growing the gateway. The buffers' memory comes from a
    process-wide budget, past which they spill to temporary files
    (adapters/s3_buffer.py). The first failed part fails the next ``write`` or the
    commit; ``abort`` waits for the parts still being sent, then aborts the multipart
    upload, so no part lands after the abort.

    ``exclusive`` (create only): the object is written with ``If-None-Match: *`` on the
    PUT or on CompleteMultipartUpload, so the server refuses (412) to replace an object
    that appeared while the bytes streamed in; that refusal is AlreadyExists. AWS S3,
    SeaweedFS and MinIO honour the condition; on a server that ignores it the check
    open_write made beforehand is all there is (docs/decisions.md).
    """

    # Parts are gathered here anyway: small blocks from the gateway keep 16 parallel
    # uploads within ~150 MB of RSS (bench/s3.py).
    block_size = 256 * 1024

    def __init__(
        self,
        client: S3Client,
        settings: S3Settings,
        path: str,
        key: str,
        content_type: str,
        size_hint: int | None,
        on_commit: Callable[[str], Entry],
        exclusive: bool = False,
    ) -> None:
        self._client = client
        self._condition: dict[str, Any] = {"IfNoneMatch": "*"} if exclusive else {}
        self._bucket = settings.bucket
        self._threshold = settings.multipart_threshold
        base = settings.part_size
        if size_hint and size_hint > base * (MAX_PARTS - 1):
            per_part = -(-size_hint // (MAX_PARTS - 1))  # rounded up, then to whole MiB
            base = -(-per_part // MIB) * MIB
        self._base_part = base
        self._path = path
        self._key = key
        self._content_type = content_type
        self._on_commit = on_commit
        self._part = PartBuffer()
        self._upload_id: str | None = None
        self._numbered = 0  # parts handed to a sender so far
        self._parts: list[CompletedPartTypeDef] = []  # parts the storage has, any order
        self._in_flight: set[Future[CompletedPartTypeDef]] = set()
        self._senders: ThreadPoolExecutor | None = None
        self._closed = False

    @property
    def multipart(self) -> bool:
        return self._upload_id is not None

    def _part_size(self) -> int:
        # 1000 parts at the base size, then 1000 at 2x, 3x...: 55x the base in 10,000 parts.
        return self._base_part * (1 + self._numbered // 1000)

    def _fail(self, exc: BaseException) -> StorageError:
        return translate(exc, self._path, self._bucket)

    def write(self, data: bytes) -> None:
        if self._closed:
            raise StorageError(f"{self._path}: write after commit or abort")
        self._part.add(data)
        if self._upload_id is None and self._part.size >= self._threshold:
            try:
                created = self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key, ContentType=self._content_type
                )
            except Exception as exc:
                raise self._fail(exc) from exc
            self._upload_id = created["UploadId"]
        if self._upload_id is not None and self._part.size >= self._part_size():
            self._send_part()

    def _send_part(self) -> None:
        """Hands the gathered part to a sender thread, first waiting for a free slot."""
        assert self._upload_id is not None
        full = len(self._in_flight) >= PARTS_IN_FLIGHT
        self._collect(wait_for=FIRST_COMPLETED if full else None)
        number = self._numbered + 1
        if number > MAX_PARTS:
            raise StorageError(f"{self._path}: upload exceeds S3's {MAX_PARTS} parts")
        if self._senders is None:
            self._senders = ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="s3-part")
        _ALL_PARTS.acquire()  # freed by a part of any upload, whatever its outcome
        part, self._part = self._part, PartBuffer()
        self._numbered = number
        try:
            sending = self._senders.submit(self._upload_part, self._upload_id, number, part)
        except BaseException:
            part.release()
            _ALL_PARTS.release()
            raise
        self._in_flight.add(sending)

    def _upload_part(self, upload_id: str, number: int, part: PartBuffer) -> CompletedPartTypeDef:
        """In a sender thread: one part, its buffer released whatever happens."""
        try:
            sent = self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=upload_id,
                PartNumber=number,
                Body=part.body(),
            )
        except Exception as exc:
            raise self._fail(exc) from exc
        finally:
            part.release()
            _ALL_PARTS.release()
        return {"PartNumber": number, "ETag": sent["ETag"]}

    def _collect(self, wait_for: str | None) -> None:
        """Records the parts sent (after waiting, if ``wait_for``: FIRST_ or ALL_COMPLETED);
        raises the first failure."""
        if wait_for is not None and self._in_flight:
            wait(self._in_flight, return_when=wait_for)
        done = {f for f in self._in_flight if f.done()}
        self._in_flight -= done
        for future in done:
            self._parts.append(future.result())  # a failed part raises its StorageError

    def _stop_senders(self) -> None:
        """Waits for the parts still being sent (their buffers are then released)."""
        if self._senders is not None:
            # Nothing is ever queued (one thread per slot), so every part submitted runs
            # and frees its buffer and its slot of _ALL_PARTS.
            self._senders.shutdown(wait=True)
            self._senders = None
        self._in_flight.clear()

    def commit(self) -> Entry:
        if self._closed:
            raise StorageError(f"{self._path}: writer already closed")
        done = False
        try:
            if self._upload_id is None:
                try:
                    self._client.put_object(
                        Bucket=self._bucket,
                        Key=self._key,
                        Body=self._part.body(),
                        ContentType=self._content_type,
                        **self._condition,
                    )
                except Exception as exc:
                    raise self._commit_error(exc) from exc
            else:
                if self._part.size or not self._numbered:
                    self._send_part()
                self._collect(wait_for=ALL_COMPLETED)
                self._stop_senders()
                parts = sorted(self._parts, key=lambda p: p["PartNumber"])
                try:
                    self._client.complete_multipart_upload(
                        Bucket=self._bucket,
                        Key=self._key,
                        UploadId=self._upload_id,
                        MultipartUpload={"Parts": parts},
                        **self._condition,
                    )
                except Exception as exc:
                    raise self._commit_error(exc) from exc
                self._upload_id = None
            done = True
            self._closed = True
            self._part.release()
            return self._on_commit(self._path)
        finally:
            if not done:
                self.abort()

    def _commit_error(self, exc: BaseException) -> StorageError:
        if self._condition and client_error_code(exc) in ("PreconditionFailed", "412"):
            return AlreadyExists(f"{self._path}: already exists (created during the upload)")
        return self._fail(exc)

    def abort(self) -> None:
        self._closed = True
        self._part.release()
        self._stop_senders()  # before the abort: a part sent after it could linger
        if self._upload_id is None:
            return
        try:
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )
        except Exception as exc:
            code = client_error_code(exc)
            if code != "NoSuchUpload":
                # Kept so a second abort retries; a lifecycle rule is the last resort.
                log.warning(
                    "could not abort multipart upload of %s: %s",
                    self._path,
                    code or type(exc).__name__,
                )
                return
        self._upload_id = None
