"""The S3 operations for one credential: keys, directories, reads, writes, presigning.

The conventions (directories as ``d/`` markers or common prefixes, error mapping) are
described in adapters/s3/__init__.py.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from adapters.base import (
    AlreadyExists,
    Capabilities,
    Delegation,
    Entry,
    InvalidPath,
    IsADirectory,
    NotADirectory,
    NotFound,
    NotSupported,
    ParentNotFound,
    PermissionDenied,
    StorageError,
    parent_of,
    streamed_checksum,
)
from adapters.common import mime_type
from adapters.options import MIB
from adapters.response_socket import ResponseStream
from adapters.s3.errors import client_error_code, translate
from adapters.s3.options import S3Settings
from adapters.s3.write import S3Writer

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

CHUNK = MIB
MAX_KEY_BYTES = 1024
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
_PLAIN_MD5 = re.compile(r"[0-9a-fA-F]{32}")


def _deepest_first(folders: set[str]) -> list[str]:
    return sorted(folders, key=lambda d: (-d.count("/"), d))


def _url_expiry(url: str, seconds: int) -> dt.datetime:
    """When a presigned URL really expires: its signing time is X-Amz-Date, which is whole
    seconds, so the URL dies up to a second before now + ExpiresIn."""
    signed = parse_qs(urlsplit(url).query).get("X-Amz-Date", [""])[0]
    try:
        start = dt.datetime.strptime(signed, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        start = dt.datetime.now(dt.UTC)
    return start + dt.timedelta(seconds=seconds)


def _addressable(name: str) -> bool:
    return name not in ("", ".", "..") and "\\" not in name and "\x00" not in name


class S3Storage:
    """One bucket (and prefix) seen with one credential. Thread-safe (boto3 clients are)."""

    capabilities = Capabilities(
        native_checksums=frozenset({"md5"}),
        presign_read=True,
        presign_write=True,
        native_delegation=True,
        presign_create=True,
        ranged_read=True,
    )

    def __init__(self, client: S3Client, settings: S3Settings) -> None:
        self.client = client
        self.settings = settings
        self.bucket = settings.bucket
        self._root = settings.prefix + "/" if settings.prefix else ""

    # --- keys -----------------------------------------------------------------------

    def _key(self, path: str) -> str:
        """The object key of a path, refusing anything that could leave the prefix."""
        if path.startswith("/") or "\\" in path or "\x00" in path:
            raise InvalidPath("invalid path")
        if path and any(p in ("", ".", "..") for p in path.split("/")):
            raise InvalidPath("invalid path")
        key = self._root + path
        if len(key.encode()) + 1 > MAX_KEY_BYTES:  # +1: the directory marker's slash
            raise InvalidPath(f"{path}: name too long for S3")
        return key

    def _dir_prefix(self, path: str) -> str:
        return self._key(path) + "/" if path else self._root

    def _fail(self, exc: Exception, path: str) -> StorageError:
        return translate(exc, path, self.bucket)

    # --- probes ---------------------------------------------------------------------

    def content_version(self, path: str) -> str | None:
        """adapters.base.ContentVersions: the object's own version of its bytes."""
        found = self._head(path) if path else None
        if found is None:
            return None
        modified = found.get("LastModified")
        return (
            f"{found.get('ETag', '')}:{found.get('VersionId', '')}:"
            f"{found.get('ContentLength', '')}:{modified.isoformat() if modified else ''}"
        )

    def _head(self, path: str) -> dict[str, Any] | None:
        """HEAD the object at path; None if there is none."""
        key = self._key(path)
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
        except Exception as exc:
            code = client_error_code(exc)
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            if code in ("403", "Forbidden", "AccessDenied"):
                # HEAD answers carry no body: a LIST names the cause (bad credential?).
                # Without s3:GetObject a directory's name also answers 403: let the
                # caller find the directory if there is one.
                if self._probe_prefix(key + "/"):
                    return None
                raise PermissionDenied(f"{path}: permission denied") from exc
            raise self._fail(exc, path) from exc

    def _probe_prefix(self, prefix: str) -> bool:
        """Whether any key starts with prefix (a marker counts). With the delimiter, servers
        that keep real folders (SeaweedFS) also report an empty folder, as its parent's
        listing does."""
        try:
            page = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/", MaxKeys=1
            )
        except Exception as exc:
            raise self._fail(exc, prefix[len(self._root) :].rstrip("/")) from exc
        return bool(page.get("KeyCount") or page.get("Contents") or page.get("CommonPrefixes"))

    def _is_dir(self, path: str) -> bool:
        return not path or self._probe_prefix(self._dir_prefix(path))

    def _require_parent(self, path: str) -> None:
        parent = parent_of(path)
        if parent and not self._is_dir(parent):
            raise ParentNotFound(f"{parent}: parent directory does not exist or is not a directory")

    def _require_file(self, path: str) -> None:
        if self.stat(path).is_dir:
            raise IsADirectory(f"{path}: is a directory")

    def _file_entry(self, path: str, head: Mapping[str, Any]) -> Entry:
        modified = head.get("LastModified")
        return Entry(
            path=path,
            is_dir=False,
            size=int(head.get("ContentLength", 0)),
            mtime=modified.timestamp() if modified else None,
            mime_type=head.get("ContentType") or mime_type(path),
        )

    # --- Storage --------------------------------------------------------------------

    def stat(self, path: str) -> Entry:
        if not path:
            return Entry(path="", is_dir=True)
        head = self._head(path)
        if head is not None:
            return self._file_entry(path, head)
        if self._is_dir(path):
            return Entry(path=path, is_dir=True)
        raise NotFound(f"{path}: no such file or directory")

    def list(self, path: str) -> Iterator[Entry]:
        prefix = self._dir_prefix(path)
        paginator = self.client.get_paginator("list_objects_v2")
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"))
        try:
            first = next(pages, None)
        except Exception as exc:
            raise self._fail(exc, path) from exc
        empty = first is None or not (first.get("Contents") or first.get("CommonPrefixes"))
        if path and empty:
            if self._head(path) is not None:
                raise NotADirectory(f"{path}: not a directory")
            raise NotFound(f"{path}: no such file or directory")
        return self._iter_pages(path, prefix, first, pages)

    def _iter_pages(
        self, path: str, prefix: str, first: Any, pages: Iterator[Any]
    ) -> Iterator[Entry]:
        page = first
        base = path + "/" if path else ""
        while page is not None:
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(prefix) :].rstrip("/")
                if _addressable(name) and "/" not in name:
                    yield Entry(path=base + name, is_dir=True)
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix) :]
                if not _addressable(name) or "/" in name:
                    continue  # the marker itself, or a name no path can reach
                modified = obj.get("LastModified")
                yield Entry(
                    path=base + name,
                    is_dir=False,
                    size=int(obj.get("Size", 0)),
                    mtime=modified.timestamp() if modified else None,
                    mime_type=mime_type(name),
                )
            try:
                page = next(pages, None)
            except Exception as exc:
                raise self._fail(exc, path) from exc

    def open_read(self, path: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        key = self._key(path)
        if not path:
            raise IsADirectory("/: is a directory")
        if end is not None and end <= start:
            self._require_file(path)
            return iter(())
        wanted = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            if start > 0 or end is not None:
                response = self.client.get_object(Bucket=self.bucket, Key=key, Range=wanted)
            else:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            code = client_error_code(exc)
            if code == "InvalidRange":  # start at or past the end
                self._require_file(path)
                return iter(())
            if code in ("NoSuchKey", "404", "NotFound"):
                if self._is_dir(path):
                    raise IsADirectory(f"{path}: is a directory") from exc
                raise NotFound(f"{path}: no such file or directory") from exc
            raise self._fail(exc, path) from exc
        body = response["Body"]
        return ResponseStream(
            self._stream(path, body),
            getattr(body, "_raw_stream", None),  # botocore's urllib3 response
            int(response.get("ContentLength", -1)),
            body.close,
        )

    def _stream(self, path: str, body: Any) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK)
        except Exception as exc:
            raise self._fail(exc, path) from exc
        finally:
            body.close()

    def open_write(
        self, path: str, size_hint: int | None = None, *, exclusive: bool = False
    ) -> S3Writer:
        if not path:
            raise IsADirectory("/: is a directory")
        key = self._key(path)
        if self._is_dir(path):
            raise IsADirectory(f"{path}: is a directory")
        self._require_parent(path)
        if exclusive and self._head(path) is not None:
            raise AlreadyExists(f"{path}: already exists")
        return S3Writer(
            self.client,
            self.settings,
            path,
            key,
            mime_type(path),
            size_hint=size_hint,
            on_commit=self.stat,
            exclusive=exclusive,
        )

    def mkdir(self, path: str) -> Entry:
        if not path:
            raise AlreadyExists("/: already exists")
        marker = self._dir_prefix(path)
        if self._head(path) is not None or self._is_dir(path):
            raise AlreadyExists(f"{path}: already exists")
        self._require_parent(path)
        try:
            # Conditional: two mkdirs racing get one 201 and one AlreadyExists.
            self.client.put_object(Bucket=self.bucket, Key=marker, Body=b"", IfNoneMatch="*")
        except Exception as exc:
            if client_error_code(exc) in ("PreconditionFailed", "412"):
                raise AlreadyExists(f"{path}: already exists") from exc
            if client_error_code(exc) == "ExistingObjectIsFile":  # SeaweedFS: a file is in the way
                raise NotADirectory(f"{parent_of(path) or path}: not a directory") from exc
            raise self._fail(exc, path) from exc
        return Entry(path=path, is_dir=True)

    def delete(self, path: str) -> None:
        if not path:
            raise PermissionDenied("the mount root cannot be deleted")
        key = self._key(path)
        if self._head(path) is not None:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=key)
            except Exception as exc:
                raise self._fail(exc, path) from exc
            return
        if not self._is_dir(path):
            raise NotFound(f"{path}: no such file or directory")
        prefix = key + "/"
        dirs: set[str] = {prefix}
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys = [obj["Key"] for obj in page.get("Contents", [])]
                for k in keys:
                    # every folder between the prefix and the key, for the final sweep
                    parts = k[len(prefix) :].split("/")[:-1]
                    for i in range(1, len(parts) + 1):
                        dirs.add(prefix + "/".join(parts[:i]) + "/")
                files = [k for k in keys if not k.endswith("/")]
                self._delete_keys(files, path)
        except StorageError:
            raise
        except Exception as exc:
            raise self._fail(exc, path) from exc
        self._delete_keys(_deepest_first(dirs), path)
        if self._probe_prefix(prefix):
            # Empty folders hold no key, so the flat listing above cannot see them.
            self._delete_keys(_deepest_first(self._folders_below(prefix, path)), path)

    def _folders_below(self, prefix: str, path: str) -> set[str]:
        found, todo = {prefix}, [prefix]
        paginator = self.client.get_paginator("list_objects_v2")
        while todo:
            current = todo.pop()
            try:
                for page in paginator.paginate(Bucket=self.bucket, Prefix=current, Delimiter="/"):
                    for common in page.get("CommonPrefixes", []):
                        if common["Prefix"] not in found:
                            found.add(common["Prefix"])
                            todo.append(common["Prefix"])
            except Exception as exc:
                raise self._fail(exc, path) from exc
        return found

    def _delete_keys(self, keys: Sequence[str], path: str) -> None:
        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            except Exception as exc:
                raise self._fail(exc, path) from exc
            errors = response.get("Errors", [])
            if errors:
                code = errors[0].get("Code", "")
                if code == "AccessDenied":
                    raise PermissionDenied(f"{path}: permission denied")
                raise StorageError(f"{path}: {len(errors)} objects could not be deleted ({code})")

    def checksum(self, path: str, algorithm: str = "md5") -> str:
        algorithm = algorithm.lower()
        if algorithm == "md5" and path:
            head = self._head(path)
            if head is not None:
                etag = str(head.get("ETag", "")).strip('"')
                encrypted = head.get("ServerSideEncryption") == "aws:kms" or head.get(
                    "SSECustomerAlgorithm"
                )
                if _PLAIN_MD5.fullmatch(etag) and not encrypted:
                    return etag.lower()
        return streamed_checksum(self.open_read(path), algorithm)

    def presign_create(self, path: str, expires_at: dt.datetime) -> Delegation:
        """A presigned PUT URL that only creates: ``If-None-Match: *`` is signed into it,
        so a PUT without that header fails the signature check and one with it fails
        (412) once the key exists. The client must send ``headers`` with its PUT. Needs
        an S3 server that honours the condition (AWS, SeaweedFS: tested)."""
        return self.presign(path, "PUT", expires_at, _if_none_match=True)

    def presign(
        self, path: str, method: str, expires_at: dt.datetime, *, _if_none_match: bool = False
    ) -> Delegation:
        """A presigned GET or PUT URL living whole seconds, never past expires_at (an
        expires_at less than a second away still gets the 1 s minimum S3 allows). A PUT
        URL skips the directory checks of open_write: S3 makes the parent implicitly."""
        method = method.upper()
        operations = {"GET": "get_object", "PUT": "put_object"}
        if method not in operations:
            raise NotSupported(f"presigned {method} URLs are not supported")
        if not path:
            raise IsADirectory("/: is a directory")
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        # Rounded down so the URL never outlives expires_at (S3 counts whole seconds).
        seconds = int((expires_at - dt.datetime.now(dt.UTC)).total_seconds())
        seconds = max(1, min(seconds, MAX_PRESIGN_SECONDS))
        params = {"Bucket": self.bucket, "Key": self._key(path)}
        headers = {}
        if _if_none_match:
            params["IfNoneMatch"] = "*"
            headers["If-None-Match"] = "*"
        try:
            url = self.client.generate_presigned_url(
                operations[method], Params=params, ExpiresIn=seconds, HttpMethod=method
            )
        except Exception as exc:
            raise self._fail(exc, path) from exc
        return Delegation(
            kind="url",
            value=url,
            expires_at=min(_url_expiry(url, seconds), expires_at),
            method=method,
            headers=headers,
        )

    def close(self) -> None:
        """Nothing to do: the client is shared by every view of this credential and
        closed with the adapter."""
