"""The S3 adapter's streaming writer: one PUT, or a multipart upload whose parts are
sent as they fill (see S3Writer). Measurements behind the limits: docs/decisions.md."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from adapters.base import AlreadyExists, Entry, StorageError
from adapters.options import MIB
from adapters.s3.buffer import PartBuffer
from adapters.s3.errors import client_error_code, translate
from adapters.s3.options import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger("adapters.s3")

MAX_PARTS = 10_000
# Parts of one upload sent at once: one at a time left the storage idle while the next
# part crossed and the gateway idle while the storage stored the last.
PARTS_IN_FLIGHT = 4
# ... and of all uploads of the process together: each part being sent holds botocore's
# request and its hashing reads, and 16 parts already keep any storage this gateway can
# feed busy (measured: docs/decisions.md, "Proxied S3 uploads").
ALL_PARTS_IN_FLIGHT = 16
_ALL_PARTS = threading.BoundedSemaphore(ALL_PARTS_IN_FLIGHT)


def free_part_slots() -> int:
    """Parts the process could start sending now (for tests: every slot comes back)."""
    return int(_ALL_PARTS._value)  # type: ignore[attr-defined]


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
    (adapters/s3/buffer.py). The first failed part fails the next ``write`` or the
    commit; ``abort`` waits for the parts still being sent, then aborts the multipart
    upload, so no part lands after the abort.

    ``exclusive`` (create only): the object is written with ``If-None-Match: *`` on the
    PUT or on CompleteMultipartUpload, so the server refuses (412) to replace an object
    that appeared while the bytes streamed in; that refusal is AlreadyExists. AWS S3,
    SeaweedFS and MinIO honour the condition; on a server that ignores it the check
    open_write made beforehand is all there is (docs/decisions.md).
    """

    # Parts are gathered here anyway: small blocks from the gateway keep the memory of
    # parallel uploads low (docs/decisions.md, "Proxied S3 uploads").
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
